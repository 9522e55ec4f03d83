"""Before any worker starts: every condition's data loaded and checked, then, under the stores' lock,
the Optuna studies, the MLflow experiment and one parent run per condition, and the repair of what a
kill or a lost store left (``repair``).
"""

import dataclasses
import json
import sys
import uuid

from ..common import faults
from ..common.databases import check_reachable
from ..common.errors import HarnessError
from ..common.urls import redact
from ..engine.data import data_key, load_split
from ..engine.methods import method_digests
from ..engine.training import check_memory
from ..records.notes import NOTE_TAG, escape
from ..records.operations import HARNESS_TAG
from ..records.provenance import source_tags
from ..records.runs import dataset_input, param_text
from ..records.table import STUDY_ARTIFACT
from ..records.tags import CONDITION, OPTUNA_STORAGE, SEARCH_ID, STUDY
from ..records.views import experiment_defaults
from .conditions import ConditionStudies
from .liveness import WorkerPresence
from .locks import preparing
from .repair import reconcile_stores
from .storages import open_storage
from .storages import storage_url as resolve_storage_url
from .studies import budget_asked_before, existing_searches, prepare_studies, search_ids, set_parent_run
from .worker import SweepPlan, SweepWorker


def preflight(study):
    """Load every condition's data once and check its memory, before anything is created."""
    splits = {}
    for condition in study.conditions:
        config = study.largest_config(condition)
        key = data_key(config)
        if key not in splits:
            try:
                splits[key] = load_split(config)
            except HarnessError as exc:
                raise HarnessError(f"{study.path}: condition {condition.name}: {exc}") from None
        check_memory(config, splits[key])
    return splits


def data_digests(study, splits):
    """{condition: digest of the data its runs train on}: part of the study's identity."""
    return {c.name: splits[data_key(study.largest_config(c))].digest for c in study.conditions}


def study_methods(study):
    """{module: sha256} of the custom losses and optimizers the study's conditions name."""
    found = {}
    for condition in study.conditions:
        found.update(method_digests(study.largest_config(condition)))
    return found


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
        searches = prepare_studies(study, storage, data_digests(study, splits), study_methods(study))
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
            method_digests=study_methods(study),
        )
        worker = SweepWorker(study, plan, recorder, 0, splits, on_progress=options.on_poll)
        repaired = reconcile_stores(study, plan, storage, recorder, worker)
    return study, plan, worker, repaired


def prepare_parents(study, options, recorder, searches, storage_url, splits):
    """The experiment and one parent run per condition, each holding the resolved study; returns
    {condition: parent run id, None: the experiment id}."""
    note = {NOTE_TAG: escape(study.description)} if study.description else {}
    views = experiment_defaults(study)  # the UI's runs table with the results' columns
    experiment_id = recorder.call("ensure_experiment", study.name, options.tracking_uri, note, views)
    known = {name: search.user_attrs.get("mlflow_parent_run_id") for name, search in searches.items()}
    wanted = {c.name: (known[c.name], c.name, *parent_spec(study, c, storage_url, splits)) for c in study.conditions}
    parents = recorder.call("parent_runs", experiment_id, wanted, options.started_ms)
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
        f"study a new `name` in {study.path} to run a smaller one)",
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
    used = sorted({p["tags"][OPTUNA_STORAGE] for p in parents if p["tags"].get(OPTUNA_STORAGE)})
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
    up, the command that runs it, and the data its trials train on. Each fact once: the objective is a
    param, the trials and seeds run are the result's metrics (the budget asked is in study.json)."""
    tags = {
        HARNESS_TAG: "condition",
        STUDY: study.name,
        CONDITION: condition.name,
        "harness.target_accuracy": study.target_accuracy,  # read by the analysis only: may change on a parent
        OPTUNA_STORAGE: dashboard_address(storage_url),
        "harness.study_file": study.path.rsplit("/", 1)[-1],
        SEARCH_ID: study.search_ids.get(condition.name, ""),
        **source_tags(),
    }
    ranges = {
        f"search.{p.name}": p.choices if p.choices else f"[{p.low}, {p.high}]" + (" log" if p.log else "")
        for p in study.search
    }
    params = {
        **{k: param_text(v) for k, v in {**study.fixed, **condition.settings}.items()},
        "sampler": study.sampler,
        "pruner": study.pruner,
        "objective": study.objective,
        "direction": study.direction,
        **ranges,
    }
    config = study.config_for(condition, {p.name: p.choices[0] if p.choices else p.low for p in study.search}, 0)
    return tags, params, dataset_input(config, splits[data_key(config)])
