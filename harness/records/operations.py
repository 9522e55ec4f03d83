"""Every MLflow call the harness makes, as plain functions of a client and plain data (``OPERATIONS``):
a recorder runs them in its own process or inline (``recorder``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import HarnessError
from .models import MODEL_METRICS, has_model, log_model, model_metric, register_model
from .notes import NOTE_TAG
from .store import artifact_root
from .tags import CONDITION, KIND, SEARCH_ID, SUPERSEDED, current_names

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


HARNESS_TAG = KIND
"""Every run the harness makes carries this tag (train, search, confirm, condition, reproduce)."""

METRICS_PER_BATCH = 1000  # MLflow's own limit for one log_batch call


# --- operations: what a recorder runs -------------------------------------------------------------------
def _text(tags):
    """Tag values as strings: a tracking server's REST API takes nothing else (SQLite converts)."""
    return {key: str(value) for key, value in tags.items()}


def ensure_experiment(
    client: MlflowClient,
    name: str,
    uri: str,
    tags: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> str:
    """The experiment's id, created when missing; ``tags`` are set, ``defaults`` only where the experiment
    has no such tag yet (a view the user edited in the UI stays theirs)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_root(uri))
        except MlflowException:  # another process created it first
            # created by another process a moment ago: it exists
            experiment_id = client.get_experiment_by_name(name).experiment_id  # type: ignore[union-attr]
        existing: dict[str, str] = {}
    else:
        experiment_id = experiment.experiment_id
        existing = experiment.tags
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    wanted = {**{k: v for k, v in (defaults or {}).items() if k not in existing}, **(tags or {})}
    for key, value in wanted.items():
        client.set_experiment_tag(experiment_id, key, str(value))
    return experiment_id


def experiment_tags(client: MlflowClient, name: str) -> dict[str, str]:
    """The named experiment's tags ({} when there is none)."""
    experiment = client.get_experiment_by_name(name)
    return dict(experiment.tags) if experiment is not None else {}


def create_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str | None,
    tags: dict[str, Any],
    params: dict[str, Any],
    dataset: dict[str, Any] | None = None,
    start_time: int | None = None,
) -> str:
    """A run with its params and, when given, the data set it trains on as its input (the UI's
    Dataset column): ``dataset`` = {name, digest, source_type, source, profile}. ``start_time`` (ms):
    when its training began, if before now (a stack trained ahead); else now."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Param

    run = client.create_run(experiment_id, start_time=start_time, run_name=run_name, tags=_text(tags))
    _remember_artifact_location(client, run)
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    if dataset:
        entity = Dataset(
            dataset["name"],
            dataset["digest"],
            dataset["source_type"],
            dataset["source"],
            profile=json.dumps(dataset.get("profile", {})),
        )
        client.log_inputs(run.info.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])
    return run.info.run_id


def start_run(
    client: MlflowClient,
    experiment_name: str,
    uri: str,
    run_name: str | None,
    tags: dict[str, Any],
    params: dict[str, Any],
    dataset: dict[str, Any] | None = None,
) -> str:
    """A run in the named experiment (created when missing): ``harness train`` and ``reproduce``."""
    return create_run(client, ensure_experiment(client, experiment_name, uri), run_name, tags, params, dataset)


def log_points(client: MlflowClient, run_id: str, points: Sequence[tuple[str, float, int, int]]) -> None:
    """Metric points ``(key, value, timestamp_ms, step)``, in batches MLflow accepts."""
    from mlflow.entities import Metric

    for begin in range(0, len(points), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=[Metric(*p) for p in points[begin : begin + METRICS_PER_BATCH]])


def write_artifacts(client: MlflowClient, run_id: str, artifacts: dict[str, bytes], folder: str | None = None) -> None:
    """Log ``{file name: bytes}`` as the run's artifacts (at the root, or under ``folder``) in one call."""
    import tempfile

    if not artifacts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in artifacts.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)  # methods/<module>.py
            (Path(tmp) / name).write_bytes(content)
        repository = _artifact_repositories.get((client.tracking_uri, run_id))
        if repository is not None:
            repository.log_artifacts(tmp, folder)
        else:
            client.log_artifacts(run_id, tmp, folder)


_artifact_repositories: dict[tuple[str, str], Any] = {}
"""{(tracking URI, run id): artifact repository} of the runs this process created, newest last."""


def _remember_artifact_location(client: MlflowClient, run: Run) -> None:
    """The run's artifact repository, from the location ``create_run`` just returned: MLflow's
    ``log_artifacts`` would look the run up again (``get_run``, with all its params and tags) to find it,
    about a tenth of a recorder's time per search trial."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

    location = add_databricks_profile_info_to_artifact_uri(run.info.artifact_uri, client.tracking_uri)
    _artifact_repositories[(client.tracking_uri, run.info.run_id)] = get_artifact_repository(
        location, tracking_uri=client.tracking_uri
    )
    while len(_artifact_repositories) > KNOWN_ARTIFACT_LOCATIONS:
        del _artifact_repositories[next(iter(_artifact_repositories))]


KNOWN_ARTIFACT_LOCATIONS = 1024  # as many as MLflow's own cache of them keeps


def record_run(
    client: MlflowClient,
    run_id: str,
    points: Sequence[tuple[str, float, int, int]],
    tags: dict[str, Any],
    artifacts: dict[str, bytes],
    model: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    end: str | None = None,
) -> None:
    """A run's results, in an order that makes its final tags the proof of the rest: artifacts (and the
    MLflow model), then the params (a lean search trial's are written here, with its results) and the
    curves, then the tags (``state`` becomes final only when everything before it is stored: MLflow's
    log_batch writes params, metrics, then tags), then its end (``end``: a status) only if all of that
    was stored: a run never ends FINISHED without its results. The last batch of curves carries the
    params and tags: one MLflow call less per batch (measured: 1-2 ms of a trial's 30). The model's own
    scores (its test metrics) are linked to it: its page in the UI lists them."""
    from mlflow.entities import Param, RunTag

    write_artifacts(client, run_id, artifacts)
    model_id = None
    if model is not None:
        scores = {p[0]: p[1] for p in points if p[0].startswith(MODEL_METRICS)}
        model_id = log_model(client, run_id, artifacts, model, scores).removeprefix("models:/")
    dataset = (model or {}).get("dataset")
    batches = [points[begin : begin + METRICS_PER_BATCH] for begin in range(0, len(points), METRICS_PER_BATCH)]
    for batch in batches[:-1]:
        client.log_batch(run_id, metrics=[model_metric(p, model_id, dataset) for p in batch])
    client.log_batch(
        run_id,
        metrics=[model_metric(p, model_id, dataset) for p in (batches[-1] if batches else [])],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, v) for k, v in _text(tags).items()],
    )
    if end is not None:
        client.set_terminated(run_id, end)


def end_run(client: MlflowClient, run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
    from mlflow.entities import RunTag

    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _text(tags).items()])
    client.set_terminated(run_id, status)


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _text(tags).items()])


def parent_runs(
    client: MlflowClient, experiment_id: str, wanted: dict[str, tuple[Any, ...]], start_time: int | None = None
) -> dict[str, str]:
    """Reuse each condition's parent run (marked RUNNING again) or create it.

    ``wanted``: {condition: (known run id or None, run name, tags, params, dataset input or None)};
    returns {condition: run id}. ``start_time`` (ms): the sweep's start. New parents start then (one ms
    apart, in the study's order, as the UI lists them), before the first stack's runs, whose training
    ahead may have begun before the parents were made.
    A parent made by a command killed before Optuna heard of it is found by its tags, so a condition
    never gets two. Params are written once, at creation: MLflow refuses to change a logged param.
    """
    from mlflow.exceptions import MlflowException

    existing: dict[str, str] = {}
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{HARNESS_TAG}` = 'condition'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    ):
        tags = current_names(run.data.tags)
        condition = tags.get(CONDITION, "")
        if run.info.lifecycle_stage != "active" or condition not in wanted:
            continue
        if _same_search(tags.get(SEARCH_ID), wanted[condition][2].get(SEARCH_ID)):
            existing.setdefault(condition, run.info.run_id)
        elif tags.get(SUPERSEDED) != "true":  # the parent of a search given up (journal deleted)
            set_tags(client, run.info.run_id, {SUPERSEDED: "true"})
    ids: dict[str, str] = {}
    for position, (condition, (known, run_name, tags, params, dataset)) in enumerate(wanted.items()):
        run_id = known if known and _active(client, known, MlflowException) else existing.get(condition)
        if run_id is None:
            start = None if start_time is None else start_time + position
            ids[condition] = create_run(client, experiment_id, run_name, tags, params, dataset, start)
            continue
        client.update_run(run_id, status="RUNNING")
        set_tags(client, run_id, tags)
        ids[condition] = run_id
    return ids


def _same_search(tagged: str | None, wanted: str | None) -> bool:
    """A parent made before searches had ids belongs to the search Optuna calls legacy."""
    return not wanted or tagged == wanted or (tagged is None and wanted == "legacy")


def _active(client: MlflowClient, run_id: str, not_found: type[Exception]) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except not_found:
        return False


RESULT_TAG = "harness.result_digest"


def publish_result(client: MlflowClient, run_id: str, result: dict[str, Any], artifacts: dict[str, bytes]) -> str:
    """Write a condition's result onto its parent run (see ``parents``); returns the parent's id, which is
    a new run when the parent already showed another result (its trials move under the new one and the
    old one is deleted: MLflow neither changes a param nor forgets a metric's points). Written in an
    order that makes the digest tag the proof of the rest; points carry the run's start time, so a write
    repeated after a kill adds nothing twice."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.get_run(run_id)
    known = run.data.tags.get(RESULT_TAG)
    if known == result["digest"]:
        write_artifacts(client, run_id, artifacts)  # the same result; the report beside it may be new
        return run_id
    if known is not None:
        run_id = _next_generation(client, run)
        run = client.get_run(run_id)
    moment = run.info.start_time
    points = [Metric(k, v, moment, 0) for k, v in result["metrics"].items()]
    points += [Metric(key, value, moment, step) for key, value, step in result["points"]]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in result["params"].items()])
    for begin in range(0, len(points), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=points[begin : begin + METRICS_PER_BATCH])
    write_artifacts(client, run_id, artifacts)
    client.log_batch(run_id, tags=[RunTag(NOTE_TAG, result["note"]), RunTag(RESULT_TAG, result["digest"])])
    return run_id


def _next_generation(client: MlflowClient, old: Run) -> str:
    """A fresh parent with the old one's setup (params, tags), the old one's trials moved under it."""
    setup_params = {k: v for k, v in old.data.params.items() if not k.startswith("best.")}
    setup_tags = {
        k: v for k, v in current_names(old.data.tags).items() if not k.startswith("mlflow.") and k != RESULT_TAG
    }
    new = create_run(client, old.info.experiment_id, old.info.run_name, setup_tags, setup_params)
    children = client.search_runs(
        [old.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{old.info.run_id}'", max_results=50000
    )
    for child in children:
        client.set_tag(child.info.run_id, "mlflow.parentRunId", new)
    client.set_terminated(old.info.run_id, "FINISHED")
    client.delete_run(old.info.run_id)
    return new


def run_dict(run: Run) -> dict[str, Any]:
    """An MLflow run as plain data (it crosses processes and becomes a row of the records table), its tags
    under today's names (``tags.current_names``: every reader reads runs recorded before too)."""
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "lifecycle_stage": run.info.lifecycle_stage,
        "artifact_uri": run.info.artifact_uri,
        "tags": current_names(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
    }


def study_runs(
    client: MlflowClient, study_name: str, filter_string: str = ""
) -> tuple[str | None, list[dict[str, Any]]]:
    """Every live run of a study's experiment as plain dicts: (experiment id or None, runs)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return None, []
    runs: list[dict[str, Any]]
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], filter_string=filter_string, max_results=5000, page_token=token
        )
        runs.extend(run_dict(r) for r in page)
        token = page.token
        if not token:
            return experiment.experiment_id, runs


def get_run(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The run as plain data, or a HarnessError naming the id when the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise HarnessError(f"run {run_id!r} not found in this tracking store") from None
    data = run_dict(run)
    data["experiment_name"] = client.get_experiment(run.info.experiment_id).name
    return data


def read_artifact(client: MlflowClient, run_id: str, name: str) -> bytes | None:
    """An artifact's bytes, or None when the run has no such file."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, name, tmp)
        except (MlflowException, OSError):
            return None
        return Path(path).read_bytes() if Path(path).is_file() else None


def metric_histories(client: MlflowClient, run_id: str, keys: Iterable[str]) -> dict[str, list[tuple[int, float, int]]]:
    """{key: [(step, value, timestamp), ...]} in step order."""
    return {key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)) for key in keys}


def metric_histories_bulk(
    client: MlflowClient, run_ids: Sequence[str], keys: Iterable[str]
) -> dict[str, dict[str, list[tuple[int, float, int]]]]:
    """{run id: {key: [(step, value, timestamp), ...]}} of many runs: one query per key on a database
    store (200 calls were 0.3 s of a finished quickstart's re-print), one call per run and key elsewhere."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    out: dict[str, dict[str, list[tuple[int, float, int]]]] = {run_id: {} for run_id in run_ids}
    for key in keys:
        if bulk is None:
            for run_id in run_ids:
                out[run_id].update(metric_histories(client, run_id, [key]))
            continue
        for run_id in run_ids:
            out[run_id][key] = []
        for m in bulk(list(run_ids), key, max_results=10**9):
            out[m.run_id][key].append((m.step, m.value, m.timestamp))
        for run_id in run_ids:
            out[run_id][key].sort()
    return out


def ping(client: MlflowClient) -> bool:
    """Nothing: answering proves the store opened (its first operation opens it)."""
    return True


OPERATIONS = {
    f.__name__: f
    for f in (
        ping,
        metric_histories_bulk,
        publish_result,
        register_model,
        ensure_experiment,
        experiment_tags,
        create_run,
        start_run,
        log_points,
        write_artifacts,
        record_run,
        end_run,
        set_tags,
        parent_runs,
        study_runs,
        get_run,
        read_artifact,
        has_model,
        metric_histories,
    )
}
