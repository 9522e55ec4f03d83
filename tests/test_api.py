"""The harness from a notebook: importing it changes nothing; the functions give DataFrames."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import TINY_STUDY
from tests.helpers import ROOT, write_study


def test_importing_harness_imports_nothing_heavy_and_changes_no_setting():
    code = """
import json, logging, os, sys, warnings
import numpy, optuna, pandas  # their own import-time settings are theirs; the harness adds none
before = (dict(os.environ), list(warnings.filters), logging.getLogger("optuna").level)
import harness, harness.api, harness.sweep.conditions, harness.records.recorder
after = (dict(os.environ), list(warnings.filters), logging.getLogger("optuna").level)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"mlflow", "sklearn", "matplotlib", "scipy"})
print(json.dumps({"same": before == after, "heavy": heavy, "version": harness.__version__}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    found = json.loads(done.stdout)
    assert found["same"] and found["heavy"] == [] and found["version"][0].isdigit(), found


@pytest.mark.e2e
def test_train_sweep_and_load_a_study_from_python(workdir):
    import harness
    import harness.engine.training  # the training loop's module does not hide the function

    run = harness.train(dataset="iris", epochs=3, hidden=[4])
    assert run.status == "complete" and len(run.run_id) == 32
    assert list(run.history.index) == [1, 2, 3] and "val_accuracy" in run.history

    swept = harness.run_sweep(write_study(workdir, TINY_STUDY), trials=2, confirm_seeds=2)
    study = harness.load_study("tiny")
    pd.testing.assert_frame_equal(study.summary, swept.table)
    assert set(study.trials["phase"]) == {"search", "confirm"} and len(study.trials) == 2 * 2 + 2 * 2
    curves = study.curves("val_accuracy", "train_loss")
    assert set(curves["key"]) == {"val_accuracy", "train_loss"} and curves["epoch"].min() == 1
    assert len(study.pairs) == 1 and set(study.parents) == {"mse", "cross_entropy"}


@pytest.mark.e2e
def test_the_api_from_a_script_without_a_main_guard_runs_it_once(workdir):
    """Spawned children re-ran an unguarded script: its top half twice, then 'the MLflow recorder process
    died' with two tracebacks (about 115 lines)."""
    study = write_study(workdir)
    script = (
        "import harness\n"
        'print("TOP HALF")\n'
        'harness.train(dataset="iris", epochs=2, hidden=[4])\n'
        f"harness.run_sweep({study!r}, workers=2, trials=1, epochs=2, confirm_seeds=1)\n"
        'print("DONE")\n'
    )
    for argv, stdin in (([str(workdir / "script.py")], None), (["-"], script)):
        (workdir / "script.py").write_text(script)
        done = subprocess.run(
            [sys.executable, *argv],
            input=stdin,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("TOP HALF") == 1 and "DONE" in done.stdout
        assert "Traceback" not in done.stderr, done.stderr
