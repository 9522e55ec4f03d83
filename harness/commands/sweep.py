"""``harness sweep STUDY_FILE``: search, confirm and summarise one study; resumes where it stopped."""

import os
import sys

from ..common.output import add_quiet_flag, emit_json
from ..common.urls import redact

HELP = "run a study: tune lr/epochs per condition, confirm on test"
DESCRIPTION = (
    "Run a study file: for every condition, Optuna searches the nuisance settings with the same "
    "budget, then the best settings are retrained with new seeds and scored on the test split. "
    "Running the same command again resumes."
)


def add_parser(commands):
    sweep = commands.add_parser("sweep", help=HELP, description=DESCRIPTION)
    sweep.add_argument("study_file", help="a study TOML file, e.g. studies/quickstart.toml")
    add_budget_flags(sweep)
    add_store_flags(sweep)
    sweep.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON document on stdout (the table goes to stderr)",
    )
    add_quiet_flag(sweep)
    return sweep


def add_budget_flags(sweep):
    """What the sweep runs: its budget, seeds, stacks and workers (each overrides the study file)."""
    sweep.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="search trials per condition (default: the file's "
        "budget.trials); a larger N extends a finished sweep and confirms its new best",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="local worker processes (default 1, at most one per core; this command's process is one of them)",
    )
    sweep.add_argument(
        "--epochs", type=int, metavar="N", help="fix the epoch count instead of searching it (smoke runs)"
    )
    sweep.add_argument(
        "--confirm-seeds",
        type=int,
        metavar="K",
        help="confirmation seeds per condition (default: the file's confirm.seeds)",
    )
    sweep.add_argument(
        "--stack",
        type=int,
        metavar="N",
        help="trials trained together as one stack (default: "
        "the file's budget.stack, else 8); 1 trains one model at a time",
    )


def add_store_flags(sweep):
    """Where the trials live and how long the shared services are waited for."""
    sweep.add_argument(
        "--storage",
        default=os.environ.get("HARNESS_OPTUNA_STORAGE"),
        metavar="URL",
        help="Optuna storage: a journal file path (default mlruns/optuna/<study>.journal) or an "
        "RDB URL such as postgresql+psycopg://USER@HOST:5432/DB shared by workers on many "
        "machines (default: $HARNESS_OPTUNA_STORAGE; passwords from $PGPASSWORD or ~/.pgpass)",
    )
    sweep.add_argument(
        "--outage-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a worker waits for the Optuna database or the tracking server when they stop answering "
        "(a restart, a failover) before it gives its trials back and exits 1 (default 300; "
        "$HARNESS_OUTAGE_SECONDS)",
    )
    sweep.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        metavar="SECONDS",
        help="RDB storages: seconds between Optuna heartbeats (default 10); a worker silent for "
        "3 heartbeats is presumed dead, its trials are failed and run again",
    )
    sweep.add_argument(
        "--restart-search",
        action="store_true",
        help="when the tracking store holds runs of this study that its Optuna storage does not know (its "
        "journal was deleted), search again from scratch; those runs are kept, tagged superseded, never counted",
    )


def run(args):
    from ..common.errors import ConfigError
    from ..studies.parse import read_study
    from ..studies.study import resolve

    if args.workers < 1 or args.workers > 64:
        raise ConfigError(f"--workers = {args.workers} is not allowed; must be an integer in [1, 64]")
    if args.outage_seconds is not None and not 0 <= args.outage_seconds <= 86400:
        raise ConfigError(f"--outage-seconds = {args.outage_seconds:g} is not allowed; must be in [0, 86400] (seconds)")
    if not 1 <= args.heartbeat <= 3600:
        raise ConfigError(f"--heartbeat = {args.heartbeat} is not allowed; must be an integer in [1, 3600] (seconds)")
    study = resolve(
        read_study(args.study_file),
        trials=args.trials,
        epochs=args.epochs,
        confirm_seeds=args.confirm_seeds,
        stack=args.stack,
    )

    from ..common.outages import patient
    from ..records.recorder import RecorderProcess
    from ..records.store import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    # The recorder starts first, so MLflow imports in its process while this one imports the sweep's modules
    # (optuna, pandas, scikit-learn) and loads the data: the first epoch waits less for the tracking store.
    with patient(args.outage_seconds), RecorderProcess(uri) as recorder:
        return _sweep(args, study, uri, recorder)


def _sweep(args, study, uri, recorder):
    from ..sweep.lifecycle import SweepOptions, sweep_study
    from ..sweep.progress import SweepProgress

    progress = SweepProgress(study, args.storage, terminal=sys.stderr.isatty(), quiet=args.quiet)
    options = SweepOptions(
        tracking_uri=uri,
        storage=args.storage,
        workers=args.workers,
        heartbeat_seconds=args.heartbeat,
        outage_seconds=args.outage_seconds,
        restart_search=args.restart_search,
        on_poll=progress.update,
        recorder=recorder,
    )
    try:
        result = sweep_study(study, options)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cli says which, on one line with this)
        progress.close(finished=False)
        exc.add_note(f"run the same command again to resume {study.name}")
        raise
    progress.close()
    if not args.quiet:
        print_summary(result, uri, sys.stderr if args.json else sys.stdout)
    if args.json:
        from ..analysis.answer import answer

        emit_json(
            {
                "study": result.study.name,
                "answer": answer(result.study, result.analysis),
                "summary": result.table.to_dict(orient="records"),
                "findings": result.analysis.findings,
                "stats": [s.__dict__ for s in result.stats],
                "wall_seconds": result.wall_seconds,
                "repaired": result.repaired,
            }
        )
    return 0


def print_summary(result, uri, out):
    """The summary as the sweep ran it (at its standing budget): header, the answer in plain words, the
    findings and tables that are its evidence, what this invocation did, and where each term is explained."""
    from ..analysis.glossary import explained
    from ..analysis.summary import format_opening, format_table

    study = result.study
    trials = sum(s.trials for s in result.stats)
    reused = sum(getattr(s, "confirms_reused", 0) for s in result.stats)
    printed = [
        f"study {study.name}: {len(study.conditions)} conditions x {study.trials} trials, objective "
        f"{study.objective} ({study.direction}); storage {redact(result.plan.storage_url)}; tracking {redact(uri)}",
        format_opening(study, result.analysis),
        format_table(study, result.table),
        f"{trials} trials and {sum(s.confirms for s in result.stats)} confirmation runs in this invocation"
        + (f", {reused} confirmation seeds re-used from a smaller budget (best trial unchanged)" if reused else "")
        + (f", {result.repaired} re-run after their records were lost" if result.repaired else "")
        + f", {result.wall_seconds:.1f} s wall with {len(result.stats)} worker(s)",
    ]
    for text in printed:
        print(text, file=out)
    print(explained("\n".join(printed)), file=out)
