"""``harness compare STUDY``: the comparison table, paired differences, plots and an HTML report."""

import os
import sys
from pathlib import Path

HELP = "compare a study's conditions: table, paired differences, plots and an HTML report"


def add_parser(commands):
    compare = commands.add_parser(
        "compare",
        help=HELP,
        description="Read a study's runs back from MLflow and "
        "compare its conditions. Plots go to --out and onto every condition's parent "
        "run as artifacts.",
    )
    compare.add_argument("study", help="a study name, or its study file")
    compare.add_argument(
        "--format",
        choices=("table", "csv", "markdown", "json"),
        default="table",
        help="table (default), csv, markdown, or json (one JSON document on stdout)",
    )
    compare.add_argument("--json", action="store_true", help="the same as --format json (as sweep and train say it)")
    compare.add_argument("--out", metavar="DIR", help="folder for the plots and report (default reports/<study>)")
    compare.add_argument(
        "--storage",
        metavar="URL",
        help="the study's Optuna storage, for Optuna's plots (default: "
        "the one the sweep recorded, if it lies in this store's folder)",
    )
    compare.add_argument(
        "--register",
        action="store_true",
        help="register each condition's best confirmed model "
        "(highest test accuracy) in MLflow's Model Registry as <study>-<condition>",
    )
    return compare


def study_name_of(argument):
    if argument.endswith(".toml") or Path(argument).is_file():
        from ..studies.parse import load_study

        return load_study(argument).name
    return argument


def _records(frame):
    return None if frame is None else frame.to_dict(orient="records")


def run(args):
    from ..analysis.compare import run_compare
    from ..analysis.summary import format_findings, format_pairs, format_table, render
    from ..common.output import emit_json
    from ..records.store import resolve_tracking_uri

    name = study_name_of(args.study)
    from ..sweep.optuna_plots import check_storage, optuna_plots

    uri = resolve_tracking_uri(args.tracking_uri)
    _check_storage(args.storage or os.environ.get("HARNESS_OPTUNA_STORAGE"), name, check_storage)
    comparison = run_compare(name, uri, args.out, args.storage, args.register, search_plots=optuna_plots)
    for model, version, run_id in comparison.registered:
        print(f"registered {model} version {version} (run {run_id})", file=sys.stderr)
    if args.format == "json" or args.json:
        emit_json(
            {
                "study": name,
                "findings": comparison.analysis.findings,
                "conditions": comparison.table.to_dict(orient="records"),
                "pairs": comparison.pairs.to_dict(orient="records"),
                "calibration": _records(comparison.analysis.calibration),
                "calibration_pairs": _records(comparison.analysis.calibration_pairs),
                "effects": comparison.analysis.effects,
                "budget_curves": comparison.analysis.budget_curves,
                "ranking_settles_at": comparison.analysis.settles_at,
                "ranks": comparison.analysis.ranks,
                "leaderboard": _board_json(comparison.leaderboard),
                "registered": [{"name": m, "version": v, "run_id": r} for m, v, r in comparison.registered],
            }
        )
        return 0
    if args.format == "csv":  # one CSV: the conditions' rows, then the pairs' rows, told apart by "section"
        import pandas as pd

        both = pd.concat([comparison.table.assign(section="condition"), comparison.pairs.assign(section="pair")])
        print(render(both[["section", *[c for c in both.columns if c != "section"]]], "csv"), end="")
        return 0
    if args.format != "table":
        print(render(comparison.table, args.format))
        print()
        print(render(comparison.pairs, args.format))
        return 0
    print(format_findings(comparison.analysis.findings))
    print(format_table(comparison.study, comparison.table))
    print("\n" + format_pairs(comparison.analysis))
    if comparison.analysis.calibration is not None:
        from ..analysis.calibration import format_calibration

        print("\n" + format_calibration(comparison.analysis))
    if comparison.leaderboard:
        from ..analysis.leaderboard import format_leaderboard

        print("\n" + format_leaderboard(comparison.leaderboard))
    print(f"\nreport: {comparison.folder / 'report.html'} (plots beside it, and on each condition's MLflow run)")
    return 0


def _check_storage(named, name, check_storage):
    """The Optuna storage the user named opens, before anything is written (one line when not)."""
    if not named:
        return
    from ..common.errors import HarnessError
    from ..common.outages import OutageError

    try:
        check_storage(named, name)
    except OutageError as exc:  # it never answered: the storage named is what to check (bad input)
        raise HarnessError(str(exc)) from None


def _board_json(board):
    """The leaderboard as plain data (its table as records)."""
    if board is None:
        return None
    return {**board, "frame": board["frame"].to_dict(orient="records")}
