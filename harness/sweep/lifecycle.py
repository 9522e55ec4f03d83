"""A study sweep from start to end: check, prepare, work, settle, summarise.

1. Check everything that can be checked before anything is created (``preparation.preflight``).
2. Prepare what the workers share, under the stores' lock (``preparation.prepare``).
3. Work: this process is worker 0; ``--workers N`` adds N-1 spawned processes, each given the
   resolved study (never the file again).
4. Settle: no run is left RUNNING, every finished trial's run holds its results.
5. Summarise from the table of records, the computation ``harness compare`` makes, and end the
   parent runs.
"""

import dataclasses
import errno
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from ..analysis.comparisons import analyze
from ..common.errors import DiskFullError, HarnessError, RunTimeFailure, Terminated, disk_full_message, from_kind
from ..common.files import read_local_file
from ..common.outages import outage_seconds, patient
from ..common.processes import start as processes_start
from ..records.parents import model_note, models_elsewhere, publish
from ..records.recorder import RecorderProcess
from ..records.store import check_server, check_writable, sqlite_path
from ..records.table import load as load_records
from ..studies.parse import TOML_LIMIT
from .conditions import ConditionStudies
from .preparation import preflight, prepare
from .repair import reconcile_stores
from .speculation import FirstStack
from .storages import open_storage
from .storages import storage_url as resolve_storage_url
from .studies import set_parent_run
from .worker import SweepPlan, SweepWorker, worker_process

CLEANUP_EVERY_SECONDS = 15


@dataclass
class SweepOptions:
    tracking_uri: str
    storage: str | None = None
    workers: int = 1
    heartbeat_seconds: int = 10
    outage_seconds: float | None = None  # patience with the database and the server (outages.patient)
    restart_search: bool = False  # search again although the store holds runs of a search Optuna lost
    on_poll: object = None  # called between stacks (progress bars)
    recorder: RecorderProcess | None = None  # started by the caller before its imports (``harness sweep``); else here
    started_ms: int | None = None  # a new parent run's start: the sweep's, before any stack trained ahead


@dataclass
class SweepResult:
    study: object
    plan: SweepPlan
    table: object  # the summary (pandas)
    stats: list = field(default_factory=list)
    wall_seconds: float = 0.0
    repaired: int = 0
    analysis: object = None  # analysis.Analysis of the records the summary was made from


def sweep_study(study, options):
    """Run (or resume) ``study``, a resolved study (``studies.study.resolve``); returns a SweepResult."""
    with patient(options.outage_seconds):
        try:
            return _sweep_study(study, options)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            folder = exc.filename or _local_folders(study, options)
            raise DiskFullError(disk_full_message(folder, exc.strerror or str(exc))) from None


def _local_folders(study, options):
    """The folders of the sweep's local stores (where a full disk can be), for the message."""
    url = resolve_storage_url(options.storage, study.name)
    folders = {path.parent for path in (sqlite_path(options.tracking_uri), _journal_path(url)) if path}
    outermost = [f for f in folders if not any(f != other and f.is_relative_to(other) for other in folders)]
    return " and ".join(sorted(map(str, outermost))) or "the stores"


def _journal_path(url):
    from pathlib import Path

    return Path(url[len("journal:") :]) if url.startswith("journal:") else None


def worker_count(asked, err=None):
    """Workers on this machine: at most one per core it may use. More only compete for the cores, each
    with its own recorder process (measured: 16 workers on 2 cores were several times slower than 1, and
    64 did not finish a 1-trial study in 200 s); more machines share a study through --storage."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if asked <= cores:
        return asked
    print(
        f"harness sweep: --workers {asked} on {cores} cores: using {cores} (more workers than cores only compete "
        "for them; more machines can share the study through a shared --storage)",
        file=err or sys.stderr,
    )
    return cores


def _sweep_study(study, options):
    start = time.perf_counter()
    options = dataclasses.replace(
        options, workers=worker_count(options.workers), started_ms=options.started_ms or int(time.time() * 1000)
    )
    uri = options.tracking_uri
    check_server(uri, patience=outage_seconds())
    check_writable(uri)
    with options.recorder or RecorderProcess(uri) as recorder:  # imports mlflow while we load the data
        splits = preflight(study)
        ahead = FirstStack.start(study, resolve_storage_url(options.storage, study.name), splits)
        try:  # the first stack trains while the stores open; kept only if its trials are the ones asked
            study, plan, worker, repaired = prepare(study, options, recorder, splits)
            worker.speculation = ahead
            sweeper = _Sweeper(study, plan, recorder, options)
            try:
                stats = run_workers(study, plan, worker, options.workers, sweeper.poll)
            except BaseException:
                sweeper.stopped()
                raise
        finally:
            if ahead is not None:
                ahead.cancel()  # not taken (another first task, an error): its thread ends here
        repaired += sweeper.settle()
        _, records = load_records(recorder, study)
        analysis = analyze(study, records)
        table = analysis.table
        finish(study, plan, recorder, table, records, sweeper.storage)
    return SweepResult(study, plan, table, stats, time.perf_counter() - start, repaired, analysis)


class _Sweeper:
    """What the command does between stacks and at the end: clean-up of dead workers' leftovers."""

    def __init__(self, study, plan, recorder, options):
        self.study, self.plan, self.recorder, self.options = study, plan, recorder, options
        self.storage, _ = open_storage(plan.storage_url, study.name, plan.heartbeat_seconds)
        self.last_cleanup = time.perf_counter()

    def poll(self):
        if self.options.on_poll:
            self.options.on_poll()
        if time.perf_counter() - self.last_cleanup > CLEANUP_EVERY_SECONDS:
            reconcile_stores(self.study, self.plan, self.storage, self.recorder)
            self.last_cleanup = time.perf_counter()

    def settle(self):
        worker = SweepWorker(self.study, self.plan, self.recorder, 0)
        return reconcile_stores(self.study, self.plan, self.storage, self.recorder, worker, settle=True)

    def stopped(self):
        """The workers stopped early (Ctrl-C, an error): end what can be ended; the next start resumes."""
        try:
            reconcile_stores(self.study, self.plan, self.storage, self.recorder)
        except Exception:  # noqa: BLE001 - the next start reconciles
            pass
        for run_id in self.plan.parent_runs.values():
            self.recorder.submit("end_run", run_id, "KILLED")


def run_workers(study, plan, worker, workers, on_poll=None):
    """Run ``workers`` workers: this process is worker 0 (``worker``), the others are spawned processes
    given the resolved study and the plan."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=worker_process, args=(study, plan, i, results), name=f"sweep-worker-{i}")
        for i in range(1, workers)
    ]
    for process in processes:
        processes_start(process)
    worker.on_progress = on_poll
    try:
        stats = [worker.run()]
    except BaseException as exc:
        told = not isinstance(exc, KeyboardInterrupt) or isinstance(exc, Terminated)  # Ctrl-C reached them too
        for process in processes:  # a SIGTERM to this process alone, or an error: they are told to stop
            if told and process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join(timeout=60)
        raise
    errors = []
    while len(stats) + len(errors) < workers:
        try:
            _, worker_stats, error = results.get(timeout=0.5)
        except queue.Empty:  # also notices a worker that died without a word
            if on_poll:
                on_poll()
            if all(not p.is_alive() for p in processes) and results.empty():
                errors.append("a worker process died")
            continue
        (errors.append(error) if error else stats.append(worker_stats))
    for process in processes:
        process.join()
    for error in errors:
        if isinstance(error, tuple):
            raise from_kind(*error)
    if errors:  # a worker died, or failed in a way it could not name: a failure at run time, not the input's
        raise RunTimeFailure(f"sweep worker failed: {errors[0]}; run the same command again to resume")
    return stats


def finish(study, plan, recorder, table, records, storage):
    """Write each condition's result onto its parent run (a new parent when the result changed, which
    Optuna then names), the summary and the study file beside it, and end the parents."""
    artifacts = {"summary.csv": table.to_csv(index=False).encode()}
    try:  # a regular file still (replaced by a FIFO meanwhile, reading it would wait for ever), bounded
        artifacts["study.toml"] = read_local_file(str(study.path), str(study.path), TOML_LIMIT)
    except HarnessError:
        pass  # the file moved since the sweep read it: the resolved study.json is there anyway
    parents = publish(recorder, study, records, table, plan.parent_runs, artifacts)
    for run_id, model_run in models_elsewhere(study, records).items():
        recorder.submit("set_tags", run_id, model_note(run_id, model_run))
    for condition, run_id in parents.items():
        if run_id != plan.parent_runs[condition]:
            set_parent_run(ConditionStudies(study, study.condition(condition), storage).search, run_id)
        recorder.submit("end_run", run_id, "FINISHED")
    plan.parent_runs.update(parents)
