"""``harness reproduce RUN_ID``: retrain a logged run and compare every curve at every step."""

HELP = "retrain a logged run and compare every curve"


def add_parser(commands):
    again = commands.add_parser(
        "reproduce",
        help=HELP,
        description="Rebuild a run's configuration from what it "
        "logged, retrain, compare every logged metric at every step; exit 0 when "
        "identical, 1 when not. The reproduction is logged as a new run tagged "
        "reproduces=RUN_ID.",
    )
    again.add_argument("run_id", help="the MLflow run id of a harness run")
    return again


def run(args):
    from ..reproduce import reproduce
    from ..tracking import resolve_tracking_uri

    return reproduce(args.run_id, resolve_tracking_uri(args.tracking_uri))
