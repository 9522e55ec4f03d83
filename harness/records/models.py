"""A run's network as an MLflow model (``pyfunc``: code, not a pickle) and its place in the Model Registry."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient


def log_model(client: MlflowClient, run_id: str, artifacts: dict[str, bytes], model: dict[str, Any]) -> str:
    """The run's network as a pyfunc model named after its study and condition (``model_name``), built from
    code (``harness_model/model_code.py``, no pickle) with the ``harness_model`` package beside it
    (``code_paths``: it loads where the harness is not installed), a signature whose output is typed like
    the labels, and an input example. ``model``: {"features": names, "example": rows}. Returns its
    ``models:/<model id>`` URI."""
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
    return f"models:/{info.model_id}"


def model_name(tags: dict[str, str], params: dict[str, str]) -> str:
    """``<study>-<condition>`` for a sweep's run, ``train-<dataset>`` for ``harness train``'s (MLflow
    refuses / : . % and quotes in a model's name)."""
    if tags.get("study") and tags.get("condition"):
        name = f"{tags['study']}-{tags['condition']}"
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
    """Register the run's model in the Model Registry under ``name`` from its ``models:/<model id>`` URI;
    returns the version. A version of ``name`` already made from this run is returned, not duplicated
    (``compare --register`` twice). A run without a model logs it first from ``artifacts`` (config.json,
    weights.npz) and ``model`` (``engine.data.model_example``)."""
    import mlflow

    for version in client.search_model_versions(f"name = '{name}'"):
        if version.run_id == run_id:
            return str(version.version)
    uri = log_model(client, run_id, artifacts, model) if artifacts is not None else logged_model_uri(client, run_id)
    with _fluent(client):
        version = mlflow.register_model(uri, name, await_registration_for=60)
    return str(version.version)
