"""``harness compare STUDY``: the comparison table, paired differences, plots and an HTML report."""
from pathlib import Path


def study_name_of(argument):
    if argument.endswith(".toml") or Path(argument).is_file():
        from ..studies import load_study
        return load_study(argument).name
    return argument


def run_compare_command(args):
    from ..compare import format_table, run_compare
    from ..tracking import resolve_tracking_uri
    name = study_name_of(args.study)
    table, pairs, folder = run_compare(name, resolve_tracking_uri(args.tracking_uri), args.format, args.out)
    print(format_table(table, args.format))
    if args.format == "table":
        print("\npaired differences of test accuracy (a - b over the same seeds, 95% t interval):")
        print(format_table(pairs, "table"))
        print(f"\nreport: {folder / 'report.html'} (plots beside it, and on each condition's MLflow run)")
    return 0
