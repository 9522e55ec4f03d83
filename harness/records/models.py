"""A run's network as an MLflow model (``pyfunc``: code, not a pickle) and its place in the Model Registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient


def log_model(client: MlflowClient, run_id: str, artifacts: dict[str, bytes], model: dict[str, Any]) -> None:
    """The run's network as a pyfunc model named ``model`` (``harness/records/pyfunc.py``: code, not a
    pickle), with a signature and an input example. ``model``: {"features": names, "example": rows}."""
    import tempfile

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    features = list(model["features"])
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in features]), outputs=Schema([ColSpec("string")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, name in (("config", "config.json"), ("weights", "weights.npz")):
            files[key] = str(Path(tmp) / name)
            Path(files[key]).write_bytes(artifacts[name])
        with _fluent(client, client.get_run(run_id).info.experiment_id):
            Model.log(
                artifact_path=None,
                name="model",
                flavor=mlflow.pyfunc,
                run_id=run_id,
                python_model=str(Path(__file__).with_name("pyfunc.py")),
                artifacts=files,
                signature=signature,
                input_example=pd.DataFrame(model["example"], columns=features),
                pip_requirements=[f"numpy=={_version('numpy')}", f"pandas=={_version('pandas')}"],
            )


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
    run = client.get_run(run_id)
    return bool(run.outputs and run.outputs.model_outputs)


def register_model(
    client: MlflowClient, run_id: str, name: str, artifacts: dict[str, bytes] | None = None, model: Any = None
) -> str:
    """Register the run's ``model`` in the Model Registry under ``name``; returns the new version. A run
    without one logs it first from ``artifacts`` (config.json, weights.npz) and ``model``
    (``engine.data.model_example``)."""
    import mlflow

    if artifacts is not None:
        log_model(client, run_id, artifacts, model)
    with _fluent(client):
        version = mlflow.register_model(f"runs:/{run_id}/model", name, await_registration_for=60)
    return str(version.version)
