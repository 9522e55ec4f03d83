"""``benchmarks/bench_vs_plain.py``'s start-up figure: when the first trained epoch ended."""

from harness.records.store import open_client
from tests.helpers import ROOT, load_file


def test_the_first_epoch_is_a_trained_runs_not_a_parents_mean_curve(tmp_path):
    """A parent's curves (its seeds' means) are timed at the parent's start, which is the sweep's: read as
    the first epoch, they would give the start-up as the moment the parent was made."""
    bench = load_file(ROOT / "benchmarks" / "bench_vs_plain.py")
    (tmp_path / "mlruns").mkdir()
    client = open_client(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.create_experiment("study")
    since = 1_000_000
    parent = client.create_run(experiment, start_time=since + 100).info.run_id
    child = client.create_run(experiment, start_time=since + 900, tags={"mlflow.parentRunId": parent})
    client.log_metric(parent, "val_accuracy_seeds_mean", 0.5, timestamp=since + 100, step=1)
    client.log_metric(child.info.run_id, "val_accuracy", 0.5, timestamp=since + 1400, step=1)
    client.log_metric(child.info.run_id, "val_accuracy", 0.6, timestamp=since + 1500, step=2)
    client.log_metric(child.info.run_id, "val_accuracy", 0.4, timestamp=since - 5000, step=1)  # another sweep's, before
    assert bench.first_epoch_end(tmp_path, since) == 1.4
