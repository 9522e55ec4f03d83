"""End to end: ``harness train`` against a temporary tracking store."""

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _runs(uri, experiment="train"):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id]))


def test_train_records_one_complete_run(store, capsys):
    uri = f"sqlite:///{store / 'elsewhere.db'}"
    code = main(
        [
            "train",
            "--dataset",
            "iris",
            "--loss",
            "mse",
            "--optimizer",
            "sgd",
            "--lr",
            "0.5",
            "--momentum",
            "0.9",
            "--nesterov",
            "--batch-size",
            "16",
            "--epochs",
            "7",
            "--hidden",
            "16",
            "--seed",
            "3",
            "--tracking-uri",
            uri,
            "--experiment",
            "cli-test",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["metrics"]["epochs_run"] == 7

    client, runs = _runs(uri, "cli-test")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == summary["run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == "mse-sgd-m0.9-nesterov-lr0.5-b16"
    assert run.data.params["loss"] == "mse" and run.data.params["nesterov"] == "True"
    assert run.data.params["lr"] == "0.5" and run.data.params["hidden"] == "16"
    tags = run.data.tags
    assert tags["harness.state"] == "complete" and run.data.params["seed"] == "3" and tags["harness.kind"] == "train"
    assert len(tags["harness.dataset_digest"]) == 64 and tags["harness.blas_threads"] == "1"  # execution: a tag
    assert "blas_threads" not in run.data.params
    assert {"mlflow.source.git.commit", "harness.git_dirty", "harness.version.numpy", "harness.blas"} <= set(tags)
    assert all(key.startswith(("mlflow.", "harness.")) for key in tags), sorted(tags)  # one prefix for ours
    assert not set(tags) & set(run.data.params), "a setting is a param, not a tag too"
    assert "git_commit" not in tags and "epochs_run" not in run.data.params  # once each: the commit, epochs_run
    for key in ("train_loss", "val_accuracy", "val_cross_entropy", "val_mse", "grad_norm", "val_saturated_share"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, 8)), key
    assert summary["metrics"]["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])

    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    diff = {"git_diff.patch"} if tags["harness.git_dirty"] == "true" else set()  # a developer's uncommitted change
    assert names == {"config.json", "curves.png", "confusion_matrix.png", "weights.npz", "probabilities.npz", *diff}
    assert {"test_ece", "test_ts_ece", "temperature", "val_brier"} <= set(run.data.metrics)
    folder = client.download_artifacts(run.info.run_id, "")
    config = json.loads(open(f"{folder}/config.json").read())
    assert config["loss"] == "mse" and config["epochs"] == 7 and config["nesterov"] is True
    weights = np.load(f"{folder}/weights.npz", allow_pickle=False)
    assert weights["weight_0"].shape == (4, 16) and list(weights["classes"]) == ["0", "1", "2"]
    assert open(f"{folder}/curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_default_store_is_under_mlruns(store, capsys):
    assert main(["train", "--dataset", "iris", "--epochs", "2", "--hidden", "4"]) == 0
    assert (store / "mlruns" / "mlflow.db").exists()
    _, runs = _runs(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    assert len(runs) == 1
    assert (store / "mlruns" / "artifacts" / runs[0].info.run_id / "artifacts" / "config.json").exists()


def test_env_tracking_uri_is_honoured(store, monkeypatch, capsys):
    uri = f"sqlite:///{store / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["train", "--dataset", "iris", "--epochs", "2", "--hidden", "4"]) == 0
    assert len(_runs(uri)[1]) == 1 and not (store / "mlruns").exists()


def test_diverged_run_is_recorded_as_such(store, capsys):
    uri = f"sqlite:///{store / 'd.db'}"
    code = main(
        [
            "train",
            "--dataset",
            "iris",
            "--loss",
            "mse_logits",
            "--lr",
            "1e6",
            "--epochs",
            "20",
            "--tracking-uri",
            uri,
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["status"] == "diverged"
    run = _runs(uri)[1][0]
    assert run.data.tags["harness.state"] == "diverged" and run.info.status == "FINISHED"
    assert run.data.metrics["diverged_epoch"] == summary["metrics"]["diverged_epoch"] >= 1


def test_toml_config_and_flag_override(store, capsys):
    (store / "run.toml").write_text('dataset = "iris"\nloss = "mse_logits"\nlr = 0.01\nepochs = 3\nhidden = [8, 8]\n')
    uri = f"sqlite:///{store / 't.db'}"
    assert main(["train", "--config", "run.toml", "--epochs", "2", "--tracking-uri", uri]) == 0
    run = _runs(uri)[1][0]
    assert run.data.params["loss"] == "mse_logits" and run.data.params["epochs"] == "2"
    assert run.data.params["hidden"] == "8,8"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--loss", "hinge"], "loss = 'hinge' is not allowed; choose one of"),
        (["--optimizer", "lbfgs"], "optimizer = 'lbfgs'"),
        (["--dataset", "mnist"], "dataset = 'mnist'"),
        (["--activation", "gelu"], "activation = 'gelu'"),
        (["--lr", "-0.1"], "lr = -0.1 is not allowed; must be a number > 0"),
        (["--lr", "0"], "lr = 0.0"),
        (["--epochs", "0"], "epochs = 0"),
        (["--momentum", "1"], "momentum = 1.0"),
        (["--csv", "no-such.csv"], "file not found"),
        (["--config", "missing.toml"], "missing.toml: file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_creates_no_run(store, capsys, argv, message):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (store / "mlruns").exists()


def test_bad_csv_and_bad_toml_key(store, capsys):
    (store / "d.csv").write_text("a,b\n1,2\n")
    assert main(["train", "--csv", "d.csv"]) == 2
    assert "label_column = 'label' is not a column" in capsys.readouterr().err
    (store / "x.toml").write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", "x.toml"]) == 2
    assert "x.toml: learning_rate = 0.1 is not allowed; known keys" in capsys.readouterr().err
    (store / "y.toml").write_text("lr = [\n")
    assert main(["train", "--config", "y.toml"]) == 2
    assert "y.toml: not valid TOML" in capsys.readouterr().err
    assert not (store / "mlruns").exists()


def test_flag_type_errors_exit_2(store, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--lr", "fast"])
    assert exc.value.code == 2 and "--lr: invalid float value: 'fast'" in capsys.readouterr().err


def test_console_entry_point_and_help_stays_light(store):
    code = (
        "import sys\nfrom harness.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    pass\nprint([m for m in ('mlflow', 'optuna', 'sklearn', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr
    run = subprocess.run(
        [sys.executable, "-m", "harness", "train", "--dataset", "iris", "--epochs", "2", "--hidden", "4", "--json"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["status"] == "complete"


def test_every_single_run_file_in_studies_parses():
    from pathlib import Path

    from harness.engine.config import make_config
    from harness.studies.parse import read_toml as load_toml

    files = sorted((Path(__file__).parent.parent / "studies").glob("single_run*.toml"))
    assert files
    for path in files:
        make_config(load_toml(path), source=str(path))
