"""One training run recorded as one MLflow run: the glue between the numpy core and tracking.

The run is created (with its params) before training starts, so a store that cannot be written fails
before any compute is spent; each epoch's metrics gather and go out in batches; artifacts (config,
weights, plots) are written at the end. Used by ``harness train`` and ``harness reproduce``; sweep
trials share ``run_artifacts`` and ``outcome_metrics``.
"""
import io
import json
import time

import numpy as np

from .provenance import blas_info, provenance_tags
from .tracking import HARNESS_TAG, RunWriter, write_artifacts
from .train import DIVERGED, train

CONFIG_ARTIFACT = "config.json"
WEIGHTS_ARTIFACT = "weights.npz"


def config_params(config):
    return {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.to_dict().items()}


def save_weights(network, path, split):
    """Final weights as plain arrays in an .npz (``path`` may be a file object); loads without pickle.
    The feature scaling fitted on the training split goes along, so raw rows can be predicted."""
    arrays = {f"weight_{i}": w for i, w in enumerate(network.weights)}
    arrays.update({f"bias_{i}": b for i, b in enumerate(network.biases)})
    if split.scaler_mean is not None:
        arrays.update(scaler_mean=split.scaler_mean, scaler_scale=split.scaler_scale)
    np.savez(path, classes=np.array(split.classes, dtype=str), **arrays)


def run_artifacts(config, split, result, plots=True):
    """A run's files as {name: bytes}: the config to re-run it, the final weights (unless it diverged)
    and, for single runs, the curve and test-split confusion-matrix plots."""
    artifacts = {CONFIG_ARTIFACT: config.to_json().encode()}
    if result.status != DIVERGED:
        buffer = io.BytesIO()
        save_weights(result.network, buffer, split)
        artifacts[WEIGHTS_ARTIFACT] = buffer.getvalue()
    if plots:
        from sklearn.metrics import confusion_matrix

        from .plots import confusion_png, curves_png
        curves = io.BytesIO()
        curves_png(result.history, curves, config.run_name())
        artifacts["curves.png"] = curves.getvalue()
        if result.status != DIVERGED:
            predicted = result.network.logits(split.x_test).argmax(axis=1)
            matrix = confusion_matrix(split.y_test, predicted, labels=range(split.n_classes))
            confusion = io.BytesIO()
            confusion_png(matrix, split.classes, confusion, "test split confusion matrix")
            artifacts["confusion_matrix.png"] = confusion.getvalue()
    return artifacts


def outcome_metrics(result):
    metrics = {"epochs_run": result.epochs_run}
    if result.status == DIVERGED:
        metrics["diverged_epoch"] = result.diverged_epoch
        if result.last_finite_loss is not None:
            metrics["last_finite_loss"] = result.last_finite_loss
    metrics.update(result.final)
    return metrics


def train_and_record(config, split, uri, experiment, tags=None, parent_run_id=None, callbacks=(),
                     include_test=True, on_epoch=None, run_name=None):
    """Train ``config`` on ``split`` and record it; returns (run_id, TrainResult, timings)."""
    start = time.perf_counter()
    tags = {HARNESS_TAG: "train", "state": "running", "seed": config.seed,
            "dataset": config.dataset, "dataset_digest": split.digest, **(tags or {})}
    writer = RunWriter(uri, experiment, run_name or config.run_name(), config_params(config), tags, parent_run_id,
                       preload=("harness.plots", "sklearn.metrics"))
    writer.set_tags(lambda: _provenance_tags(config))
    writer.wait_started()

    def record(epoch, metrics):
        writer.log_metrics(epoch, metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        return False

    train_start = time.perf_counter()
    try:
        result = train(config, split, callbacks=(record, *callbacks), include_test=include_test)
    except BaseException as exc:
        writer.set_tags({"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})
        writer.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    train_seconds = time.perf_counter() - train_start
    final = {k: v for k, v in outcome_metrics(result).items() if not k.startswith("val_")}
    writer.log_metrics(result.epochs_run, {**final, "train_seconds": train_seconds})  # val_*: last epoch
    writer.set_tags({"state": result.status})
    writer.call(lambda client, run_id: write_artifacts(client, run_id, run_artifacts(config, split, result)))
    run_id = writer.close("FINISHED")
    timings = {"total_seconds": time.perf_counter() - start, "train_seconds": train_seconds,
               "recording_blocked_seconds": max(0.0, writer.blocked_seconds - writer.import_seconds),
               "recording_busy_seconds": writer.busy_seconds,
               "mlflow_import_seconds": writer.import_seconds}
    return run_id, result, timings


def _provenance_tags(config):
    return {**provenance_tags(), "blas": blas_info()["blas"], "blas_threads": config.blas_threads}


def result_json(run_id, result, timings=None):
    summary = {"run_id": run_id, "status": result.status, "metrics": outcome_metrics(result)}
    if timings:
        summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return json.dumps(summary)
