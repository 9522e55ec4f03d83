"""``harness reproduce RUN_ID|EXPORT.zip``: retrain a logged run with its code and compare every curve."""

import io
import sys

from ..common.output import add_quiet_flag

HELP = "retrain a logged run and compare every curve"


def add_parser(commands):
    again = commands.add_parser(
        "reproduce",
        help=HELP,
        description="Rebuild a run's configuration from what it "
        "logged, retrain, compare every logged metric at every step; exit 0 when "
        "identical or equal within --rtol, 1 when not. When this checkout's code is not the run's, a run "
        "in the store is rebuilt from its commit plus its git_diff.patch in a temporary git worktree and "
        "trains there; an export file retrains with this checkout's code unless --rebuild-code. A patch "
        "that does not match the run's git_diff digest is refused. The reproduction is logged as a new "
        "run tagged harness.reproduces=RUN_ID (an export file is checked without a store and logs nothing).",
    )
    again.add_argument("run_id", metavar="RUN_ID|EXPORT.zip", help="a harness run, or its `harness export` file")
    code = again.add_mutually_exclusive_group()
    code.add_argument(
        "--here", action="store_true", help="retrain with this checkout's code, not the code the run logged"
    )
    code.add_argument(
        "--rebuild-code",
        action="store_true",
        help="an export file: RUN the code it carries (its commit, from this clone, plus its git_diff.patch, "
        "which whoever wrote the file chose); the first line says the commit, the patch's digest and the "
        "files it changes. Without it an export retrains with this checkout's code. A run in the store is "
        "rebuilt without it",
    )
    again.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="X",
        help="relative tolerance for another machine's BLAS or CPU (default: 1e-9 for a run logged in "
        "float64, 1e-5 in float32; 0: bit-identical only); within it: exit 0 with the largest relative difference",
    )
    again.add_argument(
        "--json",
        action="store_true",
        help="print the verdict as JSON on stdout (the table to stderr)",
    )
    add_quiet_flag(again)
    return again


def run(args):
    from ..common.errors import ConfigError
    from ..records.store import resolve_tracking_uri
    from ..reproduce.reproduction import reproduce

    if args.rtol is not None and not 0 <= args.rtol < 1:
        raise ConfigError(f"--rtol = {args.rtol:g} is not allowed; must be in [0, 1)")
    uri = resolve_tracking_uri(args.tracking_uri)
    summary = {}
    out = io.StringIO() if args.quiet else sys.stderr if args.json else sys.stdout  # quiet: the exit status says it
    code = reproduce(
        args.run_id, uri, out=out, rtol=args.rtol, here=args.here, rebuild_code=args.rebuild_code, summary=summary
    )
    if args.json:
        from ..common.output import emit_json

        emit_json(summary)
    return code
