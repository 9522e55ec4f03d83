"""A project copied to another folder, the original deleted: every command works on the copy and nothing
is read from or written to the old path (MLflow records absolute artifact locations; the harness points
them at the folder the store is in now)."""

import json
import shutil
import signal
import sqlite3
import time
import urllib.request

import pytest

from tests.helpers import harness, start_ui, write_study
from tests.services import free_port

pytestmark = pytest.mark.e2e


def test_a_copied_project_works_without_its_original(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    write_study(original)
    harness("sweep", "tiny.toml", "--confirm-seeds", "3", cwd=original, check=True)
    shutil.copytree(original, copy)
    shutil.rmtree(original)

    compared = harness("compare", "tiny", "--format", "json", "--out", "report", cwd=copy, check=True)
    assert compared.stderr.count("was moved or copied from") == 1 and str(original) in compared.stderr
    assert json.loads(compared.stdout)["conditions"]
    with sqlite3.connect(copy / "mlruns" / "mlflow.db") as db:
        locations = [row[0] for row in db.execute("SELECT artifact_uri FROM runs")]
        storage_tags = [row[0] for row in db.execute("SELECT value FROM tags WHERE key = 'harness.optuna_storage'")]
        confirm = db.execute("SELECT run_uuid FROM tags WHERE key = 'harness.kind' AND value = 'confirm'").fetchone()[0]
    assert locations and all(str(copy) in loc for loc in locations)
    assert storage_tags and all(tag.startswith(str(copy)) for tag in storage_tags)
    assert any(p.name.startswith("optuna_") for p in (copy / "report").iterdir())  # its journal found

    reproduced = harness("reproduce", confirm, cwd=copy, check=True)
    assert "reproduced exactly" in reproduced.stdout and "moved" not in reproduced.stderr  # relocated once
    (copy / "rows.csv").write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    )
    assert len(harness("predict", confirm, "rows.csv", cwd=copy, check=True).stdout.split()) == 2
    resumed = harness("sweep", "tiny.toml", "--confirm-seeds", "3", cwd=copy, check=True)
    assert "0 trials and 0 confirmation runs in this invocation" in resumed.stdout
    assert served_config(copy, confirm)["loss"] in ("mse", "cross_entropy")  # the UI shows the copy's files
    assert not original.exists()  # nothing was written at the old path


def test_a_sweep_is_the_first_command_on_a_copied_store(tmp_path):
    """The recorder says the store was moved on its stderr: a sweep's first recorder is spawned, and the
    caller's standard streams it was handed were closed under it (dup2 of a descriptor onto itself, then
    closed): ``OSError: [Errno 9] Bad file descriptor``, exit 1. A process of its own, as a user's sweep."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    write_study(original)
    harness("sweep", "tiny.toml", cwd=original, check=True)
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    resumed = harness("sweep", "tiny.toml", cwd=copy, subprocess=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("was moved or copied from") == 1 and str(original) in resumed.stderr


def served_config(folder, run_id):
    """The run's config.json as the MLflow UI that `harness ui` starts in ``folder`` serves it."""
    port = free_port()
    ui = start_ui(folder, port)
    url = f"http://127.0.0.1:{port}/get-artifact?path=config.json&run_uuid={run_id}"
    try:
        deadline = time.time() + 120
        while True:
            assert ui.poll() is None, ui.stderr.read()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return json.loads(response.read())
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
