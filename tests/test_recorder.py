"""Who runs the MLflow operations: how their errors come back."""

import importlib
import os
import time
from pathlib import Path

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


FORKED_RECORDERS = r"""
import os, sys, time
from pathlib import Path
from harness.records import recorder as rec

root = Path(sys.argv[1])
for name in ("first", "second", "third"):
    (root / name).mkdir()
    os.chdir(root / name)
    os.environ["XDG_CACHE_HOME"] = str(root / f"cache-{name}")
    r = rec.RecorderProcess("sqlite:///mlruns/mlflow.db")  # relative: the caller's folder at the time
    r.call("experiment_tags", "x")
    parent = int(Path(f"/proc/{r.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    print(name, r.pid, parent == os.getpid(), flush=True)
    if name != "third":
        r.close()
print("ready", flush=True)
time.sleep(600)
"""


def test_a_process_s_later_recorders_fork_from_a_warm_server_yet_work_as_its_caller_and_die_with_it(tmp_path):
    """Recorders after a process's first fork from a forkserver that imported MLflow once (the suite and
    a notebook start many): such a child is the server's, not the caller's, so it must take the caller's
    folder and environment itself, and still end when the caller is killed."""
    import signal
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = tmp_path / "recorders.py"
    script.write_text(FORKED_RECORDERS)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        lines = [process.stdout.readline().split() for _ in range(4)]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert lines[3] == ["ready"], lines
    assert [line[2] for line in lines[:3]] == ["True", "False", "False"]  # spawned, then forked from the server
    forked_pid = lines[2][1]  # the third: from a server started before its caller moved and changed its environment
    for name in ("first", "second", "third"):  # each store where its caller stood, the template in its caller's cache
        assert (tmp_path / name / "mlruns" / "mlflow.db").is_file()
        assert list((tmp_path / f"cache-{name}").rglob("*.db")), name
    deadline = time.time() + 10
    while Path(f"/proc/{forked_pid}").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{forked_pid}").exists(), "the forked recorder outlived its killed caller"


def test_the_parent_watchdog_outside_a_multiprocessing_child_returns_instead_of_ending_the_process():
    """It ended its own process (``os._exit(0)``) when there was no parent to watch: run in a caller's
    process, it would have ended the caller, exit 0, mid-work. A process of its own, so that such an end
    cannot pass for this test's success."""
    import subprocess
    import sys

    code = "from harness.records import recorder; recorder._watch_parent(); print('returned')"
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert (done.returncode, done.stdout) == (0, "returned\n"), done.stderr


def test_a_run_s_artifacts_are_written_where_create_run_said_without_looking_the_run_up_again(tmp_path, monkeypatch):
    """MLflow's ``log_artifacts`` read the whole run back (``get_run``: params, tags, metrics) to find the
    artifact location its ``create_run`` had just returned: about a tenth of a recorder's time per trial."""
    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from harness.records import operations

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run_id = operations.create_run(client, experiment, "r", {"a": 1}, {"p": 2})
    looked_up = []
    get_run = SqlAlchemyStore.get_run
    monkeypatch.setattr(SqlAlchemyStore, "get_run", lambda store, rid: looked_up.append(rid) or get_run(store, rid))
    operations.write_artifacts(client, run_id, {"config.json": b"{}", "methods/m.py": b"x = 1\n"})
    assert looked_up == []
    folder = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert (folder / "config.json").read_bytes() == b"{}" and (folder / "methods" / "m.py").read_bytes() == b"x = 1\n"
    other = client.create_run(experiment).info.run_id  # a run this process did not create: MLflow finds it
    operations.write_artifacts(client, other, {"a.txt": b"a"}, "sub")
    assert looked_up[-1] == other
    assert [f.path for f in client.list_artifacts(other, "sub")] == ["sub/a.txt"]


def test_a_package_map_that_cannot_be_built_leaves_the_recorders_forkserver_working(monkeypatch):
    """The forkserver imports ``preload`` before it forks any recorder: an error there (a broken package's
    metadata) would end the forkserver and with it every later recorder of the process, not one model."""
    from mlflow.utils import requirements_utils

    from harness.records import preload

    def broken():
        raise ValueError("a distribution with unreadable metadata")

    monkeypatch.setattr(requirements_utils, "_init_modules_to_packages_map", broken)
    importlib.reload(preload)  # as the forkserver imports it: no error
