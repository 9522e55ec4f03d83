"""Ctrl-C ends a command with exit status 130 and one line, wherever in the command it lands.

Python raises KeyboardInterrupt wherever the main thread is when the signal arrives. Interrupting
``harness compare --register`` at a few hundred moments (about 3 % went wrong) lost it in four places:

- during an import: third-party module code may swallow it whole (Cython's memoryview set-up, run when
  numpy.random or scikit-learn load, wraps ``Sequence.register`` in a bare ``except: pass``), and the
  command went on to the end, status 0, without a word. An interrupt that arrives during an import is
  held until the import is done (2 s at most).
- in a finalizer (a ``__del__``, a weakref callback the garbage collector runs): Python prints
  "Exception ignored in ..." and goes on, and the command ended with status 0. It is raised again in
  the main thread once the finalizer is done.
- in code that ``exec`` runs from a string (dataclasses make their methods so): CPython marks the
  interrupt as unhandled even though the command caught it, and ``python -m harness`` killed itself
  with SIGINT after its line (status -2, not 130).
- an object the interrupt cut short (a class whose ``__init__`` it left half done, in pyparsing while
  scikit-learn loaded) fails in its ``__del__`` later; Python printed "Exception ignored in ..." with a
  traceback under the command's one line. Once an interrupt was raised, such reports are dropped.
- after the command returned, while the interpreter shuts down: its work is done and written; a Ctrl-C
  there exits 130 at once (it printed a traceback, or killed the process once Python had put back
  SIGINT's default action: status -2). The last exit handler ends the process with the command's
  status, before that teardown (and before the mark of the previous case is read).
"""

import atexit
import os
import signal
import sys
import threading
import time

EXIT_INTERRUPTED = 130
HOLD_SECONDS = 2.0
"""How long an interrupt waits for an import to end (an import that hangs is interrupted anyway)."""
_held_since: float | None = None
_status: list[int] = []  # the command's exit status, once it returned
_raised: list[bool] = []  # an interrupt was raised in the main thread: the command is ending


def install() -> None:
    """Before the command runs (the console entry point only: a notebook keeps its own handlers)."""
    signal.signal(signal.SIGINT, _on_interrupt)
    previous = sys.unraisablehook

    def unraisable(report):
        if isinstance(report.exc_value, KeyboardInterrupt):
            _interrupt_soon()  # raised at once, it would land in this hook or the next finalizer
            return
        if _raised:  # a finalizer of something the interrupt left half made: not news to the user
            return
        previous(report)

    sys.unraisablehook = unraisable
    atexit.register(_end)  # the first registered: the last to run


def _on_interrupt(signum, frame):
    global _held_since
    now = time.monotonic()
    if _importing(frame):
        _held_since = _held_since or now
        if now - _held_since < HOLD_SECONDS:
            _interrupt_soon()
            return
    _held_since = None
    _raised.append(True)
    raise KeyboardInterrupt


def _importing(frame):
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _interrupt_soon():
    """The interrupt again in 10 ms, from another thread: by then the main thread has left the import
    or the finalizer (or it is held again). A real SIGINT to the main thread, not
    ``_thread.interrupt_main()``: that one is only seen once the main thread's blocking call (a sleep, a
    wait on a child or a lock) returns by itself, so the command went on for as long as that call took."""
    main = threading.main_thread().ident

    def later():
        time.sleep(0.01)
        if main is not None:
            signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=later, name="interrupt-again", daemon=True).start()


def finished(status: int) -> None:
    """The command returned ``status``: from now until the process ends, a Ctrl-C exits 130 at once."""
    _status.append(status)
    _flush()
    signal.signal(signal.SIGINT, _exit_interrupted)


def _end():
    """The last exit handler (threads joined, every other handler run): leave with the command's status.
    What Python's teardown does after this writes nothing, and reads the mark ``exec`` left."""
    if _status:
        _flush()
        os._exit(_status[0])


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # os._exit skips Python's own flushing
        except (OSError, ValueError):
            pass


def _exit_interrupted(signum, frame):
    os.write(2, b"harness: interrupted\n")
    os._exit(EXIT_INTERRUPTED)
