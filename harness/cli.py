"""Command line: one module per command in ``commands/`` (its flags and how it runs); this module
assembles them and is the one place that maps errors to exit codes.

Heavy modules (mlflow, scikit-learn, optuna) are imported inside the commands, so ``harness --help``
stays fast.
"""

import argparse
import contextlib
import errno
import gc
import signal
import sys
import threading

from . import __version__
from .commands import compare, export, predict, reproduce, sweep, train, ui
from .common import interrupts
from .common.errors import DiskFullError, HarnessError, RunTimeFailure, Terminated, disk_full_message

COMMANDS = (train, sweep, compare, reproduce, export, predict, ui)
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
ENDINGS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that end a command as Ctrl-C does (cleaned up), exiting 128 + their number: 143, 129."""
EXIT_CODES = """exit status:
  0    done (reproduce: the curves match)
  1    failed while running: a store or server lost or unusable mid-run, a full disk, training that failed
       until the command stopped (reproduce: the curves differ); the input was fine: run the same command
       again once the cause is gone (a sweep resumes)
  2    bad input: a flag, a study or config file, a data file, a run id, an export, a store or server that
       does not answer when the command starts or cannot be used as it is; one line names it and what is
       allowed
  130  interrupted (Ctrl-C); 143 (SIGTERM) and 129 (SIGHUP) likewise: cleaned up, a sweep resumes"""


def add_tracking_flag(parser):
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI: sqlite:///PATH or "
        "http(s)://HOST:PORT (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Train small numpy networks under different losses and optimizers; record every run in MLflow.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        command = module.add_parser(commands)
        add_tracking_flag(command)
        command.set_defaults(handler=module.run)
    return parser


@contextlib.contextmanager
def endings_raise():
    """While a command runs, SIGTERM and SIGHUP raise ``Terminated`` in this (the main) thread, so its
    temporary worktrees, folders, runs and trials are cleaned up as on Ctrl-C; yields the signals
    received. Only the first raises: a repeated signal does not cut the clean-up short. The previous
    handlers come back afterwards (``main`` may run inside another program)."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def end(signum, frame):
        if not received:
            received.append(signum)
            raise Terminated(signum)

    previous = {signum: signal.signal(signum, end) for signum in ENDINGS}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with endings_raise() as received:
        try:
            return args.handler(args) or 0
        except HarnessError as exc:
            if received and not isinstance(exc, DiskFullError):  # the clean-up after SIGTERM failed (a recorder
                return _stopped(args.command, Terminated(received[0]))  # ended by the same signal, ...)
            print(f"harness {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_FAILED if isinstance(exc, RunTimeFailure) else EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            return _stopped(args.command, exc)
        except OSError as exc:
            if received:
                return _stopped(args.command, Terminated(received[0]))
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                message = disk_full_message(exc.filename or "the folder written to", exc.strerror or str(exc))
            else:
                message = (
                    f"{exc.strerror}{where}; nothing was counted as done that is not recorded: fix it and run the "
                    "same command again"
                )
            print(f"harness {args.command}: error: {message}", file=sys.stderr)
            return EXIT_FAILED


def _stopped(command, exc):
    """One line for Ctrl-C or a termination, with what the command noted on the way out (how to resume)."""
    said = "terminated" if isinstance(exc, Terminated) else "interrupted"
    notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
    print(f"harness {command}: {said}{notes}", file=sys.stderr)
    return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def run():
    """Console entry point."""
    interrupts.install()  # Ctrl-C exits 130 wherever it lands: an import, a finalizer, the teardown
    code = main()
    interrupts.finished(code)
    # Tearing down mlflow's and pandas' object graphs at exit took 1.1 s of a 4.3 s command; frozen
    # objects are skipped by the final collections. Everything was written and closed by now.
    gc.freeze()
    sys.exit(code)
