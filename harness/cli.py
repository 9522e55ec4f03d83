"""Command line: one module per command in ``commands/`` (its flags and how it runs); this module
assembles them and is the one place that maps errors to exit codes.

Heavy modules (mlflow, scikit-learn, optuna) are imported inside the commands, so ``harness --help``
stays fast.
"""

import argparse
import errno
import gc
import sys

from . import __version__, interrupts
from .commands import compare, export, predict, reproduce, sweep, train, ui
from .errors import HarnessError

COMMANDS = (train, sweep, compare, reproduce, export, predict, ui)
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


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
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        command = module.add_parser(commands)
        add_tracking_flag(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"harness {args.command}: error: {exc.strerror}{where}; nothing was counted as done that is not "
            "recorded: fix it and run the same command again",
            file=sys.stderr,
        )
        return EXIT_FAILED


def run():
    """Console entry point."""
    interrupts.install()  # Ctrl-C exits 130 wherever it lands: an import, a finalizer, the teardown
    code = main()
    interrupts.finished(code)
    # Tearing down mlflow's and pandas' object graphs at exit took 1.1 s of a 4.3 s command; frozen
    # objects are skipped by the final collections. Everything was written and closed by now.
    gc.freeze()
    sys.exit(code)
