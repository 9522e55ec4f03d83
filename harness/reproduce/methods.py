"""A logged run's own loss or optimizer made importable again: the module here when it is the logged
source (same sha256), else the source logged with the run, said on stderr. An export's logged source is
someone else's code: it runs only with ``--rebuild-code``, as an export's patch does.
"""

import hashlib
import importlib
import tempfile
from pathlib import Path

from ..common.errors import HarnessError
from ..engine.config import check_methods
from ..engine.methods import load_logged_module, module_source
from ..records.runs import METHOD_FOLDER, METHOD_TAG


def logged_modules(logged):
    """{module: sha256} of the custom methods a logged run recorded."""
    tags = logged.run["tags"]
    return {key[len(METHOD_TAG) :]: value for key, value in tags.items() if key.startswith(METHOD_TAG)}


def module_here(name):
    """(its sha256 here, or None when it cannot be imported here; the reason)."""
    try:
        module = importlib.import_module(name)
        return module_source(module.__file__ or "")[1], ""
    except Exception as exc:  # noqa: BLE001 - any failure: the logged source is the fallback
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"


def prepare_methods(logged, config, stack, export, allowed, err):
    """Make the run's custom methods importable (``stack``: an ExitStack owning the temporary folder),
    then check them; ``allowed``: the logged source may run (a store's run, or ``--rebuild-code``).
    Returns the folder holding logged sources (None when none was needed), for a rebuilt code's child."""
    folder = None
    for name, digest in sorted(logged_modules(logged).items()):
        here, why = module_here(name)
        if here == digest:
            continue
        said = f"not importable here ({why})" if here is None else f"differs here (sha256 {here[:12]})"
        if export and not allowed:
            raise HarnessError(
                f"{logged.where}: module {name!r} is {said}; the run's logged source ({METHOD_FOLDER}{name}.py) "
                "is code from the export and runs only with --rebuild-code"
            )
        source = logged.artifact(f"{METHOD_FOLDER}{name}.py")
        if source is None or hashlib.sha256(source).hexdigest() != digest:
            raise HarnessError(f"{logged.where}: module {name!r} is {said}, and the run logged no matching source")
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-methods-")))
        (folder / f"{name}.py").write_bytes(source)
        load_logged_module(name, str(folder / f"{name}.py"))
        print(f"module {name!r} is {said}: training with its logged source (sha256 {digest[:12]})", file=err)
    check_methods(config, logged.where)
    return folder
