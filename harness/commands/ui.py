"""``harness ui``: the MLflow UI over the project's tracking store."""

HELP = "start the MLflow UI on the project's store"


def add_parser(commands):
    ui = commands.add_parser(
        "ui",
        help=HELP,
        description="Start the MLflow UI over the tracking store (default: "
        "./mlruns), bound to 127.0.0.1; Ctrl-C or SIGTERM stops it.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument(
        "--study",
        metavar="NAME",
        help="also print the direct links to this study's runs and to the "
        "comparison of its conditions (their mean curves overlaid)",
    )
    ui.add_argument(
        "--access-log",
        action="store_true",
        help="print the server's line per HTTP request (off by default: browsing makes hundreds)",
    )
    return ui


def run(args):
    from ..records.store import resolve_tracking_uri
    from ..records.ui_server import run_ui

    return run_ui(resolve_tracking_uri(args.tracking_uri), args.host, args.port, args.study, args.access_log)
