"""Workers ride out a database restart and a tracking-server outage (the throwaway PostgreSQL cluster and
``mlflow server`` of the many-workers suite): every command exits 0 and the records pass the audit; an
outage longer than ``--outage-seconds`` ends in one line, exit 2, and the next sweep finishes the study."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests import services
from tests.helpers import ROOT, audit_sweep, write_study

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
trials = 8
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


def _sweep(folder, study, postgres, server, database, *flags):
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", study, "--json", "--heartbeat", "2", *flags],
        cwd=folder,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HARNESS_OPTUNA_STORAGE": postgres.url(database),
            "MLFLOW_TRACKING_URI": server.url,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _setup(tmp_path, postgres, name):
    postgres.create_database(name)
    return write_study(tmp_path, STUDY.format(name=name), f"{name}.toml")


def _audit(tmp_path, study, postgres, server, database, summary):
    return audit_sweep(tmp_path, study, summary, storage=postgres.url(database), uri=server.url)


def _after(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_a_database_restart_in_the_middle_of_two_workers(services_up, tmp_path):
    postgres, server = services_up
    study = _setup(tmp_path, postgres, "restart")
    command = _sweep(tmp_path, study, postgres, server, "restart", "--workers", "2")
    time.sleep(9)  # past start-up: both workers train and ask for pruning decisions every epoch
    assert command.poll() is None, command.communicate()
    postgres.restart()
    out, err = command.communicate(timeout=600)
    assert command.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert _audit(tmp_path, study, postgres, server, "restart", json.loads(out)["summary"]) == []


@pytest.mark.parametrize("moment", [0.0, 8.0], ids=["at-start", "in-the-middle"])
def test_the_tracking_server_away_for_ten_seconds(services_up, tmp_path, moment):
    postgres, server = services_up
    name = f"away{int(moment)}"
    study = _setup(tmp_path, postgres, name)
    if moment == 0:
        server.stop_server()
        back = _after(10, server.start)
        command = _sweep(tmp_path, study, postgres, server, name)
    else:
        command = _sweep(tmp_path, study, postgres, server, name)
        time.sleep(moment)
        server.stop_server()
        back = _after(10, server.start)
    try:
        out, err = command.communicate(timeout=600)
    finally:
        back.join()
        server.wait_ready()
    assert command.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert _audit(tmp_path, study, postgres, server, name, json.loads(out)["summary"]) == []


def test_an_outage_longer_than_the_bound_is_one_line_and_the_next_sweep_finishes(services_up, tmp_path):
    postgres, server = services_up
    study = _setup(tmp_path, postgres, "long")
    command = _sweep(tmp_path, study, postgres, server, "long", "--outage-seconds", "4")
    time.sleep(8)
    postgres.stop_server()
    try:
        out, err = command.communicate(timeout=300)
    finally:
        postgres.start()
    assert command.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # the server's database is on the same cluster: either may be named first
    assert last.startswith("harness sweep: error: the ") and "did not answer" in last, err[-2000:]
    assert "run the same command again once it answers" in last
    again = _sweep(tmp_path, study, postgres, server, "long")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert _audit(tmp_path, study, postgres, server, "long", json.loads(out)["summary"]) == []
