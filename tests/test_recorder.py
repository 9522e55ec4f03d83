"""Who runs the MLflow operations: how their errors come back."""

from harness.records.recorder import _error_payload


def test_a_full_disk_wrapped_in_another_error_is_still_said_as_a_full_disk():
    """SQLAlchemy raised 'Query-invoked autoflush' from sqlite's 'database or disk is full': exit 2 and
    the disk unnamed."""
    try:
        try:
            raise OSError("database or disk is full")
        except OSError as cause:
            raise RuntimeError("(raised as a result of Query-invoked autoflush; consider ...)") from cause
    except RuntimeError as exc:
        kind, message = _error_payload(exc, "sqlite:////data/project/mlruns/mlflow.db")
    assert kind == "disk" and "the disk holding /data/project/mlruns is full (database or disk is full)" in message


def test_the_curves_of_many_runs_are_read_in_one_operation_with_the_values_one_by_one_gives(tmp_path):
    """A finished sweep's re-print read every seed's curves one call per run and key (200 for the
    quickstart); ``Curves.prefetch`` reads them in one operation, the same values in step order."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from harness.records.recorder import InlineRecorder
    from harness.records.table import Curves

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e")
    runs = [client.create_run(experiment).info.run_id for _ in range(3)]
    for i, run_id in enumerate(runs):
        steps = [3, 1, 2] if i else [1, 2]  # logged out of order: read back in step order
        metrics = [Metric(k, step * 10.0 + i, 1000 + step, step) for k in ("loss", "acc") for step in steps]
        client.log_batch(run_id, metrics=metrics)
    recorder = InlineRecorder(uri)
    calls = []
    call = recorder.call
    recorder.call = lambda operation, *args: calls.append(operation) or call(operation, *args)
    curves = Curves(recorder)
    curves.prefetch(runs, ["loss", "acc"])
    read = {(run_id, key): curves(run_id, key) for run_id in runs for key in ("loss", "acc")}
    assert calls == ["metric_histories_bulk"]
    for run_id in runs:
        one_by_one = call("metric_histories", run_id, ["loss", "acc"])
        for key in ("loss", "acc"):
            assert read[(run_id, key)] == [value for _, value, _ in one_by_one[key]]
    assert read[(runs[1], "loss")] == [11.0, 21.0, 31.0]
    # a condition's mean curves (its parent's) read its seeds that way
    import pandas as pd

    from harness.records.parents import mean_curves

    calls.clear()
    seeds = pd.DataFrame({"run_id": runs, "metric.loss": [1.0] * 3, "metric.acc": [1.0] * 3})
    points = mean_curves(seeds, Curves(recorder))
    assert calls == ["metric_histories_bulk"] and ("loss_seeds_mean", 21.0, 2) in points
