"""A run's network as a conventional MLflow model: pyfunc.load_model and `mlflow models serve` give the
classes `harness predict` prints for the same rows."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY_STUDY
from tests.helpers import harness, mlflow_runs, store_uri, write_study
from tests.services import free_port

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.5, 5.0, 1.9]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    done = harness("train", "--dataset", "iris", "--epochs", "20", "--hidden", "8", "--json", cwd=folder, check=True)
    rows = folder / "rows.csv"
    rows.write_text(
        "\n".join(
            [
                "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)",
                *(",".join(map(str, r)) for r in ROWS),
            ]
        )
    )
    return {"folder": folder, "run_id": json.loads(done.stdout)["run_id"], "rows": rows}


def _predicted_by_harness(folder, run_id, rows):
    return harness("predict", run_id, str(rows), cwd=folder, check=True).stdout.split()


HIDE_HARNESS = """
import importlib.abc, sys
class HideHarness(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "harness" or name.startswith("harness."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
sys.meta_path.insert(0, HideHarness())
"""


def _model_uri(folder, run_id):
    from mlflow import MlflowClient

    (output,) = MlflowClient(store_uri(folder)).get_run(run_id).outputs.model_outputs
    return f"models:/{output.model_id}"


def _load_elsewhere(folder, code):
    """``code`` in a process of its own where ``import harness`` fails: no PYTHONPATH, another folder, and
    an import hook hiding it (the venv's editable install would find it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", HIDE_HARNESS + code],
        capture_output=True,
        text=True,
        cwd=folder.parent,
        env={**env, "MLFLOW_TRACKING_URI": store_uri(folder)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_train_run_loads_as_a_pyfunc_model_that_predicts_as_harness_predict(trained):
    """As a user does it, in a process of its own where the harness is not installed: the model's
    ``models:/<id>`` URI through MLFLOW_TRACKING_URI; its code travels with it (``harness_model``)."""
    code = f"""
import json, mlflow, pandas as pd, sys
try:
    import harness
    hidden = False
except ImportError:
    hidden = True
model = mlflow.pyfunc.load_model("{_model_uri(trained["folder"], trained["run_id"])}")
columns = model.metadata.get_input_schema().input_names()
print(json.dumps({{"columns": columns, "example": model.metadata.saved_input_example_info is not None,
                  "hidden": hidden, "code": sys.modules["harness_model"].__file__,
                  "name": model.metadata.name if hasattr(model.metadata, "name") else None,
                  "predicted": list(model.predict(pd.DataFrame({ROWS!r}, columns=columns)))}}))
"""
    loaded = _load_elsewhere(trained["folder"], code)
    assert loaded["hidden"]  # the harness could not be imported there
    assert "/code/harness_model/" in loaded["code"]  # the package logged with the model, not the checkout's
    assert loaded["columns"] == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    assert loaded["example"]  # logged with an input example and a signature
    assert all(isinstance(p, int) for p in loaded["predicted"])  # iris's labels are 0, 1, 2
    printed = _predicted_by_harness(trained["folder"], trained["run_id"], trained["rows"])
    assert [str(p) for p in loaded["predicted"]] == printed


def test_digits_predictions_are_ints_as_its_labels_and_the_model_is_named_after_the_run(tmp_path):
    done = harness("train", "--dataset", "digits", "--epochs", "2", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(done.stdout)["run_id"]
    code = f"""
import json, mlflow, numpy as np
from sklearn.datasets import load_digits
model = mlflow.pyfunc.load_model("{_model_uri(tmp_path, run_id)}")
columns = model.metadata.get_input_schema().input_names()
import pandas as pd
predicted = model.predict(pd.DataFrame(load_digits().data[:20], columns=columns))
print(json.dumps({{"types": sorted({{type(p).__name__ for p in predicted}}),
                  "output": model.metadata.get_output_schema().to_dict()}}))
"""
    loaded = _load_elsewhere(tmp_path, code)
    assert loaded["types"] == ["int"]  # as load_digits().target, not "0".."9"
    assert loaded["output"][0]["type"] == "long"
    from mlflow import MlflowClient

    (model,) = MlflowClient(store_uri(tmp_path)).search_logged_models(
        experiment_ids=[MlflowClient(store_uri(tmp_path)).get_run(run_id).info.experiment_id]
    )
    assert model.name == "train-digits"


def test_the_model_is_served_by_mlflow_models_serve(trained):
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store_uri(trained["folder"]),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "models",
            "serve",
            "-m",
            _model_uri(trained["folder"], trained["run_id"]),
            "--env-manager",
            "local",
            "--port",
            str(port),
        ],
        cwd=trained["folder"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        body = json.dumps(
            {
                "dataframe_split": {
                    "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
                    "data": ROWS,
                }
            }
        )
        deadline, answer = time.time() + 120, None
        while time.time() < deadline and answer is None:
            assert server.poll() is None, server.stderr.read()
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=body.encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert answer is not None, "mlflow models serve never answered"
        printed = _predicted_by_harness(trained["folder"], trained["run_id"], trained["rows"])
        assert [str(p) for p in answer["predictions"]] == printed
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.parametrize("models", ["first", "every"])
def test_the_first_confirmation_seed_logs_a_model_or_every_seed_and_search_trials_none(tmp_path, models):
    text = TINY_STUDY.replace("trials = 4", "trials = 2").replace("seeds = 2", f'seeds = 2\nmodels = "{models}"')
    harness("sweep", write_study(tmp_path, text), cwd=tmp_path, check=True)
    client, runs = mlflow_runs(tmp_path)
    with_model = {
        (run.data.tags["harness.kind"], run.data.params.get("seed"))
        for run in runs
        if run.data.tags.get("harness.kind") in ("search", "confirm") and run.outputs and run.outputs.model_outputs
    }
    seeds = {("confirm", "1")} if models == "first" else {("confirm", "1"), ("confirm", "2")}
    assert with_model == seeds  # one model per condition (both have theirs on seed 1), or one per seed
    assert sum(bool(r.outputs and r.outputs.model_outputs) for r in runs) == 2 * len(seeds)
    logged = client.search_logged_models(experiment_ids=[runs[0].info.experiment_id])
    assert sorted({m.name for m in logged}) == ["tiny-cross_entropy", "tiny-mse"]  # not "model"
    # a seed without a model names the run that has its condition's model (was MLflow's "Failed to download")
    confirm = [r for r in runs if r.data.tags.get("harness.kind") == "confirm"]
    holders = {
        r.data.tags["harness.condition"]: r.info.run_id for r in confirm if r.outputs and r.outputs.model_outputs
    }
    for run in confirm:
        pointed = run.data.tags.get("harness.model_run")
        if run.outputs and run.outputs.model_outputs:
            assert pointed is None
        else:
            assert pointed == holders[run.data.tags["harness.condition"]]
            assert f"model is on run {pointed}" in run.data.tags["mlflow.note.content"]
    assert sum("harness.model_run" in r.data.tags for r in confirm) == (2 if models == "first" else 0)


def test_register_gives_each_condition_its_best_seed_as_a_model_even_when_that_seed_logged_none(tmp_path):
    text = TINY_STUDY.replace("trials = 4", "trials = 2").replace("seeds = 2", "seeds = 3")
    harness("sweep", write_study(tmp_path, text), cwd=tmp_path, check=True)
    compared = harness("compare", "tiny", "--register", "--format", "json", cwd=tmp_path, check=True)
    registered = json.loads(compared.stdout)["registered"]
    assert sorted(r["name"] for r in registered) == ["tiny-cross_entropy", "tiny-mse"]
    client, runs = mlflow_runs(tmp_path)
    seeds = {r.info.run_id: r.data.params.get("seed") for r in runs}
    for entry in registered:
        version = client.get_model_version(entry["name"], entry["version"])
        assert version.run_id == entry["run_id"] and version.status == "READY"
        loaded = subprocess.run(
            [sys.executable, "-c", f"import mlflow; print(mlflow.pyfunc.load_model('models:/{entry['name']}/1'))"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": store_uri(tmp_path)},
        )
        assert loaded.returncode == 0, loaded.stderr[-800:]
        assert client.get_model_version_by_alias(entry["name"], "champion").version == version.version
        assert entry["run_id"] in version.description and "test accuracy" in version.description
        assert "champion" in client.get_registered_model(entry["name"]).description  # were none of the three
    assert {seeds[entry["run_id"]] for entry in registered} == {"1"}  # ties go to the lowest seed here, so:
    assert "runs:/" not in compared.stderr  # registered from the logged model's models:/ URI

    again = harness("compare", "tiny", "--register", "--json", cwd=tmp_path, check=True)
    assert json.loads(again.stdout)["registered"] == registered  # the same versions, none added
    for entry in registered:
        assert len(client.search_model_versions(f"name = '{entry['name']}'")) == 1

    # a best seed that logged no model (seed 2 here) gets one when it is registered, as register_best does it
    from harness.analysis.study_comparison import model_to_log
    from harness.records.recorder import InlineRecorder

    (other,) = [r for r in runs if r.data.params.get("seed") == "2" and r.data.tags.get("harness.condition") == "mse"]
    assert not (other.outputs and other.outputs.model_outputs)
    recorder = InlineRecorder(store_uri(tmp_path))
    assert not recorder.call("has_model", other.info.run_id)
    artifacts, example = model_to_log(recorder, other.info.run_id)
    version = recorder.call("register_model", other.info.run_id, "tiny-seed2", artifacts, example)
    assert client.get_model_version("tiny-seed2", version).status == "READY"
    assert client.get_run(other.info.run_id).outputs.model_outputs
