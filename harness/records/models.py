"""A run's network as an MLflow model (``pyfunc``: code, not a pickle) and its place in the Model Registry."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .notes import NOTE_TAG, escape
from .tags import CONDITION, STUDY, TEST_ROWS, current_names

if TYPE_CHECKING:
    from mlflow import MlflowClient


MODEL_METRICS = "test_"
"""A model's own metrics (the UI's logged-model page): the run's scores on the test split, which no choice
of the model saw."""
CHAMPION = "champion"
"""The registered version of a condition's best confirmation seed in the study's current result (highest
test accuracy, ties to the lowest seed): each ``harness compare --register`` moves it there."""


def log_model(
    client: MlflowClient,
    run_id: str,
    artifacts: dict[str, bytes],
    model: dict[str, Any],
    metrics: dict[str, float] | None = None,
) -> str:
    """The run's network as a pyfunc model named after its study and condition (``model_name``), built from
    code (``harness_model/model_code.py``, no pickle) with the ``harness_model`` package beside it
    (``code_paths``: it loads where the harness is not installed), a signature whose output is typed like
    the labels, an input example and a description (``model_description``). ``model``: {"features": names,
    "example": rows, "dataset": (name, digest) of its run's data set input}. ``metrics``: the run's test
    scores not logged yet (``record_run`` links them with the run's own points); without them the run's
    logged ones are linked to the model here (``link_metrics``). Returns its ``models:/<model id>`` URI."""
    import tempfile

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    import harness_model

    from .weights import parse_weights

    features = list(model["features"])
    classes = parse_weights(artifacts["weights.npz"], f"run {run_id} weights.npz")["classes"]
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in features]),
        outputs=Schema([ColSpec(harness_model.label_type(classes))]),
    )
    run = client.get_run(run_id)
    package = Path(harness_model.__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, name in (("config", "config.json"), ("weights", "weights.npz")):
            files[key] = str(Path(tmp) / name)
            Path(files[key]).write_bytes(artifacts[name])
        with _fluent(client, run.info.experiment_id):
            info = Model.log(
                artifact_path=None,
                name=model_name(run.data.tags, run.data.params),
                flavor=mlflow.pyfunc,
                run_id=run_id,
                python_model=str(package / "model_code.py"),
                code_paths=[str(package)],
                artifacts=files,
                signature=signature,
                input_example=pd.DataFrame(model["example"], columns=features),
                pip_requirements=[f"numpy=={_version('numpy')}", f"pandas=={_version('pandas')}"],
            )
    if metrics is None:
        metrics = link_metrics(client, run, info.model_id, model.get("dataset"))
    description = model_description(run.data.tags, run.data.params, metrics, run_id)
    client.set_logged_model_tags(info.model_id, {NOTE_TAG: description})
    return f"models:/{info.model_id}"


def model_metric(point: tuple[str, float, int, int], model_id: str | None, dataset: Any = None) -> Any:
    """A run's metric point as MLflow's ``Metric``, linked to the run's model (and its data set) when it is
    one of the model's own (``MODEL_METRICS``): the model's page lists it, and the run's too."""
    from mlflow.entities import Metric

    if model_id is None or not point[0].startswith(MODEL_METRICS):
        return Metric(*point)
    name, digest = dataset if dataset else (None, None)
    return Metric(*point, model_id=model_id, dataset_name=name, dataset_digest=digest)


def link_metrics(client: MlflowClient, run: Any, model_id: str, dataset: Any = None) -> dict[str, float]:
    """The run's logged test scores linked to its model afterwards (``compare --register`` logging a seed's
    model): each point again, with the model's id (MLflow keeps one copy of an identical point)."""
    found = {}
    for key in sorted(k for k in run.data.metrics if k.startswith(MODEL_METRICS)):
        history = client.get_metric_history(run.info.run_id, key)
        if history:
            last = max(history, key=lambda m: m.step)
            found[key] = last.value
            point = (key, last.value, last.timestamp, last.step)
            client.log_batch(run.info.run_id, metrics=[model_metric(point, model_id, dataset)])
    return found


def model_description(tags: dict[str, str], params: dict[str, str], metrics: dict[str, float], run_id: str) -> str:
    """What the logged model's page says (Markdown, escaped): whose network it is and how it scored on the
    test split."""
    tags = current_names(tags)
    study, condition = tags.get(STUDY), tags.get(CONDITION)
    words = f"The network trained by run {run_id}"
    if study and condition:
        words += f" (condition {condition} of study {study}, seed {params.get('seed', '?')})"
    score, rows = metrics.get("test_accuracy"), tags.get(TEST_ROWS)
    if score is not None:
        words += f": test accuracy {score:.4f}" + (f" on {rows} test rows no choice of it saw" if rows else "")
    return escape(words + ".")


def model_name(tags: dict[str, str], params: dict[str, str]) -> str:
    """``<study>-<condition>`` for a sweep's run, ``train-<dataset>`` for ``harness train``'s (MLflow
    refuses / : . % and quotes in a model's name)."""
    tags = current_names(tags)
    if tags.get(STUDY) and tags.get(CONDITION):
        name = f"{tags[STUDY]}-{tags[CONDITION]}"
    else:
        name = f"train-{params.get('dataset', 'run')}"
    return re.sub(r"[/:.%\"']", "_", name)


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


@contextmanager
def _fluent(client: MlflowClient, experiment_id: str | None = None) -> Iterator[None]:
    """MLflow's module-level functions (a model's logging, registering) aimed at ``client``'s store for
    a moment, and the process's own settings put back after (no setting outlives the call)."""
    import mlflow

    saved_uri, saved_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    saved_experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(client.tracking_uri)
    if experiment_id is not None:  # a model is made in the active experiment: the run's
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        for name, value in (("MLFLOW_TRACKING_URI", saved_env), ("MLFLOW_EXPERIMENT_ID", saved_experiment)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def has_model(client: MlflowClient, run_id: str) -> bool:
    """Whether the run logged an MLflow model (a confirmation seed may not: ``confirm.models``)."""
    return logged_model_uri(client, run_id) is not None


def logged_model_uri(client: MlflowClient, run_id: str) -> str | None:
    """``models:/<model id>`` of the model the run logged, or None."""
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    return f"models:/{outputs[0].model_id}" if outputs else None


def register_model(
    client: MlflowClient, run_id: str, name: str, artifacts: dict[str, bytes] | None = None, model: Any = None
) -> str:
    """Register the run's model in the Model Registry under ``name`` from its ``models:/<model id>`` URI,
    as its ``champion`` (``CHAMPION``), each with a description; returns the version. A version of ``name``
    already made from this run is returned, not duplicated (``compare --register`` twice), and made the
    champion again. A run without a model logs it first from ``artifacts`` (config.json, weights.npz) and
    ``model`` (``engine.data.model_example``)."""
    import mlflow

    found = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id]
    if found:
        number = str(found[0].version)
    else:
        uri = log_model(client, run_id, artifacts, model) if artifacts is not None else logged_model_uri(client, run_id)
        with _fluent(client):
            number = str(mlflow.register_model(uri, name, await_registration_for=60).version)
    run = client.get_run(run_id)
    client.update_registered_model(name, description=registered_description(run.data.tags))
    client.update_model_version(name, number, description=version_description(run))
    client.set_registered_model_alias(name, CHAMPION, number)
    return number


def registered_description(tags: dict[str, str]) -> str:
    """A registered model's description: whose networks its versions are, and what ``champion`` names."""
    tags = current_names(tags)
    whose = f"condition {tags[CONDITION]} of study {tags[STUDY]}" if tags.get(STUDY) and tags.get(CONDITION) else ""
    return escape(
        f"The networks of {whose or 'harness train runs'}, one version per `harness compare --register` that "
        "found a new best confirmation seed. The alias champion names the version of the best seed in the "
        "study's current result (highest test accuracy, ties to the lowest seed)."
    )


def version_description(run: Any) -> str:
    """A registered version's description: its run and seed, its test accuracy, its searched settings."""
    score = run.data.metrics.get("test_accuracy")
    settings = ", ".join(f"{k} = {run.data.params[k]}" for k in ("lr", "epochs") if k in run.data.params)
    words = f"Run {run.info.run_id} (seed {run.data.params.get('seed', '?')})"
    if score is not None:
        words += f": test accuracy {score:.4f}"
    return escape(words + (f"; trained with {settings}" if settings else "") + ".")
