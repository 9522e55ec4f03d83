"""Child processes that do not run the caller's script again.

The harness starts its recorder and its extra workers with the ``spawn`` method (a fresh interpreter:
no forked locks or threads). Spawn re-imports the parent's ``__main__`` in the child, which is harmless
for ``harness ...`` but runs a user's script again when the notebook API is called from one without an
``if __name__ == "__main__":`` guard (or from ``python -``): its top half ran twice and the child died
with a traceback. Every target the harness starts lives in an importable module, so the child needs
nothing of ``__main__``: it is hidden while the process starts.
"""

import contextlib
import sys


@contextlib.contextmanager
def _main_hidden():
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__spec__", "__file__") if hasattr(main, name)}
    try:
        for name in saved:
            setattr(main, name, None) if name == "__spec__" else delattr(main, name)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def start(process):
    """``process.start()`` for a spawned process whose target needs nothing of ``__main__``."""
    with _main_hidden():
        process.start()
