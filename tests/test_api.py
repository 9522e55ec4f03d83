"""The harness from a notebook: importing it changes nothing; a call leaves the caller's environment and
logging as it found them; the functions give DataFrames named and typed as ``mlflow.search_runs`` and pandas
give them; the public API is typed and documented."""

import inspect
import json
import logging
import os
import subprocess
import sys
import tomllib
import warnings

import pandas as pd
import pytest

from tests.conftest import TINY_STUDY
from tests.helpers import ROOT, store_uri, write_study


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


# --- one study, made by a notebook-like script that checks its own process after every call -----------------
NOTEBOOK = """
import json, logging, os, sys, warnings

def state():
    loggers = {"": logging.getLogger()} | {
        n: l for n, l in logging.root.manager.loggerDict.items() if isinstance(l, logging.Logger)
    }
    levels = {n: [l.level, l.disabled] for n, l in loggers.items()}
    return {"environ": dict(os.environ), "levels": levels, "warnings": [repr(f) for f in warnings.filters]}

def changes(before, after):
    env = sorted(k for k in set(before["environ"]) | set(after["environ"])
                 if before["environ"].get(k) != after["environ"].get(k))
    levels = {n: [v, after["levels"].get(n)] for n, v in before["levels"].items() if after["levels"].get(n) != v}
    return {"environ": env, "levels": levels, "warnings": before["warnings"] != after["warnings"]}

found = {}
def call(label, function, *args, **kwargs):
    before = state()
    value = function(*args, **kwargs)
    found[label] = changes(before, state())
    return value

logging.getLogger("mine").setLevel(logging.DEBUG)  # the caller's own logger
import harness
call("train", harness.train, dataset="iris", epochs=3, hidden=[4])
swept = call("run_sweep", harness.run_sweep, "tiny.toml", trials=2, confirm_seeds=2)
study = call("load_study", harness.load_study, "tiny")
# a caller who uses MLflow and Optuna too, at levels of their own
import mlflow, optuna
logging.getLogger("mlflow").setLevel(logging.DEBUG)
optuna.logging.set_verbosity(optuna.logging.ERROR)
call("run_sweep again", harness.run_sweep, "tiny.toml", trials=2, confirm_seeds=2)
study = call("load_study again", harness.load_study, "tiny")
call("curves", study.curves, "val_accuracy")
found["levels at the end"] = {n: logging.getLogger(n).level for n in ("mine", "mlflow", "optuna")}
found["summary is the sweep's table"] = study.summary.equals(swept.table)
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """(folder of the store, what the script found) after a train, two sweeps and two loads of one study."""
    folder = tmp_path_factory.mktemp("notebook")
    write_study(folder, TINY_STUDY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HARNESS_"))}
    done = subprocess.run(
        [sys.executable, "-c", NOTEBOOK],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, json.loads(done.stdout.splitlines()[-1])


@pytest.mark.e2e
def test_no_call_changes_the_callers_environment_logging_or_warnings(notebook):
    """``load_study`` left three MLFLOW_* variables and MLflow's logger at CRITICAL (the caller's DEBUG lost);
    ``run_sweep`` left Optuna at WARNING (the caller's ERROR lost). A library's own set-up when first
    imported (``import mlflow`` sets its logger to INFO) is the library's; its variables are undone too."""
    _, found = notebook
    calls = ["train", "run_sweep", "load_study", "run_sweep again", "load_study again", "curves"]
    found["load_study"].pop("warnings")  # MLflow's first import adds numpy's and urllib3's filters, as anyone's would
    unchanged = {"environ": [], "levels": {}, "warnings": False}
    assert {label: found[label] for label in calls} == {
        label: {k: v for k, v in unchanged.items() if k in found[label]} for label in calls
    }
    assert found["levels at the end"] == {"mine": logging.DEBUG, "mlflow": logging.DEBUG, "optuna": logging.ERROR}


@pytest.fixture(scope="module")
def loaded(notebook):
    import harness

    folder, _ = notebook
    return harness.load_study("tiny", tracking_uri=store_uri(folder))


@pytest.fixture(scope="module")
def mlflows(notebook):
    """``mlflow.search_runs`` on the same store (MLflow's global tracking URI put back after)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    folder, _ = notebook
    with utils._use_tracking_uri(store_uri(folder)):
        return mlflow.search_runs(experiment_names=["tiny"])


@pytest.mark.e2e
def test_train_sweep_and_load_a_study_from_python(notebook, loaded):
    _, found = notebook
    assert found["summary is the sweep's table"]
    assert set(loaded.trials["phase"]) == {"search", "confirm"} and len(loaded.trials) == 2 * 2 + 2 * 2
    curves = loaded.curves("val_accuracy", "train_loss")
    assert set(curves["key"]) == {"val_accuracy", "train_loss"} and curves["epoch"].min() == 1
    assert curves[["trial", "seed", "epoch"]].dtypes.tolist() == ["Int64"] * 3 and curves["value"].dtype == "float64"
    assert len(loaded.pairs) == 1 and set(loaded.parents) == {"mse", "cross_entropy"}
    with pytest.raises(ValueError, match="phase='confirmed' is not allowed"):
        loaded.curves(phase="confirmed")


@pytest.mark.e2e
def test_the_trials_are_named_and_typed_as_mlflow_search_runs_gives_them(loaded, mlflows):
    """Was: ``start_time`` int64 milliseconds, ``param.lr`` text, ``trial``/``seed`` float64, ``metric.*``."""
    ours = loaded.trials
    theirs = mlflows.set_index("run_id").loc[ours["run_id"]].reset_index()
    assert not [c for c in ours if c.startswith(("param.", "metric.", "tag."))]
    shared = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    shared += [c for c in ours if c.startswith(("metrics.", "tags."))]
    assert len(shared) > 20 and "tags.mlflow.runName" in shared and "metrics.test_accuracy" in shared
    for column in shared:  # the same values in the same dtype: start_time is datetime64[.., UTC] in both
        pd.testing.assert_series_equal(ours[column], theirs[column], check_names=False, obj=column)
    assert str(ours["start_time"].dtype).startswith("datetime64") and str(ours["start_time"].dt.tz) == "UTC"
    assert (ours["end_time"] >= ours["start_time"]).all()
    # params: numbers as numbers, integers nullable, booleans boolean, text as MLflow's
    assert ours["params.lr"].dtype == "float64" and ours["params.epochs"].dtype == "Int64"
    pd.testing.assert_series_equal(ours["params.lr"], theirs["params.lr"].astype(float), check_names=False)
    pd.testing.assert_series_equal(ours["params.epochs"], theirs["params.epochs"].astype("Int64"), check_names=False)
    assert ours["params.shuffle"].dtype == "boolean" and ours["params.shuffle"].all()
    pd.testing.assert_series_equal(ours["params.hidden"], theirs["params.hidden"], check_names=False)  # "8": text
    assert ours[["trial", "seed", "best_search_trial", "epochs_to_target"]].dtypes.tolist() == ["Int64"] * 4
    assert ours["seed"].tolist() == ours["params.seed"].tolist()


@pytest.mark.e2e
def test_the_summary_counts_are_numbers(loaded):
    """Was: ``target_reached`` the text "2/2"; val_rows and test_rows float64; the pairs' p-values objects."""
    summary, trials = loaded.summary, loaded.trials
    assert "target_reached" not in summary
    counts = ["seeds_reached_target", "seeds_confirmed", "val_rows", "test_rows"]
    assert summary[counts].dtypes.tolist() == ["Int64"] * 4
    confirm = trials[trials["phase"] == "confirm"]
    for row in summary.itertuples():
        seeds = confirm[confirm["condition"] == row.condition]
        assert row.seeds_confirmed == len(seeds) == 2
        assert row.seeds_reached_target == seeds["epochs_to_target"].notna().sum()
    numbers = ["mean_difference", "ci_low", "ci_high", "p_value", "p_holm", "p_equivalence", "detectable"]
    assert (loaded.pairs[numbers].dtypes == "float64").all(), loaded.pairs.dtypes
    assert loaded.pairs[["seeds_needed", "seeds_for_equivalence"]].dtypes.tolist() == ["Int64"] * 2


# --- without a store ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, texts, dtype, values",
    [
        ("lr", ["0.1", "2", None], "float64", [0.1, 2.0, None]),
        ("epochs", ["3", "12", None], "Int64", [3, 12, None]),
        ("nesterov", ["False", "True", None], "boolean", [False, True, None]),
        ("hidden", ["8", "16"], "str", ["8", "16"]),  # a list setting: text even when each has one layer
        ("batch_size", ["32", "full"], "str", ["32", "full"]),
        ("focal_gamma", ["1.5", "2"], "float64", [1.5, 2.0]),  # a custom method's own: typed by its values
        ("focal_steps", ["1", "2"], "Int64", [1, 2]),
        ("epochs", ["3", "three"], "str", ["3", "three"]),  # does not parse: text, as MLflow gives it
    ],
)
def test_a_param_column_takes_the_settings_type(name, texts, dtype, values):
    from harness.records.table import param_column

    column = param_column(name, pd.Series(texts, dtype=object))
    assert str(column.dtype) == dtype or (dtype == "str" and column.dtype == object)
    assert [None if pd.isna(v) else v for v in column] == values


def test_a_scoped_call_puts_back_the_environment_levels_and_filters(monkeypatch):
    from harness.api import _settings_kept

    monkeypatch.setenv("HARNESS_API_KEPT", "mine")
    mine, late = logging.getLogger("harness-test-mine"), "harness-test-created-inside"
    mine.setLevel(logging.INFO)
    filters = list(warnings.filters)
    with _settings_kept():
        os.environ["HARNESS_API_KEPT"] = "theirs"
        os.environ["HARNESS_API_ADDED"] = "1"
        mine.setLevel(logging.CRITICAL)
        mine.disabled = True
        logging.getLogger(late).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="harness-test")
    assert os.environ["HARNESS_API_KEPT"] == "mine" and "HARNESS_API_ADDED" not in os.environ
    assert mine.level == logging.INFO and not mine.disabled and warnings.filters == filters
    assert logging.getLogger(late).level == logging.ERROR  # made inside: a library's own set-up stays


PUBLIC = ["load_study", "run_sweep", "train", "StudyRecords", "TrainedRun", "register_optimizer", "register_loss"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_typed_and_documented_in_numpydoc(name):
    import harness

    assert sorted(PUBLIC) == sorted(n for n in harness.__all__ if n != "__version__")
    thing = getattr(harness, name)
    doc = inspect.getdoc(thing) or ""
    sections = ["Attributes"] if inspect.isclass(thing) else ["Parameters", "Returns", "Examples"]
    for section in sections:
        assert f"\n{section}\n{'-' * len(section)}\n" in doc, f"{name}: no {section} section"
    if inspect.isclass(thing):
        return  # a dataclass: its fields are its annotations
    signature = inspect.signature(thing)
    assert signature.return_annotation is not inspect.Signature.empty, name
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name


def test_the_package_ships_its_py_typed_marker():
    assert (ROOT / "harness" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["harness"]


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
