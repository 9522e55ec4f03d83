"""A user's own CSV: paths in a study resolve from the study file's folder, a study beside its CSV sweeps
from any working folder, its runs reproduce and predict from anywhere, and the shipped example runs."""

import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.common.errors import ConfigError
from harness.studies.parse import read_study
from harness.studies.study import resolve
from tests.helpers import ROOT, load_file

STUDY = """
name = "flowers"
[fixed]
csv = "flowers.csv"
label_column = "species"
hidden = [8]
batch_size = 16
[conditions]
loss = ["mse", "cross_entropy"]
[search]
lr = { low = 0.05, high = 1.0, log = true }
epochs = { low = 2, high = 4 }
[budget]
trials = 1
[confirm]
seeds = 1
"""
"""A study kept beside its CSV, which names the file as a user does: by its name alone."""


def flowers(folder, shift=0.0):
    """Iris as a user's CSV: named feature columns and species names as labels."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for row, target in zip(iris.data + shift, iris.target):
        lines.append(",".join(f"{v:g}" for v in row) + f",{iris.target_names[target]}")
    (folder / "flowers.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """``project/`` holds the study and its CSV; the working folder is ``elsewhere/``, beside it."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    flowers(project)
    (project / "study.toml").write_text(textwrap.dedent(STUDY))
    monkeypatch.chdir(elsewhere)
    for name in ("MLFLOW_TRACKING_URI", "HARNESS_OPTUNA_STORAGE", "HARNESS_FAULT"):
        monkeypatch.delenv(name, raising=False)
    return project


def test_a_study_csv_resolves_from_the_study_files_folder_not_the_working_folder(project):
    study = read_study(os.path.relpath(project / "study.toml"))
    config = study.config_for(study.conditions[0], {"lr": 0.1, "epochs": 2}, 0)
    assert config.csv == str(project / "flowers.csv") and config.dataset == "csv"
    assert study.raw["fixed"]["csv"] == "flowers.csv"  # the identity keeps the path as written
    assert resolve(study, epochs=3).identity()["fixed"] == {**study.raw["fixed"], "epochs": 3}


def test_every_path_a_condition_names_resolves_and_an_absolute_one_stays(project):
    (project / "data").mkdir()
    flowers(project / "data", shift=0.1)
    text = STUDY.replace('csv = "flowers.csv"\n', "").replace(
        'loss = ["mse", "cross_entropy"]',
        f'[conditions.data]\nnear = {{ csv = "flowers.csv" }}\nsub = {{ csv = "data/flowers.csv" }}\n'
        f'far = {{ csv = "{project / "data" / "flowers.csv"}", data_seed = 1 }}',
    )
    (project / "study.toml").write_text(textwrap.dedent(text))
    study = read_study(str(project / "study.toml"))
    paths = [study.config_for(c, {"lr": 0.1, "epochs": 2}, 0).csv for c in study.conditions]
    assert paths == [str(project / "flowers.csv"), *[str(project / "data" / "flowers.csv")] * 2]
    assert [c.name for c in study.conditions] == ["near", "sub", "far"]


def test_two_spellings_of_one_file_are_one_condition(project):
    axis = f'csv = ["flowers.csv", "{project / "flowers.csv"}"]'
    text = STUDY.replace('csv = "flowers.csv"\n', "").replace('loss = ["mse", "cross_entropy"]', axis)
    (project / "study.toml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError, match="trains exactly what flowers.csv trains"):
        read_study(str(project / "study.toml"))


@pytest.mark.parametrize(
    "edit,key,missing",
    [
        (('csv = "flowers.csv"', 'csv = "no_such.csv"'), "fixed.csv = 'no_such.csv'", "no_such.csv"),
        (
            ('csv = "flowers.csv"\n', ""),
            "conditions.data.mine.csv = 'sub/x.csv'",
            "sub/x.csv",
        ),
    ],
)
def test_a_missing_file_names_the_study_the_key_the_path_and_the_rule(project, edit, key, missing):
    text = STUDY.replace(*edit)
    if "[conditions.data]" not in text and "no_such" not in text:
        text = text.replace("[search]", '[conditions.data]\nmine = { csv = "sub/x.csv" }\n[search]')
    (project / "study.toml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as error:
        read_study("../project/study.toml")
    line = str(error.value)
    assert line.startswith("../project/study.toml: ") and key in line and "\n" not in line
    assert f"file not found at '{project / missing}'" in line
    assert "a path in a study file resolves from the study file's folder" in line


@pytest.mark.e2e
def test_a_study_beside_its_csv_sweeps_reproduces_and_predicts_from_other_folders(project, capsys):
    """The CSV was read from the working folder: ``sweep ../project/study.toml`` said "file not found"."""
    from harness.cli import main

    assert main(["sweep", "../project/study.toml", "--json"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)["summary"]
    uri = f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"
    run_id = next(row["best_seed_run_id"] for row in summary if row["condition"] == "cross_entropy")
    third = project.parent / "third"
    third.mkdir()
    os.chdir(third)
    assert main(["reproduce", run_id, "--tracking-uri", uri]) == 0, capsys.readouterr().err
    assert "reproduced exactly" in capsys.readouterr().out
    (third / "rows.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n")
    assert main(["predict", run_id, "rows.csv", "--tracking-uri", uri, "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert predicted == {"source": run_id, "run_id": run_id, "predictions": [predicted["predictions"][0]]}
    assert predicted["predictions"][0] in ("setosa", "versicolor", "virginica")  # strings stay strings
    flowers(project, shift=0.1)  # the same path now holds other data: refused, not trained on
    assert main(["reproduce", run_id, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not the data this run was trained on" in err and str(project / "flowers.csv") in err


def shipped_script():
    return load_file(ROOT / "scripts" / "make_my_data.py")


def test_the_shipped_csv_is_what_its_script_makes_with_words_as_labels():
    shipped = ROOT / "studies" / "my_data.csv"
    frame = shipped_script().my_data()
    assert frame.to_csv(index=False) == shipped.read_text()
    assert 300 <= len(frame) <= 1000 and set(frame["diagnosis"]) == {"benign", "malignant"}
    study = read_study(str(ROOT / "studies" / "my_csv.toml"))
    config = study.config_for(study.conditions[0], {"lr": 0.1, "epochs": 2}, 0)
    assert config.csv == str(shipped) and config.label_column == "diagnosis"


def test_every_key_of_the_shipped_csv_study_is_commented():
    lines = (ROOT / "studies" / "my_csv.toml").read_text().splitlines()
    keys = [line for line in lines if re.match(r"^\s*(\[|[A-Za-z_]+\s*=)", line)]
    assert len(keys) >= 15 and [line for line in keys if "#" not in line] == []


@pytest.mark.e2e
def test_the_shipped_csv_study_runs_from_another_folder(project, capsys):
    from harness.cli import main

    flags = ["--trials", "2", "--epochs", "3", "--confirm-seeds", "2", "--json"]
    assert main(["sweep", os.path.relpath(ROOT / "studies" / "my_csv.toml"), *flags]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert [row["condition"] for row in summary] == ["mse", "cross_entropy"]
    assert all(np.isfinite(row["test_accuracy_mean"]) and row["test_accuracy_mean"] > 0.5 for row in summary)


def test_the_docs_complete_csv_example_is_a_valid_study(tmp_path):
    """The toml block of docs/studies.md's "Your own data", saved beside a flowers.csv, parses and reads it."""
    page = (ROOT / "docs" / "studies.md").read_text()
    section = page[page.index("## Your own data") : page.index("## Data regimes")]
    block = re.search(r"```toml\n(.*?)```", section, re.S)[1]
    flowers(tmp_path)
    (tmp_path / "flowers.toml").write_text(block)
    study = read_study(str(tmp_path / "flowers.toml"))
    config = study.config_for(study.conditions[0], {"lr": 0.1, "epochs": 2}, 0)
    assert config.csv == str(tmp_path / "flowers.csv") and config.label_column == "species"
    for key in ("`csv`", "`label_column`", "`val_fraction`", "`test_fraction`", "`data_seed`", "| header", "| missing"):
        assert key in section, key
    assert "Paths resolve from the study file's folder" in section


def test_a_train_config_beside_its_csv_trains_from_another_folder(project, capsys):
    """``train --config ../project/run.toml`` read ``csv = "flowers.csv"`` from the working folder: "file not
    found", where the same key in a study file resolves from the study's folder."""
    from harness.cli import main

    (project / "run.toml").write_text('csv = "flowers.csv"\nlabel_column = "species"\nepochs = 2\nhidden = [4]\n')
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    assert main(["train", "--config", "../project/run.toml", "--tracking-uri", uri, "--json"]) == 0, (
        capsys.readouterr().err
    )
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    from mlflow import MlflowClient

    assert MlflowClient(uri).get_run(run_id).data.params["csv"] == str(project / "flowers.csv")


def test_a_train_config_s_missing_csv_names_the_file_the_path_and_the_rule(project, capsys):
    from harness.cli import main

    (project / "run.toml").write_text('csv = "tulips.csv"\nlabel_column = "species"\n')
    assert main(["train", "--config", "../project/run.toml"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("harness train: error: ../project/run.toml: csv = 'tulips.csv'")
    assert f"file not found at '{project / 'tulips.csv'}'" in line
    assert "a path in a --config file resolves from that file's folder" in line
