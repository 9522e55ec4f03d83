"""A user's own loss and optimizer (examples/my_methods.py): checked before anything is created, trained
by `harness train` and a sweep, recorded with their source, reproduced, exported and predicted with."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.common.errors import ConfigError
from harness.engine import methods
from harness.engine.config import check_methods, make_config
from tests.helpers import ROOT, harness, mlflow_runs, store_uri, write_study

EXAMPLE = ROOT / "examples" / "my_methods.py"
CUSTOM = ["--optimizer", "my_methods:Lion", "--loss", "my_methods:LabelSmoothedCrossEntropy"]
SMALL = ["--dataset", "iris", "--hidden", "8", "--epochs", "3", "--lr", "0.01", "--beta2", "0.99"]

BROKEN = """
import numpy as np
from harness.engine.optimizers import Optimizer


class WrongGradient:
    def value_and_grad(self, z, y, out):
        out[...] = (z - y) / z.shape[1]  # half the true gradient
        return ((z - y) ** 2).sum(axis=(1, 2)) / z.shape[1]


class WrongShape(Optimizer):
    def update(self, params, grad, lr):
        params -= lr * grad[:1]


class WrongState(Optimizer):
    def __init__(self, shape, dtype, **kw):
        super().__init__(shape, dtype, **kw)
        self.m = np.zeros(shape[1:])  # one model's state, not the stack's

    def update(self, params, grad, lr):
        self.m = self.m * 0.9 + grad
        params -= lr * self.m


class MakesNaN(Optimizer):
    def update(self, params, grad, lr):
        params *= np.nan


class BadSetting(Optimizer):
    settings = ("weight_decay", "temperature")

    def update(self, params, grad, lr):
        params -= lr * grad
"""


@pytest.fixture
def project(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "my_methods.py")
    (tmp_path / "broken_methods.py").write_text(BROKEN)
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "broken_methods:WrongGradient"], "differs from finite differences"),
        (["--optimizer", "broken_methods:WrongShape"], "mixes the models' rows"),
        (["--optimizer", "broken_methods:WrongState"], "step raised ValueError"),
        (["--optimizer", "broken_methods:MakesNaN"], "non-finite"),
        (["--optimizer", "broken_methods:BadSetting"], "setting 'temperature' is not a harness setting"),
        (["--optimizer", "nowhere_methods:Lion"], "cannot import module 'nowhere_methods' (ModuleNotFoundError"),
        (["--optimizer", "my_methods:Lyon"], "has no 'Lyon'"),
        (["--optimizer", "my methods"], "name your own as 'module:Class'"),
    ],
)
def test_a_broken_method_is_one_line_exit_2_and_nothing_created(project, flags, message):
    done = harness("train", "--dataset", "iris", "--epochs", "1", *flags, cwd=project)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert ":" not in flags[1] or flags[1] in done.stderr  # names the module and the class
    assert not (project / "mlruns").exists()


def test_the_checks_accept_the_worked_examples(project, monkeypatch):
    monkeypatch.syspath_prepend(str(project))
    check_methods(make_config({"optimizer": "my_methods:Lion", "loss": "my_methods:LabelSmoothedCrossEntropy"}))
    with pytest.raises(ConfigError, match="broken_methods:MakesNaN"):
        check_methods(make_config({"optimizer": "broken_methods:MakesNaN"}))


def test_registered_optimizer_trains_under_its_name(project, monkeypatch, split):
    from harness.engine.training import train_model

    monkeypatch.syspath_prepend(str(project))
    import my_methods  # noqa: PLC0415 - the user's module, from the project folder

    import harness as package

    package.register_optimizer("lion", my_methods.Lion)
    result = train_model(make_config({"optimizer": "lion", "hidden": [8], "epochs": 3, "lr": 0.01}), split)
    assert result.status == "complete" and np.isfinite(result.history["train_loss"]).all()


def _train_json(project, *flags):
    done = harness("train", *CUSTOM, *SMALL, *flags, "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_train_records_the_source_and_reproduces_export_and_predict(project, tmp_path_factory):
    run_id = _train_json(project)
    client, runs = mlflow_runs(project, "train")
    run = client.get_run(run_id)
    source = (project / "my_methods.py").read_bytes()
    import hashlib

    assert run.data.tags["harness.method.my_methods"] == hashlib.sha256(source).hexdigest()
    assert run.data.params["optimizer"] == "my_methods:Lion" and run.data.params["beta2"] == "0.99"
    logged = Path(client.download_artifacts(run_id, "methods/my_methods.py", str(tmp_path_factory.mktemp("a"))))
    assert logged.read_bytes() == source

    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the module is not importable there
    uri = ["--tracking-uri", store_uri(project)]
    done = harness("reproduce", run_id, "--here", *uri, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "is not found here: training with the run's logged source" in done.stderr
    assert "reproduced exactly" in done.stdout

    assert harness("export", run_id, "-o", str(elsewhere / "run.zip"), *uri, cwd=project).returncode == 0
    refused = harness("reproduce", "run.zip", cwd=elsewhere)
    assert refused.returncode == 2 and "runs only with --rebuild-code" in refused.stderr
    same_here = harness("reproduce", str(elsewhere / "run.zip"), cwd=project)  # the export's code all the same
    assert same_here.returncode == 2 and "runs only with --rebuild-code" in same_here.stderr
    again = harness("reproduce", "run.zip", "--rebuild-code", cwd=elsewhere)
    assert again.returncode == 0 and "reproduced exactly" in again.stdout, again.stderr

    rows = elsewhere / "rows.csv"
    rows.write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    )
    predicted = harness("predict", "run.zip", str(rows), cwd=elsewhere)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.split()) == 2
    code = f"""
import mlflow, pandas as pd
model_id = mlflow.MlflowClient().get_run("{run_id}").outputs.model_outputs[0].model_id
model = mlflow.pyfunc.load_model(f"models:/{{model_id}}")
rows = pd.read_csv("rows.csv").set_axis(model.metadata.get_input_schema().input_names(), axis=1)
print(" ".join(map(str, model.predict(rows))))
"""
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env={**os.environ, "MLFLOW_TRACKING_URI": store_uri(project), "PYTHONPATH": str(ROOT)},
    )
    assert loaded.returncode == 0, loaded.stderr[-1500:]
    assert loaded.stdout.split() == predicted.stdout.split()  # the MLflow model loads without the module


def test_a_changed_module_after_training_reproduces_with_the_logged_source(project):
    run_id = _train_json(project)
    (project / "my_methods.py").write_text(EXAMPLE.read_text().replace("np.sign(c)", "np.tanh(c)"))
    done = harness("reproduce", run_id, "--here", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "'my_methods' differs here" in done.stderr and "reproduced exactly" in done.stdout


CUSTOM_STUDY = """
name = "custom"
[fixed]
dataset = "iris"
hidden = [8]
epochs = 3
[conditions.method]
lion = { optimizer = "my_methods:Lion", beta2 = 0.99 }
smoothed = { optimizer = "adam", loss = "my_methods:LabelSmoothedCrossEntropy" }
[search]
lr = { low = 0.001, high = 0.05, log = true }
beta1 = { low = 0.8, high = 0.95 }
[budget]
trials = 2
[confirm]
seeds = 2
"""


def test_a_sweep_trains_custom_methods_and_refuses_a_changed_module(project, tmp_path_factory):
    study = write_study(project, CUSTOM_STUDY, "custom.toml")
    here = tmp_path_factory.mktemp("cwd")  # the module is found in the study's folder, not the working one
    flags = ["--tracking-uri", store_uri(project), "--storage", f"journal:{project / 'custom.journal'}"]
    done = harness("sweep", study, "--workers", "2", *flags, cwd=here)
    assert done.returncode == 0, done.stderr
    client, runs = mlflow_runs(project, "custom")
    trained = [r for r in runs if r.data.tags.get("harness.kind") in ("search", "confirm")]
    assert len(trained) == 8
    lion = [r for r in trained if r.data.params.get("optimizer") == "my_methods:Lion"]
    assert len(lion) == 4 and all("harness.method.my_methods" in r.data.tags for r in lion)
    assert {r.data.params.get("beta1") is not None for r in lion} == {True}

    (project / "my_methods.py").write_text(EXAMPLE.read_text() + "\n# edited\n")
    again = harness("sweep", study, *flags, cwd=here)
    assert again.returncode == 2
    assert "module 'my_methods' differs from the one study 'custom' began with" in again.stderr


def test_a_worker_refuses_a_module_other_than_the_plans(project, monkeypatch):
    monkeypatch.syspath_prepend(str(project))
    digest = methods.module_source(str(project / "my_methods.py"))[1]
    assert methods.changed_module({"my_methods": digest}) is None
    said = methods.changed_module({"my_methods": "0" * 64})
    assert said is not None and "differs from the study's" in said
    assert "cannot be imported" in (methods.changed_module({"gone_methods": digest}) or "")


def test_an_exception_inside_a_trial_is_a_failed_trial_with_its_message(project):
    (project / "flaky_methods.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from harness.engine.optimizers import SGD


            class Flaky(SGD):
                def update(self, params, grad, lr):
                    if np.max(lr) > 0.02:
                        raise RuntimeError("lr too large for Flaky")
                    super().update(params, grad, lr)
            """
        )
    )
    study = CUSTOM_STUDY.replace("my_methods:Lion", "flaky_methods:Flaky").replace("low = 0.001", "low = 0.03")
    done = harness("sweep", write_study(project, study, "flaky.toml"), cwd=project)
    assert done.returncode == 1  # a failure while running, not bad input
    assert "lr too large for Flaky" in done.stderr
    client, runs = mlflow_runs(project, "custom")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed and all("Flaky" in r.data.tags.get("harness.error", "Flaky") for r in failed)


def test_mnist1d_is_generated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    from harness.engine import data

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    state = np.random.get_state()[1].copy()
    first = data.load_split(make_config({"dataset": "mnist1d"}))
    assert (first.x_train.shape[1], first.n_classes) == (40, 10)
    assert len(first.y_train) + len(first.y_val) + len(first.y_test) == data.MNIST1D_ROWS
    assert (np.random.get_state()[1] == state).all()  # the package's global seeding is undone
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1

    def generate(settings):
        raise AssertionError("generated again")

    monkeypatch.setattr(data, "_make_mnist1d", generate)
    assert data.load_split(make_config({"dataset": "mnist1d"})).digest == first.digest


def test_a_changed_mnist1d_cache_file_is_not_used(tmp_path, monkeypatch):
    """Whoever can write the cache could hand every run other data: the file must hold the shipped set."""
    from harness.engine import data

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    first = data.load_split(make_config({"dataset": "mnist1d"}))
    (cached,) = tmp_path.glob("mnist1d-*.npz")
    with np.load(cached) as saved:
        x, y = saved["x"], saved["y"]
    np.savez(cached, x=x, y=np.roll(y, 1))  # every label moved one row on
    again = data.load_split(make_config({"dataset": "mnist1d"}))
    assert again.digest == first.digest
    with np.load(cached) as saved:
        assert (saved["y"] == y).all()  # generated again and the cache replaced


def test_the_docs_show_the_example_module_as_it_ships():
    page = (ROOT / "docs" / "benchmark.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```" in page


def test_a_logged_module_is_found_in_the_working_folder_without_being_imported(tmp_path, monkeypatch):
    """reproduce compares a logged module with the file here by digest before importing anything: the
    working folder is searched (as the docs say), and finding the file runs none of its code."""
    marker = tmp_path / "marker"
    (tmp_path / "side_effects.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (tmp_path / "pkg" / "inner.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert methods.module_file("side_effects") == str(tmp_path / "side_effects.py")
    assert methods.module_file("pkg.inner") == str(tmp_path / "pkg" / "inner.py")  # its package not imported
    assert methods.module_file("no_such_module_here") is None
    assert not marker.exists() and "side_effects" not in sys.modules and "pkg" not in sys.modules
