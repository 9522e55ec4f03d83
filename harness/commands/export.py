"""``harness export RUN_ID -o run.zip``: one file that reproduces and predicts without the store."""

from ..common.output import add_quiet_flag

HELP = "write a logged run to one file that reproduce and predict use without a store"


def add_parser(commands):
    export = commands.add_parser(
        "export",
        help=HELP,
        description="Write a run's config, weights, every curve, code state (commit, git_diff.patch), "
        "package versions and data digest to one zip; `harness reproduce FILE` and `harness predict FILE "
        "ROWS.csv` use it on a machine without the store.",
    )
    export.add_argument("run_id", help="the MLflow run id of a harness run")
    export.add_argument("-o", "--output", metavar="FILE", help="the file to write (default: RUN_ID.zip)")
    export.add_argument("--json", action="store_true", help="print what was written as one JSON document on stdout")
    add_quiet_flag(export)
    return export


def run(args):
    from ..records.logged import export_run
    from ..records.store import resolve_tracking_uri

    path = args.output or f"{args.run_id}.zip"
    names = export_run(args.run_id, resolve_tracking_uri(args.tracking_uri), path)
    if args.json:
        from ..common.output import emit_json

        emit_json({"run_id": args.run_id, "path": path, "files": names})
    elif not args.quiet:
        print(f"exported run {args.run_id} to {path} ({', '.join(names)})")
    return 0
