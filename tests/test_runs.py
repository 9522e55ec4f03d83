"""A training result as one MLflow run: a run ends FINISHED only once its results are stored."""

import errno
from types import SimpleNamespace

import pytest

from harness.common.errors import DiskFullError
from harness.engine.training import train_model
from harness.records.recorder import InlineRecorder
from harness.records.runs import TrialRuns


def test_a_full_disk_while_recording_never_leaves_a_finished_run_without_its_results(
    workdir, split, config, monkeypatch
):
    """The end was a separate write after the results: with the disk full, the results failed and the
    run still ended FINISHED with state=running and no metrics (the audit passed it)."""
    import harness.records.operations as tracking

    uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    recorder = InlineRecorder(uri)
    experiment = recorder.call("ensure_experiment", "s", uri)
    study = SimpleNamespace(search_ids={}, search_curves="all", objective="val_accuracy")
    runs = TrialRuns(recorder, study, SimpleNamespace(experiment_id=experiment), {})
    create = recorder.submit(
        "create_run", experiment, "t000", {"harness.kind": "search", "harness.state": "running"}, {}
    )
    run_config = config()
    result = train_model(run_config, split)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    end_run = tracking.OPERATIONS["end_run"]

    def end_without_tags(client, run_id, status, tags=None):  # marking it unrecorded needs a write too
        if tags:
            full()
        end_run(client, run_id, status, tags)

    monkeypatch.setattr(tracking, "write_artifacts", full)
    monkeypatch.setitem(tracking.OPERATIONS, "end_run", end_without_tags)
    runs.finish(create, run_config, split, result, {"harness.state": "complete"})
    with pytest.raises(DiskFullError, match=r"the disk holding .*mlruns is full"):
        runs.check(block=True)
    run = recorder.call("get_run", recorder.result(create))
    assert run["status"] == "RUNNING" and run["tags"]["harness.state"] == "running"  # the next start reconciles it
