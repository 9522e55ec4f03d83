import numpy as np
import pytest

from harness.engine.config import make_config
from harness.engine.data import Split

TINY_STUDY = """
name = "tiny"
[fixed]
dataset = "iris"
hidden = [8]
batch_size = 16
[conditions]
loss = ["mse", "cross_entropy"]
[search]
lr = { low = 0.01, high = 2.0, log = true }
epochs = { low = 3, high = 8 }
[budget]
trials = 4
[pruner]
name = "median"
startup_trials = 1
warmup_epochs = 1
[confirm]
seeds = 2
"""
"""Two conditions on iris, 4 trials each: the study the end-to-end tests vary."""


def tiny_split(n=60, features=5, classes=3, seed=0, dtype="float64"):
    """A small separable problem that needs no scikit-learn import."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(classes, features))
    y = np.arange(n) % classes
    x = (centers[y] + rng.normal(0, 1, size=(n, features))).astype(dtype)
    third = n // 3
    parts = [x[:third], y[:third], x[third : 2 * third], y[third : 2 * third], x[2 * third :], y[2 * third :]]
    return Split(*[np.ascontiguousarray(p) for p in parts], classes=[str(c) for c in range(classes)], digest="tiny")


@pytest.fixture
def split():
    return tiny_split()


@pytest.fixture
def config():
    def make(**values):
        base = {"hidden": [8], "epochs": 5, "batch_size": 4, "lr": 0.1}
        base.update(values)
        return make_config(base)

    return make


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh project folder as the working directory: the default store goes to ./mlruns there."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "HARNESS_OPTUNA_STORAGE", "HARNESS_FAULT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A real export of a short iris run (SGD with momentum): what the hostile-export tests forge from."""
    import json

    from tests.helpers import harness

    home = tmp_path_factory.mktemp("home")
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "--json", cwd=home, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    harness("export", run_id, "-o", str(home / "run.zip"), cwd=home, check=True)
    return home / "run.zip"
