"""Workers ride out a database restart and a tracking-server outage (the throwaway PostgreSQL cluster and
``mlflow server`` of the many-workers suite): every command exits 0 and the records pass the audit; an
outage longer than ``--outage-seconds`` ends in one line, exit 1 (a failure while running, not bad input),
and the next sweep finishes the study.

Each outage starts on an event, never after a sleep (a fast machine had finished the sweep by then, a
slow one had not started training): the sweep is held mid-stack at ``pause-at-epoch``
(``harness/common/faults.py``) while the service goes away, then let go into the outage; a service
comes back once the sweep has said, or shown in the database, that it met the outage."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests import services
from tests.helpers import ROOT, Watched, audit_sweep, release, wait_paused, write_study

pytestmark = pytest.mark.services

STUDY = """
name = "{name}"
[fixed]
dataset = "digits"
hidden = [32]
batch_size = 64
[conditions]
loss = ["mse", "cross_entropy"]
[search]
lr = {{ low = 0.01, high = 1.0, log = true }}
epochs = {{ low = 20, high = 30 }}
[budget]
trials = 4
stack = 2
[pruner]
name = "median"
startup_trials = 1
warmup_epochs = 1
[confirm]
seeds = 3
"""
"""Every epoch asks the database for a pruning decision: an outage finds queries in flight."""


@pytest.fixture(scope="module")
def services_up(tmp_path_factory):
    reason = services.missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("outages")
    postgres, server, storage = services.start_services(root)
    try:
        server.wait_ready()
        yield postgres, server
    finally:
        services.stop_services(postgres, server)


def _sweep(folder, study, postgres, server, database, *flags, fault=None):
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", study, "--json", "--heartbeat", "2", *flags],
        cwd=folder,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HARNESS_OPTUNA_STORAGE": postgres.url(database),
            "MLFLOW_TRACKING_URI": server.url,
            **({"HARNESS_FAULT": fault} if fault else {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Watched(process)


def _setup(tmp_path, postgres, name):
    postgres.create_database(name)
    return write_study(tmp_path, STUDY.format(name=name), f"{name}.toml")


def _audit(tmp_path, study, postgres, server, database, summary):
    return audit_sweep(tmp_path, study, summary, storage=postgres.url(database), uri=server.url)


def _held(tmp_path):
    """The folder of ``pause-at-epoch``: a worker holds its first stack after epoch 2 (the pruner asked)."""
    folder = tmp_path / "held"
    folder.mkdir()
    return folder, f"pause-at-epoch=2:{folder}"


def _waits_for_database(postgres, database):
    return f"harness: the Optuna database {postgres.url(database)} does not answer"


class _Records:
    """What the sweep has told Optuna and recorded in MLflow, read while it is held or working."""

    def __init__(self, postgres, server, name):
        import optuna
        from mlflow import MlflowClient

        self.optuna, self.name = optuna, name
        self.storage = optuna.storages.RDBStorage(postgres.url(name))
        self.client = MlflowClient(server.url)

    def trials(self):
        return [
            (summary.study_name, trial)
            for summary in self.optuna.get_all_study_summaries(self.storage)
            for trial in self.optuna.load_study(study_name=summary.study_name, storage=self.storage).get_trials(
                deepcopy=False
            )
        ]

    def told(self):
        """How many trials Optuna has heard the end of."""
        return sum(1 for _, trial in self.trials() if trial.state.is_finished())

    def training_recorded(self):
        """Every trial in training has its MLflow run: telling its end needs nothing of the server."""
        experiment = self.client.get_experiment_by_name(self.name)
        runs = self.client.search_runs([experiment.experiment_id], max_results=5000) if experiment else []
        recorded = {(r.data.tags.get("harness.optuna_study"), r.data.tags.get("harness.optuna_trial")) for r in runs}
        training = [(name, str(t.number)) for name, t in self.trials() if t.state.name == "RUNNING"]
        return bool(training) and all(held in recorded for held in training)


def _until(condition, sweep, what, timeout=300):
    """Poll ``condition`` (the stores, as the sweep changes them) while the sweep runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert sweep.process.poll() is None, f"the sweep ended before {what}: {''.join(sweep.err)[-3000:]}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.2)


def _stop(sweep):
    """A failed test leaves no sweep behind (held, or waiting for a service)."""
    if sweep.process.poll() is None:
        sweep.process.kill()
        sweep.process.wait()


def test_a_database_restart_in_the_middle_of_two_workers(services_up, tmp_path):
    """The restart (``pg_ctl stop -m fast``, then start) begins while both workers hold a stack in
    training and ends once both have met it: each said it waits for the database."""
    postgres, server = services_up
    study = _setup(tmp_path, postgres, "restart")
    held, fault = _held(tmp_path)
    sweep = _sweep(tmp_path, study, postgres, server, "restart", "--workers", "2", fault=fault)
    try:
        workers = wait_paused(held, 2, sweep.process)
        assert sweep.process.pid in workers  # this command is worker 0; the other is its spawned worker
        records = _Records(postgres, server, "restart")  # past start-up: each worker's recorder has its client
        _until(records.training_recorded, sweep, "the held stacks' runs were created")
        postgres.stop_server()  # every session cut
        try:
            release(held)  # both go on training: their next pruning decision asks the database
            sweep.wait_for(_waits_for_database(postgres, "restart"), count=2)  # once per worker process
        finally:
            postgres.start()
        out, err = sweep.communicate(timeout=600)
    finally:
        _stop(sweep)
    assert sweep.process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert err.count(f"the Optuna database {postgres.url('restart')} answers again") == 2, err[-3000:]
    assert _audit(tmp_path, study, postgres, server, "restart", json.loads(out)["summary"]) == []


@pytest.mark.parametrize("moment", ["at-start", "in-the-middle"])
def test_the_tracking_server_away_for_ten_seconds(services_up, tmp_path, moment):
    """Away before the sweep starts, or from a stack held in training; back once the sweep met the
    outage (it said it waits for the server; a trial was told whose record needs it) and 10 s passed."""
    postgres, server = services_up
    name = moment.replace("-", "_")
    study = _setup(tmp_path, postgres, name)
    held, fault = _held(tmp_path)
    sweep = None
    try:
        try:
            if moment == "at-start":
                server.stop_server()
                away = time.monotonic()
                sweep = _sweep(tmp_path, study, postgres, server, name)
                sweep.wait_for(f"harness: the MLflow tracking server {server.url} does not answer")
            else:
                sweep = _sweep(tmp_path, study, postgres, server, name, fault=fault)
                wait_paused(held, 1, sweep.process)
                records = _Records(postgres, server, name)
                _until(records.training_recorded, sweep, "the held stack's runs were created")
                told = records.told()
                server.stop_server()
                away = time.monotonic()
                release(held)  # the worker trains on, and tells Optuna results whose records wait for the server
                _until(lambda: records.told() > told, sweep, "a trial was told while the server was away")
            time.sleep(max(0.0, away + 10 - time.monotonic()))  # how long it is away, not when it goes
            assert sweep.process.poll() is None, sweep.communicate(timeout=60)  # a sweep needs its records
        finally:
            if server.process.poll() is not None:
                server.start()
            server.wait_ready()
        out, err = sweep.communicate(timeout=600)
    finally:
        if sweep is not None:
            _stop(sweep)
    assert sweep.process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert _audit(tmp_path, study, postgres, server, name, json.loads(out)["summary"]) == []


def test_an_outage_longer_than_the_bound_is_one_line_and_the_next_sweep_finishes(services_up, tmp_path):
    postgres, server = services_up
    study = _setup(tmp_path, postgres, "long")
    held, fault = _held(tmp_path)
    sweep = _sweep(tmp_path, study, postgres, server, "long", "--outage-seconds", "4", fault=fault)
    try:
        wait_paused(held, 1, sweep.process)  # a stack in training, most of the budget to go
        postgres.stop_server()
        try:
            release(held)  # the next epoch's pruning decision needs the database
            out, err = sweep.communicate(timeout=300)
        finally:
            postgres.start()
    finally:
        _stop(sweep)
    assert sweep.process.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert "does not answer" in err and "waiting up to 4 s" in err, err[-2000:]  # it met the outage, then gave up
    last = err.strip().splitlines()[-1]  # the server's database is on the same cluster: either may be named first
    assert last.startswith("harness sweep: error: the ") and "did not answer" in last, err[-2000:]
    assert "run the same command again once it answers" in last
    again = _sweep(tmp_path, study, postgres, server, "long")
    out, err = again.communicate(timeout=600)
    assert again.process.returncode == 0, err[-3000:]
    assert _audit(tmp_path, study, postgres, server, "long", json.loads(out)["summary"]) == []


def test_a_tracking_server_lost_mid_run_exits_1(services_up, tmp_path):
    """A tracking server lost while the sweep ran exited 2, the status of bad input, as a typo would."""
    postgres, server = services_up
    study = _setup(tmp_path, postgres, "lost")
    held, fault = _held(tmp_path)
    sweep = _sweep(tmp_path, study, postgres, server, "lost", "--outage-seconds", "3", fault=fault)
    try:
        try:
            wait_paused(held, 1, sweep.process)
            records = _Records(postgres, server, "lost")
            _until(records.training_recorded, sweep, "the held stack's runs were created")
            server.stop_server()
            release(held)  # the stack's results need the server, which stays away past the bound
            out, err = sweep.communicate(timeout=300)
        finally:
            if server.process.poll() is not None:
                server.start()
            server.wait_ready()
    finally:
        _stop(sweep)
    assert sweep.process.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("harness sweep: error: ") and "MLflow tracking server" in last, err[-2000:]
