"""A fresh study's first stack is trained while the stores open (``sweep/speculation.py``), and what the
sweep then records is what training it after the preparation records, bit for bit."""

import json
import threading

import numpy as np
import pytest

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import STOPPED, train_stack
from harness.sweep import lifecycle
from harness.sweep.speculation import FirstStack, replay, resumed
from tests.conftest import TINY_STUDY
from tests.helpers import harness, journal, mlflow_runs, optuna_trials, write_study
from tests.test_reference_curves import BASE, STACK

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def stack():
    configs = [make_config({**BASE, "momentum": 0.9, **member}) for member in STACK]
    return configs, load_split(configs[0])


def _same(got, want):
    for a, b in zip(got, want, strict=True):
        outcome = ("status", "epochs_run", "diverged_epoch", "final", "history")
        assert [getattr(a, k) for k in outcome] == [getattr(b, k) for k in outcome]
        if b.network is not None:
            np.testing.assert_array_equal(a.network.stack.params, b.network.stack.params)


def _asked(rule, log):
    """``rule`` as a stack callback that logs every (member, epoch) it is asked about."""

    def callback(t, epoch, metrics):
        log.append((t, epoch, metrics["val_accuracy"]))
        return rule(t, epoch, metrics)

    return callback


@pytest.mark.parametrize(
    "rule",
    [
        lambda t, epoch, metrics: False,  # nothing stops: the stack trained ahead is the result
        lambda t, epoch, metrics: t == 0 and epoch == 2,  # a member stops: trained again from there
        lambda t, epoch, metrics: epoch == 3 and metrics["val_accuracy"] < 0.99,  # several at one epoch
    ],
    ids=["none-stops", "one-stops", "several-stop"],
)
def test_replaying_a_stack_trained_ahead_asks_and_gives_what_training_it_then_does(stack, rule):
    """The stack (one member diverges, one explodes) trained with the rule, against: trained with no
    rule first, the rule replayed over its curves, and trained again from where the rule stopped one."""
    configs, split = stack
    direct_log, ahead_log = [], []
    direct = train_stack(configs, split, (_asked(rule, direct_log),), include_test=False)
    ahead = train_stack(configs, split, (), include_test=False)
    callbacks = (_asked(rule, ahead_log),)
    stopped = replay(ahead, callbacks)
    got = ahead if stopped is None else train_stack(configs, split, (resumed(callbacks, stopped),), include_test=False)
    assert (stopped is None) == all(r.status != STOPPED for r in direct if r is not None)
    assert ahead_log == direct_log  # each decision asked once, in the order training asks them
    _same(got, direct)


RUN_IDS = {"best_seed_run_id", "best_trial_run_id", "parent_run_id"}
"""What differs between two sweeps that trained the same: MLflow's new ids."""


def _sweep(folder, ahead, monkeypatch):
    study = write_study(folder, TINY_STUDY.replace("trials = 4", "trials = 6\nstack = 4"))
    if not ahead:
        monkeypatch.setattr(lifecycle.FirstStack, "start", classmethod(lambda cls, *args: None))
    done = harness("sweep", study, "--json", cwd=folder, check=True)
    monkeypatch.undo()
    return json.loads(done.stdout)


def _records(folder):
    trials = {
        (name, t.number): (t.state, t.params, t.value, t.intermediate_values, t.user_attrs.get("state"))
        for name, found in optuna_trials(folder).items()
        for t in found
    }
    curves = {}
    client, runs = mlflow_runs(folder)
    for run in runs:
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            curves[(run.info.run_name, key)] = [(m.step, m.value) for m in history]
    return trials, curves


def _points_outside_their_runs(folder):
    """(run, key, step) of each metric point timed before its run started or after it ended."""
    client, runs = mlflow_runs(folder)
    return [
        (run.info.run_name, key, m.step)
        for run in runs
        for key in run.data.metrics
        for m in client.get_metric_history(run.info.run_id, key)
        if not run.info.start_time <= m.timestamp <= (run.info.end_time or m.timestamp)
    ]


def _runs_before_their_parent(folder):
    """(run, parent) names of each run that started before the parent run it is nested in: in the UI's
    timeline a condition's first trials would precede the condition."""
    _, runs = mlflow_runs(folder)
    by_id = {run.info.run_id: run for run in runs}
    return [
        (run.info.run_name, parent.info.run_name)
        for run in runs
        if (parent := by_id.get(run.data.tags.get("mlflow.parentRunId", ""))) is not None
        and run.info.start_time < parent.info.start_time
    ]


def test_a_fresh_studys_first_stack_trained_ahead_records_what_training_it_after_the_preparation_does(
    tmp_path, monkeypatch
):
    ahead, after = tmp_path / "ahead", tmp_path / "after"
    ahead.mkdir(), after.mkdir()
    with_ahead, without = _sweep(ahead, True, monkeypatch), _sweep(after, False, monkeypatch)
    assert [s["trained_ahead"] for s in with_ahead["stats"]] == [4]  # the first condition's first stack
    assert [s["trained_ahead"] for s in without["stats"]] == [0]
    for a, b in zip(with_ahead["summary"], without["summary"], strict=True):
        assert {k: v for k, v in a.items() if k not in RUN_IDS} == {k: v for k, v in b.items() if k not in RUN_IDS}
    assert _records(ahead) == _records(after)
    # a run started when its training did (ahead or not), not when the recorder got to it
    assert _points_outside_their_runs(ahead) == _points_outside_their_runs(after) == []
    # and a condition's parent run starts with the sweep, before the first stack trained ahead
    assert _runs_before_their_parent(ahead) == _runs_before_their_parent(after) == []
    again = harness(
        "sweep",
        write_study(ahead, TINY_STUDY.replace("trials = 4", "trials = 6\nstack = 4")),
        "--json",
        cwd=ahead,
        check=True,
    )
    assert [s["trained_ahead"] for s in json.loads(again.stdout)["stats"]] == [0]  # a known study: nothing ahead


def test_a_stack_trained_ahead_is_dropped_when_the_preparation_refuses_the_sweep(tmp_path, monkeypatch):
    """The journal deleted while the runs stay: the refusal comes before any trial is asked, and the
    stack already training stops with the command (no thread left behind, nothing recorded)."""
    study = write_study(tmp_path)
    harness("sweep", study, "--trials", "2", "--epochs", "3", cwd=tmp_path, check=True)
    runs = len(mlflow_runs(tmp_path)[1])
    journal(tmp_path).unlink()
    started = []
    start = FirstStack.start.__func__

    def spied(cls, *args):
        started.append(start(cls, *args))
        return started[-1]

    monkeypatch.setattr(lifecycle.FirstStack, "start", classmethod(spied))
    refused = harness("sweep", study, "--trials", "2", "--epochs", "3", cwd=tmp_path)
    assert refused.returncode == 2 and "has no trace of it" in refused.stderr, refused.stderr
    assert started and started[0] is not None  # it was training
    assert not any(t.name == "first-stack" and t.is_alive() for t in threading.enumerate())
    assert len(mlflow_runs(tmp_path)[1]) == runs
    assert all(not trials for trials in optuna_trials(tmp_path).values())
