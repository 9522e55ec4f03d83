"""``harness ARGS`` run in the test's own process, as a fresh process would run it.

A subprocess pays 2-3 s of imports (mlflow, optuna, scikit-learn) per command; most end-to-end tests
chain several commands, so the suite spent most of its time importing. Here the command runs through
``harness.cli.main`` with what a process of its own would have: its working folder, environment,
``sys.argv``, standard streams (captured at the descriptors, so the recorder and worker processes it
spawns are captured too), Python's default warning filters, no logging handler of pytest's, and the
signal handlers, ``sys.path`` and user modules as they were. Everything is put back afterwards, so
nothing of one command reaches the next test. What is left to leak is the harness's own state between
commands of one process, which the notebook API shares: a test that finds such a leak found a bug.
"""

import contextlib
import functools
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def possible(env=None):
    """Whether a command can run here: on the main thread (signal handlers, ``os.chdir`` is process-wide),
    with this tree's code (not another checkout's ``PYTHONPATH``) and with no fault that kills or holds
    its own process. ``HARNESS_TESTS_SUBPROCESS=1`` runs every command as a subprocess (the same suite,
    the old way)."""
    env = env or {}
    faults = env.get("HARNESS_FAULT", "")
    return (
        threading.current_thread() is threading.main_thread()
        and os.environ.get("HARNESS_TESTS_SUBPROCESS", "") in ("", "0")
        and not any(fault in faults for fault in ("kill", "pause-at-epoch"))
        and env.get("PYTHONPATH", str(ROOT)) == str(ROOT)
    )


def run(args, cwd, env=None, timeout=300):
    """The command's CompletedProcess (returncode, stdout, stderr); TimeoutExpired after ``timeout`` s."""
    from harness import cli

    argv = [str(ROOT / "harness" / "__main__.py"), *args]
    expired = []
    try:
        with _captured() as streams, _fresh(cwd, env, argv), _deadline(timeout, expired):
            code = _exit_code(cli.main, list(args))
    except KeyboardInterrupt:
        if not expired:
            raise
    if expired:
        raise subprocess.TimeoutExpired(argv, timeout, streams["stdout"], streams["stderr"])
    return subprocess.CompletedProcess(argv, code, streams["stdout"], streams["stderr"])


def _exit_code(main, args):
    """What the process would exit with: ``main``'s code, SystemExit's, or 1 with the traceback printed."""
    try:
        return main(args)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the deadline's (``run`` says so), or the person running the tests
        raise
    except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback on stderr, exit 1
        traceback.print_exc()
        return 1


@contextlib.contextmanager
def _captured():
    """stdout and stderr captured at file descriptors 1 and 2 (children write there too); the texts are
    in the yielded dict once the block ends."""
    streams = {}
    sys.stdout.flush(), sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = (
                io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", write_through=True)
                for fd in (1, 2)
            )
            yield streams
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1), os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0]), os.close(saved_fds[1])
            for name, file in (("stdout", out), ("stderr", err)):
                file.seek(0)
                streams[name] = file.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _fresh(cwd, env, argv):
    """The working folder, environment and argv of a new process; the rest of the process as it was."""
    saved = os.getcwd(), dict(os.environ), sys.argv, list(sys.path), set(sys.modules)
    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    methods = _method_caches()  # emptied as in a new process, and put back afterwards
    for cache, _ in methods:
        cache.clear()
    users = {name: module for name, module in sys.modules.items() if _user_module(module)}
    for name in users:  # a test's own import of a user's module: a new process has none
        del sys.modules[name]
    try:
        os.chdir(cwd)
        os.environ.update({"PYTHONPATH": str(ROOT), **(env or {})})
        sys.argv = argv
        sys.path[:] = [os.path.abspath(cwd), str(ROOT), *(p for p in saved[3] if _library(p))]  # as python -m
        with warnings.catch_warnings(), _logging_as_fresh():
            _default_warning_filters()
            yield
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.argv, sys.path[:] = saved[2], saved[3]
        for name in set(sys.modules) - saved[4]:
            if _user_module(sys.modules.get(name)):
                del sys.modules[name]
        sys.modules.update(users)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for cache, content in methods:
            cache.clear()
            cache.update(content)


def _method_caches():
    """The user's methods a process has looked up (checked, read, registered), with their contents now."""
    from harness.engine import methods

    caches = [methods._CHECKED, methods._SOURCES, *methods._REGISTERED.values()]
    return [(cache, dict(cache)) for cache in caches]


def _library(path):
    """Whether a ``sys.path`` entry is Python's or the environment's (not a folder a test put there)."""
    path = os.path.realpath(path or ".")
    return any(path == p or path.startswith(p + os.sep) for p in map(os.path.realpath, (sys.prefix, sys.base_prefix)))


def _user_module(module):
    """A module imported from a test's folder (a user's loss), not a library or the harness."""
    path = getattr(module, "__file__", None)
    return bool(path) and not _kept_path(path)


@functools.cache
def _kept_folders():
    """Python's, the environment's, and this tree's packages; not the tree's other folders (examples/,
    studies/): a module there is a user's (the benchmark study's ``my_methods``), and one left imported
    would answer the next command's ``import my_methods`` with the wrong file."""
    packages = (ROOT / name for name in ("harness", "harness_model", "tests", "benchmarks"))
    return tuple(os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, *packages))


@functools.cache
def _kept_path(path):
    """Whether a module file lives under Python's, the environment's or the harness's folder (asked of
    every module at every command: cached, as a module's file does not move)."""
    return os.path.realpath(path).startswith(_kept_folders())


def _default_warning_filters():
    """Python's own filters (pytest records warnings instead of printing them): a warning a command
    prints reaches its stderr as it would in a process of its own."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


@contextlib.contextmanager
def _logging_as_fresh():
    """No handler on the root logger (pytest's are set aside: a record with no handler reaches stderr
    as in a new process); every logger's level, handlers and switches as they were afterwards."""
    root = logging.getLogger()
    loggers = [root, *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in loggers]
    root.handlers = []
    try:
        yield
    finally:
        for lg, level, handlers, propagate, disabled in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled


@contextlib.contextmanager
def _deadline(timeout, expired):
    """After ``timeout`` s the command is interrupted as by Ctrl-C, and ``expired`` is then non-empty."""
    import _thread

    def interrupt():
        expired.append(True)
        _thread.interrupt_main()

    timer = threading.Timer(timeout, interrupt) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.cancel()
