"""Helpers the end-to-end tests share: a study in a temporary folder, its records, the harness as a
command, and the audit of a sweep's records."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import TINY_STUDY

ROOT = Path(__file__).resolve().parent.parent


def write_study(folder, text=TINY_STUDY, name="tiny.toml"):
    path = Path(folder) / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def store_uri(folder):
    return f"sqlite:///{Path(folder) / 'mlruns' / 'mlflow.db'}"


def journal(folder, study="tiny"):
    return Path(folder) / "mlruns" / "optuna" / f"{study}.journal"


def optuna_trials(folder, study="tiny"):
    """{optuna study name: trials} of a local sweep's journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal(folder, study))))
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
        for s in optuna.get_all_study_summaries(storage)
    }


def mlflow_runs(folder, study="tiny"):
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(folder))
    experiment = client.get_experiment_by_name(study)
    return client, client.search_runs([experiment.experiment_id], max_results=5000)


def harness(*args, cwd, env=None, timeout=300, check=False):
    """``python -m harness ARGS`` as a user runs it; the CompletedProcess."""
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def start_harness(*args, cwd, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def json_summary(stdout):
    return json.loads(stdout)["summary"]


def audit_sweep(folder, study_file, printed_summary=None, flags=None, storage=None, uri=None):
    """Problems the audit finds in a local sweep's records ([] when they are right)."""
    from harness.records.recorder import InlineRecorder
    from harness.studies.parse import load_study
    from harness.studies.study import resolve
    from harness.sweep.audit import audit

    study = resolve(load_study(study_file), **(flags or {}))
    return audit(
        study,
        storage or f"journal:{journal(folder, study.name)}",
        InlineRecorder(uri or store_uri(folder)),
        printed_summary,
    )


def compare_json(folder, study="tiny"):
    done = harness("compare", study, "--format", "json", "--out", str(Path(folder) / "report"), cwd=folder, check=True)
    return json.loads(done.stdout)


def start_ui(folder, port):
    """``harness ui`` on ``port`` over the store in ``folder``, as a user starts it; the Popen (stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
