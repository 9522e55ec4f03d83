"""A run that travels: one exported file is reproduced and predicts in a folder with no store."""

import json
import zipfile

import pytest

from harness.errors import HarnessError
from harness.logged import ExportedRun, is_export
from tests.helpers import harness


@pytest.mark.e2e
def test_an_exported_run_reproduces_and_predicts_in_a_fresh_folder_with_no_store(tmp_path):
    home, away = tmp_path / "home", tmp_path / "away"
    home.mkdir(), away.mkdir()
    trained = harness("train", "--dataset", "iris", "--epochs", "6", "--json", cwd=home, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    exported = harness("export", run_id, "-o", str(away / "run.zip"), cwd=home, check=True)
    assert "config.json" in exported.stdout and "weights.npz" in exported.stdout
    with zipfile.ZipFile(away / "run.zip") as archive:
        run = json.loads(archive.read("run.json"))
    assert run["tags"]["dataset_digest"] and run["tags"]["version.numpy"] and run["tags"]["git_commit"]

    checked = harness("reproduce", "run.zip", cwd=away)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "reproduced exactly: 16 metrics" in checked.stdout and "not logged" in checked.stdout
    (away / "rows.csv").write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    far = harness("predict", "run.zip", "rows.csv", cwd=away, check=True)
    near = harness("predict", run_id, str(away / "rows.csv"), cwd=home, check=True)
    assert far.stdout == near.stdout and len(far.stdout.split()) == 2
    assert sorted(p.name for p in away.iterdir()) == ["rows.csv", "run.zip"], "a store was created"

    with zipfile.ZipFile(away / "run.zip") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    curves = json.loads(members["curves.json"])
    curves["train_loss"][2][1] *= 1 + 1e-6
    with zipfile.ZipFile(away / "edited.zip", "w") as archive:
        for name, content in {**members, "curves.json": json.dumps(curves)}.items():
            archive.writestr(name, content)
    edited = harness("reproduce", "edited.zip", cwd=away)
    assert edited.returncode == 1 and "train_loss" in edited.stdout.splitlines()[-1]


@pytest.mark.e2e
def test_export_errors_are_one_line_and_write_nothing(tmp_path):
    trained = harness("train", "--dataset", "iris", "--epochs", "1", "--json", cwd=tmp_path, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    unknown = harness("export", "0" * 32, "-o", "x.zip", cwd=tmp_path)
    assert unknown.returncode == 2 and "not found" in unknown.stderr and not (tmp_path / "x.zip").exists()
    nowhere = harness("export", run_id, "-o", "no/such/folder/x.zip", cwd=tmp_path)
    assert nowhere.returncode == 2 and "folder no/such/folder does not exist" in nowhere.stderr
    assert nowhere.stderr.count("\n") == 1
    missing = harness("reproduce", "elsewhere/run.zip", cwd=tmp_path)
    assert missing.returncode == 2 and "no such export file" in missing.stderr


def test_a_file_that_is_not_an_export_is_named(tmp_path):
    (tmp_path / "junk.zip").write_text("junk")
    with pytest.raises(HarnessError, match="junk.zip: not a run exported"):
        ExportedRun(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("run.json", json.dumps({"format": "something else"}))
        archive.writestr("curves.json", "{}")
    with pytest.raises(HarnessError, match="other.zip: not a run exported.*format 'something else'"):
        ExportedRun(tmp_path / "other.zip")
    assert is_export(str(tmp_path / "other.zip")) and not is_export("0123abcd" * 4)
