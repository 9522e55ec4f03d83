"""What a run writes down to be rebuilt: the uncommitted change to tracked files, never untracked ones."""

import subprocess

from harness.engine.config import make_config
from harness.engine.training import train_model
from harness.records import provenance, runs
from tests.conftest import tiny_split


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_the_diff_holds_tracked_changes_and_no_untracked_file(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    assert provenance.read_diff(tmp_path) is None  # clean
    (tmp_path / "train.py").write_text("lr = 0.2\n")
    (tmp_path / "secrets.env").write_text("TOKEN=hunter2\n")
    diff = provenance.read_diff(tmp_path)
    assert b"-lr = 0.1" in diff and b"+lr = 0.2" in diff and b"hunter2" not in diff


def test_a_dirty_tree_logs_its_diff_beside_the_config(monkeypatch):
    split = tiny_split()
    config = make_config({"dataset": "iris", "epochs": 2, "hidden": [4]})
    result = train_model(config, split)
    monkeypatch.setattr(runs, "code_diff", lambda: b"diff --git a/x b/x\n")
    assert runs.run_artifacts(config, split, result, plots=False)[provenance.DIFF_ARTIFACT] == b"diff --git a/x b/x\n"
    monkeypatch.setattr(runs, "code_diff", lambda: b"x" * (provenance.MAX_DIFF_BYTES + 1))
    assert provenance.DIFF_ARTIFACT not in runs.run_artifacts(config, split, result, plots=False)
    assert provenance.diff_tag(b"x" * (provenance.MAX_DIFF_BYTES + 1))["harness.git_diff"].startswith("too large")
    monkeypatch.setattr(runs, "code_diff", lambda: None)
    assert provenance.DIFF_ARTIFACT not in runs.run_artifacts(config, split, result, plots=False)
