"""A study sweep from start to end: check, prepare, work, settle, summarise.

``run_sweep`` owns the whole lifecycle of one ``harness sweep`` command:

1. Check everything that can be checked before anything is created: the data of every condition is
   loaded (a missing CSV, a bad seed, a run too big for this machine fail here, in one line).
2. Prepare what the workers share, under the stores' lock (several commands, on several machines,
   may start one study at once): the Optuna studies and queued confirmation seeds, the MLflow
   experiment and one parent run per condition, the resolved study on every parent; then hold Optuna's
   trials against MLflow's runs (``reconcile``) and repair what a kill or a lost store left.
3. Work: this process is worker 0; ``--workers N`` adds N-1 spawned processes, each given the
   resolved study (never the file again).
4. Settle: no run is left RUNNING, every finished trial's run holds its results.
5. Summarise from the table of records, the same computation ``harness compare`` makes, and end the
   parent runs.
"""

import dataclasses
import errno
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field

from . import faults
from .analysis import analyze
from .data import data_key, load_split
from .errors import DiskFullError, HarnessError, Terminated, disk_full_message
from .locks import check_reachable, preparing
from .outages import outage_seconds, patient
from .parents import publish
from .processes import start as processes_start
from .provenance import source_tags
from .records import STUDY_ARTIFACT
from .records import load as load_records
from .repair import reconcile_stores
from .runs import dataset_input
from .search import (
    ConditionStudies,
    WorkerPresence,
    budget_asked_before,
    existing_searches,
    open_storage,
    prepare_studies,
    search_ids,
    set_parent_run,
)
from .search import storage_url as resolve_storage_url
from .tracking import HARNESS_TAG, RecorderProcess, check_server, check_writable, sqlite_path
from .training import check_memory
from .urls import redact
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


@dataclass
class SweepResult:
    study: object
    plan: SweepPlan
    table: object  # the summary (pandas)
    stats: list = field(default_factory=list)
    wall_seconds: float = 0.0
    repaired: int = 0
    analysis: object = None  # analysis.Analysis of the records the summary was made from


def preflight(study):
    """Load every condition's data once and check its memory, before anything is created."""
    splits = {}
    for condition in study.conditions:
        config = sample_config(study, condition)
        key = data_key(config)
        if key not in splits:
            try:
                splits[key] = load_split(config)
            except HarnessError as exc:
                raise HarnessError(f"{study.path}: condition {condition.name}: {exc}") from None
        check_memory(config, splits[key])
    return splits


def sample_config(study, condition):
    """A run of the condition at the high end of every searched range (the largest it can get)."""
    return study.config_for(
        condition, {p.name: p.choices[0] if p.choices else p.high for p in study.search}, study.search_seed
    )


def data_digests(study, splits):
    """{condition: digest of the data its runs train on}: part of the study's identity."""
    return {c.name: splits[data_key(sample_config(study, c))].digest for c in study.conditions}


def run_sweep(study, options):
    """Run (or resume) ``study``, a resolved study (``studies.resolve``); returns a SweepResult."""
    with patient(options.outage_seconds):
        try:
            return _run_sweep(study, options)
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


def _run_sweep(study, options):
    start = time.perf_counter()
    options = dataclasses.replace(options, workers=worker_count(options.workers))
    uri = options.tracking_uri
    check_server(uri, patience=outage_seconds())
    check_writable(uri)
    with RecorderProcess(uri) as recorder:  # imports mlflow while we load the data and prepare Optuna's side
        splits = preflight(study)
        study, plan, worker, repaired = prepare(study, options, recorder, splits)
        sweeper = _Sweeper(study, plan, recorder, options)
        try:
            stats = run_workers(study, plan, worker, options.workers, sweeper.poll)
        except BaseException:
            sweeper.stopped()
            raise
        repaired += sweeper.settle()
        _, records = load_records(recorder, study)
        analysis = analyze(study, records)
        table = analysis.table
        finish(study, plan, recorder, table, records, sweeper.storage)
    return SweepResult(study, plan, table, stats, time.perf_counter() - start, repaired, analysis)


def prepare(study, options, recorder, splits):
    """Everything shared, made once, under the stores' lock; returns (the study as it runs: at its
    standing budget, with its searches' ids; plan; worker 0; runs repaired)."""
    url = resolve_storage_url(options.storage, study.name)
    check_reachable(url)  # both stores answer before either is written to
    recorder.call("ping")  # the tracking store opens (or fails) before Optuna's side is touched
    with preparing(url, options.tracking_uri):
        storage, url = open_storage(url, study.name, options.heartbeat_seconds, check=True)
        study = at_standing_budget(study, storage)
        if not existing_searches(study, storage):
            check_search_not_lost(study, recorder, url, options.restart_search)
        searches = prepare_studies(study, storage, data_digests(study, splits))
        study = dataclasses.replace(study, search_ids=search_ids(searches))
        if WorkerPresence(url).none_alive():  # a trial a killed worker took but never named: run it again now
            for condition in study.conditions:
                ConditionStudies(study, condition, storage).reap_stale(ownerless_dead=True)
        parents = prepare_parents(study, options, recorder, searches, url, splits)
        plan = SweepPlan(
            url,
            options.tracking_uri,
            parents.pop(None),
            parents,
            uuid.uuid4().hex[:12],
            options.heartbeat_seconds,
            source=source_tags(),
            data_digests=sorted(set(data_digests(study, splits).values())),
        )
        worker = SweepWorker(study, plan, recorder, 0, splits, on_progress=options.on_poll)
        repaired = reconcile_stores(study, plan, storage, recorder, worker)
    return study, plan, worker, repaired


def prepare_parents(study, options, recorder, searches, storage_url, splits):
    """The experiment and one parent run per condition, each holding the resolved study; returns
    {condition: parent run id, None: the experiment id}."""
    note = {"mlflow.note.content": study.description} if study.description else {}
    experiment_id = recorder.call("ensure_experiment", study.name, options.tracking_uri, note)
    known = {name: search.user_attrs.get("mlflow_parent_run_id") for name, search in searches.items()}
    wanted = {c.name: (known[c.name], c.name, *parent_spec(study, c, storage_url, splits)) for c in study.conditions}
    parents = recorder.call("parent_runs", experiment_id, wanted)
    faults.kill_at("after-parents")
    for name, run_id in parents.items():
        if run_id != known[name]:
            set_parent_run(searches[name], run_id)
    resolved = json.dumps(study.to_dict(), indent=1, default=str).encode()
    for run_id in parents.values():
        recorder.submit("write_artifacts", run_id, {STUDY_ARTIFACT: resolved})
    return {**parents, None: experiment_id}


def at_standing_budget(study, storage, err=None):
    """The study at the largest budget asked before, when that is larger than this sweep's: a plain
    re-run after ``--trials 24`` keeps the 24-trial result instead of bringing back the 16-trial one."""
    before = budget_asked_before(study, storage)
    if before <= study.trials:
        return study
    print(
        f"harness sweep: {study.name} was extended to {before} trials per condition by an earlier sweep; it "
        f"stays at {before}, not {study.trials} (a smaller budget never replaces a larger one's result; give the "
        "study a new name to run a smaller one)",
        file=err or sys.stderr,
    )
    return dataclasses.replace(study, trials=before)


def check_search_not_lost(study, recorder, storage_url, restart):
    """The Optuna storage knows nothing of the study, yet MLflow holds its trials' runs: its journal was
    deleted, or another storage is given. Said before anything is trained, with the choices; with
    ``restart`` the search starts again beside those runs, which then never count."""
    _, runs = recorder.call("study_runs", study.name, f"tags.`{HARNESS_TAG}` = 'search'")
    if not runs or restart:
        return
    parents = recorder.call("study_runs", study.name, f"tags.`{HARNESS_TAG}` = 'condition'")[1]
    used = sorted({p["tags"]["optuna_storage"] for p in parents if p["tags"].get("optuna_storage")})
    raise HarnessError(
        f"study {study.name!r}: the tracking store holds {len(runs)} search runs of it, but its Optuna storage "
        f"{dashboard_address(storage_url)} has no trace of it (its journal was deleted, or it used another "
        f"storage{': ' + ', '.join(used) if used else ''}); restore that journal or pass its --storage to resume, "
        "or pass --restart-search to search again from scratch (the runs already there are kept, tagged "
        "superseded, and never counted)"
    )


def dashboard_address(storage_url):
    """The storage as optuna-dashboard and the ``optuna`` CLI take it: a journal's plain path, or the URL
    (without its password)."""
    return storage_url[len("journal:") :] if storage_url.startswith("journal:") else redact(storage_url)


def parent_spec(study, condition, storage_url, splits):
    """(tags, params, dataset input) of a condition's parent run: what it compares, how the sweep is set
    up, the command that runs it, and the data its trials train on."""
    tags = {
        HARNESS_TAG: "condition",
        "study": study.name,
        "condition": condition.name,
        "phase": "condition",
        "objective": study.objective,
        "direction": study.direction,
        "target_accuracy": study.target_accuracy,
        "optuna_storage": dashboard_address(storage_url),
        "study_file": study.path.rsplit("/", 1)[-1],
        "trials": study.trials,
        "confirm_seeds": study.confirm_seeds,
        "search_id": study.search_ids.get(condition.name, ""),
        **source_tags(),
    }
    ranges = {
        f"search.{p.name}": p.choices if p.choices else f"[{p.low}, {p.high}]" + (" log" if p.log else "")
        for p in study.search
    }
    params = {
        **study.fixed,
        **condition.settings,
        "sampler": study.sampler,
        "pruner": study.pruner,
        "objective": study.objective,
        **ranges,
    }
    config = study.config_for(condition, {p.name: p.choices[0] if p.choices else p.low for p in study.search}, 0)
    return tags, params, dataset_input(config, splits[data_key(config)])


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
            raise HarnessError(error[1])
    if errors:
        raise RuntimeError(f"sweep worker failed: {errors[0]}")
    return stats


def finish(study, plan, recorder, table, records, storage):
    """Write each condition's result onto its parent run (a new parent when the result changed, which
    Optuna then names), the summary and the study file beside it, and end the parents."""
    artifacts = {"summary.csv": table.to_csv(index=False).encode()}
    try:
        with open(study.path, "rb") as fh:
            artifacts["study.toml"] = fh.read()
    except OSError:
        pass  # the file moved since the sweep read it: the resolved study.json is there anyway
    parents = publish(recorder, study, records, table, plan.parent_runs, artifacts)
    for condition, run_id in parents.items():
        if run_id != plan.parent_runs[condition]:
            set_parent_run(ConditionStudies(study, study.condition(condition), storage).search, run_id)
        recorder.submit("end_run", run_id, "FINISHED")
    plan.parent_runs.update(parents)
