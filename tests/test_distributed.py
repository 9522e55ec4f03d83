"""One study from several workers on PostgreSQL and an MLflow tracking server; one worker is killed.

Starts a throwaway PostgreSQL cluster and an ``mlflow server`` (PostgreSQL backend, artifacts served
by the server) on loopback ports, runs three ``harness sweep`` commands on one study as if on three
machines, SIGKILLs one of them (with its recorder) in the middle of a trial, and checks what the
survivors leave: exact budgets, no duplicates, the killed trial failed by Optuna's heartbeat and
re-run, no MLflow run left RUNNING, confirmation once. Then compare, reproduce, predict and ui on the
server.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from tests import services
from tests.helpers import wait_paused

pytestmark = pytest.mark.services

STUDY = """
name = "dist"
[fixed]
dataset = "iris"
hidden = [16]
batch_size = 32
[conditions]
loss = ["mse", "cross_entropy"]
[search]
lr = { low = 0.01, high = 1.0, log = true }
epochs = { low = 15, high = 20 }
[budget]
trials = 6
stack = 2
[pruner]
name = "none"
[confirm]
seeds = 2
"""
BUDGET, SEEDS = 6, [1, 2]
SLOW = {"HARNESS_FAULT": "epoch-delay=0.1"}
"""Trials of a few seconds (a hook's delay per model and epoch), so a worker can be killed inside one."""


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    reason = services.missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("services")
    postgres, server, storage = services.start_services(root)
    try:
        server.wait_ready()
        yield storage, server.url
    finally:
        services.stop_services(postgres, server)


def _trials(storage_url):
    import optuna

    storage = optuna.storages.RDBStorage(storage_url)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
        for s in optuna.get_all_study_summaries(storage)
    }


def _runs(tracking_uri, study="dist"):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=5000)


def _harness(*args, cwd, fault=None, **kwargs):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **(fault or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _kill_inside_a_trial(victim, held, storage, tracking_uri):
    """SIGKILL ``victim`` (and its recorder) while it is held inside a stack (``pause-at-epoch``, in the
    folder ``held``): its trials RUNNING, their MLflow runs RUNNING. Killed on that event, not when a poll
    happened to see a trial that may end before the signal lands."""
    assert wait_paused(held, 1, victim, timeout=180) == [victim.pid]
    trials = [
        (name, t.number)
        for name, group in _trials(storage).items()
        for t in group
        if t.state.name == "RUNNING" and t.user_attrs.get("worker_pid") == victim.pid
    ]
    running = {
        (r.data.tags.get("harness.optuna_study"), r.data.tags.get("harness.optuna_trial"))
        for r in _runs(tracking_uri)
        if r.info.status == "RUNNING"
    }
    assert trials and all((name, str(number)) in running for name, number in trials), (trials, running)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    return trials


def test_three_workers_one_killed_finish_one_study(stores, tmp_path):
    storage, tracking_uri = stores
    (tmp_path / "dist.toml").write_text(textwrap.dedent(STUDY))
    flags = ["--storage", storage, "--tracking-uri", tracking_uri, "--heartbeat", "1"]
    held = tmp_path / "held"
    held.mkdir()
    pause = {"HARNESS_FAULT": f"{SLOW['HARNESS_FAULT']},pause-at-epoch=2:{held}"}
    workers = [
        _harness("sweep", "dist.toml", *flags, cwd=tmp_path, fault=fault, start_new_session=True)
        for fault in (pause, SLOW, SLOW)
    ]
    victim, survivors = workers[0], workers[1:]
    killed = _kill_inside_a_trial(victim, held, storage, tracking_uri)
    outputs = [worker.communicate(timeout=600) for worker in survivors]
    for worker, (_, err) in zip(survivors, outputs):
        assert worker.returncode == 0, err
    assert not list(tmp_path.glob("mlruns/*.db")), "workers must not fall back to a local store"

    trials = _trials(storage)
    from harness.sweep.conditions import retried_from, trial_state

    for condition in ("mse", "cross_entropy"):
        search = trials[f"dist/{condition}"]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in search) == BUDGET, condition
        assert len({t.number for t in search}) == len(search)
        confirm = trials[f"dist/{condition}/confirm-after-{BUDGET}-trials"]
        assert sorted(t.params["seed"] for t in confirm if t.state.name == "COMPLETE") == SEEDS
    for group in trials.values():
        assert not [t for t in group if t.state.name in ("RUNNING", "WAITING")]
    for name, number in killed:  # failed by a survivor's heartbeat check, then re-run with the same settings
        dead = next(t for t in trials[name] if t.number == number)
        assert dead.state.name == "FAIL" and trial_state(dead) == "killed"
        again = [t for t in trials[name] if retried_from(t) == number]
        assert len(again) == 1 and again[0].params == dead.params
        assert again[0].user_attrs["worker_pid"] in {w.pid for w in survivors}
        # trained again, unless the survivors had filled the budget by the time they took the copy
        assert again[0].state.name == "COMPLETE" or again[0].user_attrs.get("state") == "over_budget", (
            again[0].state,
            again[0].user_attrs,
        )

    runs = _runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_trial = Counter(
        (r.data.tags.get("harness.optuna_study"), r.data.tags.get("harness.optuna_trial"))
        for r in runs
        if r.data.tags["harness.kind"] in ("search", "confirm")
    )
    assert max(by_trial.values()) == 1  # each trial maps to one run
    for name, number in killed:
        dead_run = next(
            r
            for r in runs
            if (r.data.tags.get("harness.optuna_study"), r.data.tags.get("harness.optuna_trial")) == (name, str(number))
        )
        assert dead_run.info.status == "FAILED" and dead_run.data.tags["harness.state"] == "killed"
    for name, group in trials.items():  # every finished trial's run is where Optuna says
        for t in group:
            if t.state.name in ("COMPLETE", "PRUNED"):
                run = next(r for r in runs if r.info.run_id == t.user_attrs["mlflow_run_id"])
                assert (run.data.tags["harness.optuna_study"], run.data.tags["harness.optuna_trial"]) == (
                    name,
                    str(t.number),
                )
                assert run.info.status == "FINISHED"
    confirm_runs = Counter(r.data.tags["harness.condition"] for r in runs if r.data.tags["harness.kind"] == "confirm")
    assert confirm_runs == {"mse": len(SEEDS), "cross_entropy": len(SEEDS)}
    assert Counter(r.data.tags["harness.kind"] for r in runs)["condition"] == 2  # one parent per condition

    # the other commands work against the tracking server too
    compare = _harness(
        "compare",
        "dist",
        "--tracking-uri",
        tracking_uri,
        "--format",
        "json",
        "--out",
        str(tmp_path / "report"),
        cwd=tmp_path,
    )
    out, err = compare.communicate(timeout=300)
    assert compare.returncode == 0, err
    table = json.loads(out)["conditions"]
    assert {row["condition"] for row in table} == {"mse", "cross_entropy"}
    parent = next(r for r in runs if r.data.tags["harness.kind"] == "condition")
    from mlflow import MlflowClient

    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "report.html", "curves_by_condition.png"} <= artifacts

    retried = next(
        (
            t
            for name, number in killed
            for t in trials[name]
            if retried_from(t) == number and t.state.name == "COMPLETE"
        ),
        None,
    ) or next(t for t in trials["dist/mse"] if t.state.name == "COMPLETE")
    again = _harness("reproduce", retried.user_attrs["mlflow_run_id"], "--tracking-uri", tracking_uri, cwd=tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err

    rows = tmp_path / "rows.csv"
    rows.write_text(
        "\n".join(
            [
                "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)",
                "5.1,3.5,1.4,0.2",
                "6.7,3.0,5.2,2.3",
            ]
        )
    )
    predict = _harness(
        "predict", retried.user_attrs["mlflow_run_id"], str(rows), "--tracking-uri", tracking_uri, cwd=tmp_path
    )
    out, err = predict.communicate(timeout=300)
    assert predict.returncode == 0 and len(out.split()) == 2, err

    ui = _harness("ui", "--tracking-uri", tracking_uri, cwd=tmp_path)
    out, err = ui.communicate(timeout=60)
    assert ui.returncode == 0 and tracking_uri in out, err
