"""``harness sweep STUDY_FILE``: search, confirm and summarise one study; resumes where it stopped."""
import sys
import time

from ..errors import ConfigError
from ..studies import load_study
from ..urls import redact

CLEANUP_EVERY_SECONDS = 15


def run_sweep_command(args):
    study = load_study(args.study_file)
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials = {args.trials} is not allowed; must be an integer >= 1")
    if args.workers < 1:
        raise ConfigError(f"--workers = {args.workers} is not allowed; must be an integer >= 1")
    if args.epochs is not None:
        study = _fix_epochs(study, args.epochs)
    if args.heartbeat < 1:
        raise ConfigError(f"--heartbeat = {args.heartbeat} is not allowed; must be an integer >= 1 (seconds)")
    if args.stack is not None and args.stack < 1:
        raise ConfigError(f"--stack = {args.stack} is not allowed; must be an integer >= 1")
    if args.confirm_seeds is not None:
        if args.confirm_seeds < 1:
            raise ConfigError(f"--confirm-seeds = {args.confirm_seeds} is not allowed; must be >= 1")
        study.confirm_seeds = args.confirm_seeds
        study.raw = {**study.raw, "confirm": {"seeds": args.confirm_seeds}}

    from .. import sweep
    from ..summary import format_table, summarize
    from ..tracking import RecorderProcess, resolve_tracking_uri

    budget = args.trials or study.trials
    uri = resolve_tracking_uri(args.tracking_uri)
    start = time.perf_counter()
    # Worker 0 (this process) records through a recorder that imports mlflow while we prepare.
    recorder = RecorderProcess(uri, open_store=False)
    try:
        plan, client = sweep.prepare(study, args.storage, uri, budget, args.stack, args.heartbeat)
    except BaseException:
        recorder.close()
        raise
    recorder.open()
    progress = _Progress(study, plan) if sys.stderr.isatty() else None
    last_cleanup = [time.perf_counter()]

    def on_poll():
        """Between trials: the progress bars, and now and then the runs that dead workers left."""
        if progress:
            progress.update()
        if time.perf_counter() - last_cleanup[0] > CLEANUP_EVERY_SECONDS:
            sweep.cleanup(study, plan, client)
            last_cleanup[0] = time.perf_counter()

    try:
        stats = sweep.run_workers(study, plan, args.workers, on_poll=on_poll, recorder=recorder)
    except KeyboardInterrupt:
        if progress:
            progress.close()
        sweep.cleanup(study, plan, client)
        for run_id in plan.parent_runs.values():
            client.set_terminated(run_id, "KILLED")
        print(f"harness sweep: interrupted; run the same command again to resume {study.name}", file=sys.stderr)
        return 130
    if progress:
        progress.close()
    sweep.cleanup(study, plan, client, settle=True)
    table = summarize(study, sweep.rows(study, plan))
    sweep.finish(study, plan, client, table.to_csv(index=False))
    wall = time.perf_counter() - start
    print(f"study {study.name}: {len(study.conditions)} conditions x {budget} trials, objective "
          f"{study.objective} ({study.direction}); storage {redact(plan.storage_url)}; tracking {redact(uri)}")
    print(format_table(study, table))
    trials = sum(s.trials for s in stats)
    print(f"{trials} trials and {sum(s.confirms for s in stats)} confirmation runs in this invocation, "
          f"{wall:.1f} s wall with {args.workers} worker(s)")
    if args.json:
        import json
        print(json.dumps({"study": study.name, "summary": table.to_dict(orient="records"),
                          "stats": [s.__dict__ for s in stats], "wall_seconds": wall}, default=str))
    return 0


def _fix_epochs(study, epochs):
    if epochs < 1:
        raise ConfigError(f"--epochs = {epochs} is not allowed; must be an integer >= 1")
    study.search = [p for p in study.search if p.name != "epochs"]
    study.fixed = {**study.fixed, "epochs": epochs}
    study.raw = {**study.raw, "fixed": study.fixed,
                 "search": {k: v for k, v in study.raw.get("search", {}).items() if k != "epochs"}}
    if not study.search:
        raise ConfigError(f"{study.path}: --epochs leaves nothing to search; add lr to [search]")
    return study


class _Progress:
    """One bar per condition: search trials done of the budget, best value so far, confirmations."""

    def __init__(self, study, plan):
        from tqdm import tqdm

        from ..search import ConditionStudies, open_storage
        storage, _ = open_storage(plan.storage_url, study.name)
        self.studies = [ConditionStudies(study, c, storage, plan.budget) for c in study.conditions]
        width = max(len(c.name) for c in study.conditions)
        self.bars = [tqdm(total=plan.budget, desc=c.name.ljust(width), position=i, file=sys.stderr,
                          leave=True, unit="trial") for i, c in enumerate(study.conditions)]
        self.last = 0.0
        self.update()

    def update(self):
        if time.perf_counter() - self.last < 0.5:
            return
        self.last = time.perf_counter()
        for bar, studies in zip(self.bars, self.studies):
            counts = studies.counts()
            bar.n = min(counts["complete"] + counts["pruned"], bar.total)
            best = studies.best_trial()
            confirmed = sum(t.state.name == "COMPLETE" for t in studies.confirm.get_trials(deepcopy=False))
            bar.set_postfix_str(f"best {best.value:.4f} confirm {confirmed}" if best else f"confirm {confirmed}",
                                refresh=False)
            bar.refresh()

    def close(self):
        self.last = 0.0
        self.update()
        for bar in self.bars:
            bar.close()
