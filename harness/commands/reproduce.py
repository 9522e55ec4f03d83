"""``harness reproduce RUN_ID``: retrain a logged run and compare every curve at every step."""

HELP = "retrain a logged run and compare every curve"


def add_parser(commands):
    again = commands.add_parser(
        "reproduce",
        help=HELP,
        description="Rebuild a run's configuration from what it "
        "logged, retrain, compare every logged metric at every step; exit 0 when "
        "identical or equal within --rtol, 1 when not. The reproduction is logged as a new run tagged "
        "reproduces=RUN_ID.",
    )
    again.add_argument("run_id", help="the MLflow run id of a harness run")
    again.add_argument(
        "--rtol",
        type=float,
        default=1e-9,
        metavar="X",
        help="relative tolerance for another machine's BLAS or CPU (default 1e-9; 0: bit-identical only); "
        "within it: exit 0 with the largest relative difference",
    )
    return again


def run(args):
    from ..errors import ConfigError
    from ..reproduce import reproduce
    from ..tracking import resolve_tracking_uri

    if not 0 <= args.rtol < 1:
        raise ConfigError(f"--rtol = {args.rtol:g} is not allowed; must be in [0, 1)")
    return reproduce(args.run_id, resolve_tracking_uri(args.tracking_uri), rtol=args.rtol)
