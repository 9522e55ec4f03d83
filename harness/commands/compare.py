"""``harness compare STUDY``: the comparison table, paired differences, plots and an HTML report."""

import os
import sys
from pathlib import Path

from ..common.output import add_quiet_flag

HELP = "compare a study's conditions: table, paired differences, plots and an HTML report"


def add_parser(commands):
    compare = commands.add_parser(
        "compare",
        help=HELP,
        description="Read a study's runs back from MLflow and "
        "compare its conditions. The report, its plots and tables go onto every condition's parent "
        "run as artifacts, and to --out DIR when asked.",
    )
    compare.add_argument("study", help="a study name, or its study file")
    compare.add_argument(
        "--format",
        choices=("table", "csv", "markdown", "json"),
        default="table",
        help="table (default); csv: the summary table as one CSV (--out DIR writes every table as its own "
        "CSV); markdown; or json (one JSON document on stdout)",
    )
    compare.add_argument("--json", action="store_true", help="the same as --format json (as sweep and train say it)")
    add_quiet_flag(compare)
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="also write report.html, its plots and one CSV per table (summary.csv, paired_differences.csv, "
        "calibration.csv, ...) to DIR (default: nothing written here; they are on each condition's MLflow run)",
    )
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
        from ..studies.parse import read_study

        return read_study(argument).name
    return argument


def _records(frame):
    return None if frame is None else frame.to_dict(orient="records")


def run(args):
    from ..analysis.study_comparison import run_compare
    from ..records.store import resolve_tracking_uri

    name = study_name_of(args.study)
    from ..sweep.optuna_plots import check_storage, optuna_plots

    uri = resolve_tracking_uri(args.tracking_uri)
    _check_storage(args.storage or os.environ.get("HARNESS_OPTUNA_STORAGE"), name, check_storage)
    comparison = run_compare(name, uri, args.out, args.storage, args.register, search_plots=optuna_plots)
    if not args.quiet:
        for model, version, run_id in comparison.registered:
            print(f"registered {model} version {version} (run {run_id})", file=sys.stderr)
    if args.format == "json" or args.json:
        _print_json(name, comparison)
    elif args.format == "csv":  # one table per CSV: the summary here, every table in --out DIR
        from ..analysis.study_comparison import table_files

        print(table_files(comparison.analysis, None)["summary.csv"], end="")
    elif args.format == "markdown":
        from ..analysis.summary import render

        print(f"{render(comparison.table, 'markdown')}\n\n{render(comparison.pairs, 'markdown')}")
    elif not args.quiet:
        _print_tables(comparison)
    return 0


def _print_json(name, comparison):
    from ..analysis.answer import answer
    from ..common.output import emit_json

    emit_json(
        {
            "study": name,
            "answer": answer(comparison.study, comparison.analysis),
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


def _print_tables(comparison):
    """The comparison as text: the answer in plain words, the findings and tables that are its evidence,
    the report's place, and last where each term it used is explained."""
    from ..analysis.glossary import explained
    from ..analysis.summary import format_opening, format_pairs, format_table

    printed = [
        format_opening(comparison.study, comparison.analysis),
        format_table(comparison.study, comparison.table),
        "\n" + format_pairs(comparison.analysis),
    ]
    if comparison.analysis.calibration is not None:
        from ..analysis.calibration_comparison import format_calibration

        printed.append("\n" + format_calibration(comparison.analysis))
    if comparison.leaderboard:
        from ..analysis.leaderboard import format_leaderboard

        printed.append("\n" + format_leaderboard(comparison.leaderboard))
    where = "each condition's MLflow parent run"
    if comparison.folder is None:
        printed.append(f"\nreport: report.html, its plots and tables are on {where} (--out DIR writes them to DIR)")
    else:
        printed.append(f"\nreport: {comparison.folder / 'report.html'} (plots and tables beside it, and on {where})")
    for text in printed:
        print(text)
    print(explained("\n".join(printed)))


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
