"""Reproducing a run after the code moved on: its commit plus its logged diff is rebuilt and trains."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest

from harness.reproduce.rebuild import code_differs
from tests.helpers import ROOT, Watched, harness, mlflow_runs, process_gone, start_harness, wait_until

INIT = 'factor = 2.0 if activation == "sigmoid" else 6.0'


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def change_initialisation(code, factor):
    """A change that alters every curve: the Glorot bound of non-sigmoid layers."""
    network = code / "harness" / "engine" / "network.py"
    text = network.read_text()
    assert text.count(INIT) == 1, "the line this test edits has moved"
    network.write_text(text.replace(INIT, INIT.replace("6.0", factor)))


@pytest.fixture
def checkout(tmp_path):
    """A git repository of this harness's code, committed, as a user's clone."""
    code = tmp_path / "code"
    shutil.copytree(ROOT / "harness", code / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", code)
    git(tmp_path, "init", "--quiet", str(code))
    git(code, "add", "-A")
    git(code, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "base")
    return code


@pytest.mark.e2e
def test_a_dirty_run_is_reproduced_bit_for_bit_after_a_commit_changed_training(tmp_path, checkout):
    work, env = tmp_path / "work", {"PYTHONPATH": str(checkout)}
    work.mkdir()
    change_initialisation(checkout, "5.0")  # uncommitted: the run logs it as its git_diff.patch
    trained = harness("train", "--dataset", "iris", "--epochs", "4", "--json", cwd=work, env=env, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    git(checkout, "checkout", "--quiet", "--", ".")
    change_initialisation(checkout, "4.0")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "another init")

    here = harness("reproduce", run_id, "--here", cwd=work, env=env)
    assert here.returncode == 1 and "NOT reproduced" in here.stdout, here.stdout + here.stderr
    assert "git apply" in here.stderr  # --here still says how the run's code could be rebuilt

    rebuilt = harness("reproduce", run_id, cwd=work, env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "reproduced exactly" in rebuilt.stdout
    assert "trained with the logged code: commit" in rebuilt.stdout and "git_diff.patch" in rebuilt.stdout
    assert "rebuilt that code in a temporary git worktree" in rebuilt.stderr
    assert git(checkout, "worktree", "list").count("\n") == 1, "the temporary worktree was left behind"

    client, runs = mlflow_runs(work, "train")
    (original,) = [r for r in runs if r.info.run_id == run_id]
    again = [r for r in runs if r.data.tags.get("harness.reproduces") == run_id]
    rebuilt_run = next(r for r in again if r.data.tags.get("harness.git_diff"))
    assert rebuilt_run.data.tags["harness.git_diff"] == original.data.tags["harness.git_diff"]
    commit = "mlflow.source.git.commit"  # the rebuilt code's commit, not this checkout's
    assert rebuilt_run.data.tags[commit] == original.data.tags[commit]
    patch = client.download_artifacts(rebuilt_run.info.run_id, "git_diff.patch", str(tmp_path))
    assert b"else 5.0" in open(patch, "rb").read()

    marker = tmp_path / "marker"
    (stored,) = [p for p in (work / "mlruns").rglob("git_diff.patch") if run_id in str(p)]
    stored.write_bytes(hostile_patch(checkout, marker))  # applies on the run's commit too
    planted = harness("reproduce", run_id, cwd=work, env=env)
    assert planted.returncode == 2 and planted.stderr.count("\n") == 1, planted.stdout + planted.stderr
    assert "is not the patch the run logged (git_diff" in planted.stderr and not marker.exists()


@pytest.mark.e2e
def test_a_commit_that_is_not_in_the_checkout_says_so_and_how_to_go_on(tmp_path, checkout):
    work, env = tmp_path / "work", {"PYTHONPATH": str(checkout)}
    work.mkdir()
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "--json", cwd=work, env=env, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    shutil.rmtree(checkout / ".git")
    git(tmp_path, "init", "--quiet", str(checkout))
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "history rewritten")
    lost = harness("reproduce", run_id, cwd=work, env=env)
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1, lost.stderr
    assert "is not in" in lost.stderr and "--here" in lost.stderr


def test_the_same_code_needs_no_rebuild_and_other_code_is_named(monkeypatch):
    from harness.reproduce import rebuild

    monkeypatch.setattr(rebuild, "git_state", lambda: ("a" * 40, "false"))
    monkeypatch.setattr(rebuild, "code_diff", lambda: None)
    assert code_differs({"harness.git_commit": "a" * 40}) is None
    assert code_differs({"harness.git_commit": "unknown"}) is None
    assert "made at commit bbbbbbbbbbbb" in code_differs({"harness.git_commit": "b" * 40})
    assert "uncommitted changes (git_diff 0123" in code_differs(
        {"harness.git_commit": "a" * 40, "harness.git_diff": "0123"}
    )
    monkeypatch.setattr(rebuild, "code_diff", lambda: b"diff --git a/x b/x")
    assert "this checkout has uncommitted changes" in code_differs({"harness.git_commit": "a" * 40})


def hostile_patch(code, marker):
    """A patch that makes training write ``marker``: what a crafted export could carry."""
    training = code / "harness" / "engine" / "training.py"
    original = training.read_text()
    training.write_text(original + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    patch = subprocess.run(["git", "-C", str(code), "diff", "HEAD", "--binary"], capture_output=True, check=True).stdout
    training.write_text(original)
    return patch


def planted_export(exported, path, patch, digest):
    """``exported`` with ``patch`` added and run.json's git_diff tag set to ``digest``: the sender
    controls every byte, its digests included."""
    with zipfile.ZipFile(exported) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    run = json.loads(members["run.json"])
    run["tags"].update(git_diff=digest, git_dirty="true")
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in {**members, "run.json": json.dumps(run), "git_diff.patch": patch}.items():
            archive.writestr(name, content)
    return path


@pytest.mark.e2e
def test_an_exports_patch_runs_only_when_the_user_asks_for_it(tmp_path, checkout):
    work, env, marker = tmp_path / "work", {"PYTHONPATH": str(checkout)}, tmp_path / "marker"
    work.mkdir()
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "--json", cwd=work, env=env, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    harness("export", run_id, "-o", "run.zip", cwd=work, env=env, check=True)
    patch = hostile_patch(checkout, marker)
    digest = hashlib.sha256(patch).hexdigest()[:16]
    forged = planted_export(work / "run.zip", work / "forged.zip", patch, digest)

    default = harness("reproduce", "forged.zip", cwd=work, env=env)
    assert default.returncode == 0, default.stdout + default.stderr
    assert not marker.exists(), "reproduce ran the export's patch without being asked"
    assert "not rebuilt unless you pass --rebuild-code; retraining with this checkout's code" in default.stderr
    assert "reproduced exactly" in default.stdout

    damaged = planted_export(work / "run.zip", work / "damaged.zip", patch, "0123456789abcdef")
    for flags in ((), ("--rebuild-code",)):
        refused = harness("reproduce", str(damaged), *flags, cwd=work, env=env)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"git_diff.patch (sha256 {digest}) is not the patch the run logged" in refused.stderr
        assert not marker.exists()

    asked = harness("reproduce", str(forged), "--rebuild-code", cwd=work, env=env)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert marker.exists(), "--rebuild-code did not rebuild the export's code"
    first = asked.stderr.splitlines()[0]
    commit = git(checkout, "rev-parse", "HEAD").strip()
    assert commit[:12] in first and digest in first and "harness/engine/training.py (+2 -0)" in first, first
    assert git(checkout, "worktree", "list").count("\n") == 1, "the temporary worktree was left behind"


@pytest.mark.e2e
def test_an_exports_patch_that_does_not_apply_is_one_line_quoting_git(tmp_path, checkout):
    """It said ``(['error: patch failed: Makefile:1'])``: a Python list, and a name from the patch unquoted."""
    work, env = tmp_path / "work", {"PYTHONPATH": str(checkout)}
    work.mkdir()
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "--json", cwd=work, env=env, check=True)
    harness("export", json.loads(trained.stdout)["run_id"], "-o", "run.zip", cwd=work, env=env, check=True)
    name = b"Make\x1b[2Jfile"  # a name with a terminal escape, of a file the commit does not have
    patch = b"diff --git a/%s b/%s\n--- a/%s\n+++ b/%s\n@@ -1 +1 @@\n-a\n+b\n" % (name, name, name, name)
    forged = planted_export(work / "run.zip", work / "forged.zip", patch, hashlib.sha256(patch).hexdigest()[:16])
    refused = harness("reproduce", str(forged), "--rebuild-code", cwd=work, env=env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "its git_diff.patch does not apply on" in refused.stderr and "(git: '" in refused.stderr, refused.stderr
    assert "['" not in refused.stderr and "\x1b" not in refused.stderr


def _rebuilt_child(command, scratch):
    """The pid of the child in which the rebuilt code trains, once ``command`` started it: a process of
    ``command``'s running the driver of a harness-rebuild-io-* folder in ``scratch`` (its $TMPDIR) that
    holds the request; None before."""
    drivers = {
        str(f / "driver.py").encode() for f in scratch.glob("harness-rebuild-io-*") if (f / "request.json").exists()
    }
    for entry in Path("/proc").iterdir():
        if not drivers or not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if parent == command.pid and drivers & set(argv):
            return int(entry.name)
    return None


@pytest.mark.e2e
def test_sigterm_while_the_rebuilt_code_trains_removes_the_worktree_and_its_folders(tmp_path, checkout):
    """The SIGTERM comes once the command waits on the child in which the rebuilt code trains (seen
    running the driver, its request written), never after a sleep. The child has 40 epochs of 0.25 s
    (``epoch-delay``) ahead of it, so it cannot finish first; whether it is still importing or already in
    its epochs when the signal lands, the command is in the same place (waiting on it), and must end it,
    remove its worktree and folders and mark the run interrupted."""
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir(), scratch.mkdir()
    env = {"PYTHONPATH": str(checkout), "TMPDIR": str(scratch)}
    trained = harness("train", "--dataset", "iris", "--epochs", "40", "--json", cwd=work, env=env, check=True)
    run_id = json.loads(trained.stdout.splitlines()[0])["run_id"]
    change_initialisation(checkout, "4.0")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "another init")

    process = start_harness("reproduce", run_id, cwd=work, env={**env, "HARNESS_FAULT": "epoch-delay=0.25"})
    command = Watched(process)
    try:
        child = wait_until(lambda: _rebuilt_child(process, scratch), "the rebuilt code's child started", process)
        assert git(checkout, "worktree", "list").count("\n") == 2, "no temporary worktree while its code runs"
        assert process.poll() is None, "the reproduction ended before it was signalled"
        process.send_signal(signal.SIGTERM)  # to harness alone, as a process manager does
        _, stderr = command.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process_gone(child), "the rebuilt code's child outlived the command"
    assert process.returncode == 143, stderr
    assert stderr.splitlines()[-1] == "harness reproduce: terminated" and "Traceback" not in stderr, stderr
    assert stderr.count("terminated") == 1
    assert git(checkout, "worktree", "list").count("\n") == 1, "the temporary worktree was left registered"
    assert not list(scratch.glob("harness-rebuild-*")), "temporary folders were left behind"
    _, runs = mlflow_runs(work, "train")
    (again,) = [r for r in runs if r.data.tags.get("harness.reproduces") == run_id]
    assert again.info.status == "KILLED" and again.data.tags["harness.state"] == "interrupted"


def test_the_consent_line_names_every_path_the_patch_changed_and_no_name_forges_one(tmp_path):
    """Read inside harness/, git saw a patch adding a top-level sitecustomize.py (run at interpreter start)
    as changing "no files"; read from git's --summary text, a file name holding a newline hid a rename's
    source or invented a deletion. The summary is read back from the patched worktree's index. A file that
    runs although the harness never imports it (Python's start-up modules, one named as an installed
    module, in the folder the rebuilt code is imported from) was listed as any other: it says so now."""
    from harness.reproduce.rebuild import changes_summary

    repo = tmp_path / "repo"
    (repo / "harness").mkdir(parents=True)
    (repo / "harness" / "a.py").write_text("a = 1\n")
    (repo / "keep.py").write_text("k = 1\n")
    (repo / "old_name.py").write_text("x = 1\n" * 5)
    (repo / "README.md").write_text("read me\n" * 5)
    git(tmp_path, "init", "--quiet", str(repo))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "base")
    (repo / "sitecustomize.py").write_text("import os\nos.system('echo owned')\n")
    git(repo, "mv", "old_name.py", "new_name.py")
    git(repo, "mv", "README.md", "x\ny")
    (repo / "harness" / "a.py").write_text("a = 2\n")
    (repo / "harness" / "a.py").chmod(0o755)
    (repo / "a\n delete mode 100644 keep.py").write_text("forged\n")
    (repo / "usercustomize.py").symlink_to("/tmp/elsewhere.py")
    (repo / "numpy.py").write_text("print('not numpy')\n")
    (repo / "json").mkdir()
    (repo / "json" / "__init__.py").write_text("print('not json')\n")
    (repo / "json" / "tool.py").write_text("t = 1\n")
    (repo / "own_module.py").write_text("o = 1\n")
    git(repo, "add", "-A")
    said = changes_summary(repo)
    assert said.startswith("touches 10 paths: "), said
    assert "sitecustomize.py (new, Python runs it at start-up, +2 -0)" in said
    assert "numpy.py (new, imported in place of the installed numpy, +1 -0)" in said
    assert "json/__init__.py (new, imported in place of the installed json, +1 -0)" in said
    assert "json/tool.py (new, +1 -0)" in said and "own_module.py (new, +1 -0)" in said
    assert "new_name.py (renamed from old_name.py, +0 -0)" in said
    assert "'x\\ny' (renamed from README.md, +0 -0)" in said  # the rename's source is said
    assert "harness/a.py (mode 100644 -> 100755 (executable), +1 -1)" in said
    assert "'a\\n delete mode 100644 keep.py' (new, +1 -0)" in said
    assert "keep.py (deleted" not in said  # nothing is deleted
    assert "usercustomize.py (new, symlink, pointing to /tmp/elsewhere.py, Python runs it at start-up, +1 -0)" in said
    assert "\n" not in said
    assert "numpy.py (new, +1 -0)" in changes_summary(repo, "harness")  # imported from elsewhere: nothing unasked
