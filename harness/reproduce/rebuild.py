"""Rebuild the code a run was trained with (its commit plus its logged ``git_diff.patch``) in a
temporary git worktree, and train there.

The rebuilt code only trains, in a child process (logged config in; curves, final values and weights
out as JSON, whose floats round-trip exactly); this process records and compares. So a reproduction
tests the logged code, while its record and comparison are today's.
"""

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from ..common.errors import HarnessError, RunTimeFailure, shown
from ..engine.training import TrainResult
from ..records.provenance import code_diff, diff_tag, git_state, logged_commit
from ..records.tags import GIT_DIFF

PACKAGE = Path(__file__).resolve().parents[1]
"""The harness package (this file is in its reproduce/ folder)."""

DRIVER = """
import base64, io, json, os, sys, time
try:  # the package's folders (engine/, records/, ...)
    from harness.engine.data import load_split
    from harness.records.runs import save_weights
    from harness.records.weights import parse_config
    try:
        from harness.engine.training import train_model
    except ImportError:  # a run made before its rename
        from harness.engine.training import train as train_model
except ImportError:  # a run made before them: one flat folder
    from harness.data import load_split
    from harness.predict import parse_config
    from harness.runs import save_weights
    from harness.training import train as train_model

request = json.loads(open(sys.argv[1]).read())
config = parse_config(request["config"], "the logged config.json")
split = load_split(config)
stop_at = request["stop_at"]
stops = [lambda epoch, metrics: epoch >= stop_at] if stop_at else []
faults = dict(p.split("=", 1) for p in os.environ.get("HARNESS_FAULT", "").split(",") if "=" in p)
if float(faults.get("epoch-delay", 0)):  # harness/faults.py's, read here: the rebuilt code may predate it
    stops.append(lambda epoch, metrics: time.sleep(float(faults["epoch-delay"])))
result = train_model(config, split, callbacks=stops, include_test=request["include_test"])
weights = io.BytesIO()
if result.network is not None:
    save_weights(result.network, weights, split)
answer = {k: getattr(result, k) for k in
          ("status", "epochs_run", "history", "diverged_epoch", "last_finite_loss", "final", "epoch_times")}
answer.update(digest=split.digest, weights=base64.b64encode(weights.getvalue()).decode())
with open(sys.argv[2], "w") as out:
    json.dump(answer, out, default=float)
"""


def code_differs(tags):
    """Why the running code is not the code of a run with these tags (a phrase), or None when it is,
    or when the run names no commit to rebuild."""
    logged = logged_commit(tags)
    if logged in (None, "unknown"):
        return None
    commit, _ = git_state()
    if commit != logged:
        here = "this harness is not a git checkout" if commit == "unknown" else f"this checkout is at {commit[:12]}"
        return f"the run was made at commit {logged[:12]}; {here}"
    if tags.get(GIT_DIFF) != diff_tag(code_diff()).get(GIT_DIFF):
        if tags.get(GIT_DIFF):
            diff = tags[GIT_DIFF]
            return f"the run was made from uncommitted changes (git_diff {diff}) this checkout does not have"
        return "this checkout has uncommitted changes the run did not have"
    return None


def changes_summary(root, imports="."):
    """Every path the applied patch changed in the worktree at ``root``, against its commit ('touches 2
    paths: harness/x.py (+2 -0), run.py (new, +5 -0)'): the consent line, said after the patch is
    applied (which runs nothing) and before any of it runs. Read back from git's index as NUL-separated
    records, so no file name can forge or hide an entry: new, deleted, renamed or copied from, a changed
    mode or type, a symlink's target, binary, lines added and removed; and, in ``imports`` (the folder the
    rebuilt code is imported from, relative to ``root``), a file that runs without the harness importing
    it (``_runs_unasked``)."""
    raw = _git("-C", str(root), "diff", "--cached", "--raw", "-z", "-M", "--no-abbrev", "HEAD")
    counts = _git("-C", str(root), "diff", "--cached", "--numstat", "-z", "-M", "HEAD")
    if raw.returncode != 0 or counts.returncode != 0:
        raise HarnessError(f"{root}: git cannot list what the patch changed ({_first_error(raw, counts)})")
    lines = _numstat(counts.stdout)
    paths = []
    for old_mode, new_mode, new_blob, status, names in _raw_entries(raw.stdout):
        notes = _change_notes(root, old_mode, new_mode, new_blob, status, names)
        notes += _runs_unasked(names[-1], imports) if status != "D" else []
        notes.append(lines.get(names[-1], "binary"))
        paths.append(f"{_shown_path(names[-1])} ({', '.join(notes)})")
    count = f"{len(paths)} path{'s' * (len(paths) != 1)}"
    return f"touches {count}: {', '.join(paths)}" if paths else "touches no files"


MODES = {"100644": "", "100755": "executable", "120000": "symlink", "160000": "submodule"}

START_UP = ("sitecustomize", "usercustomize")
"""Modules Python itself imports from its path when it starts, before any code of the harness."""


def _runs_unasked(path, imports):
    """A module the rebuilt code's interpreter runs although the harness does not import it: one that
    Python runs at start-up (``START_UP``), or one named as a standard or installed module, imported in
    its place (``numpy.py``, ``json/__init__.py``), directly in the folder the rebuilt code is imported
    from. [] for every other path."""
    parts, prefix = PurePosixPath(path).parts, PurePosixPath(imports).parts
    inside = parts[len(prefix) :] if parts[: len(prefix)] == prefix else ()
    if len(inside) == 1 and inside[0].endswith(".py"):
        name = inside[0][: -len(".py")]
    elif len(inside) == 2 and inside[1] == "__init__.py":
        name = inside[0]
    else:
        return []
    if name in START_UP:
        return ["Python runs it at start-up"]
    return [f"imported in place of the installed {name}"] if name.isidentifier() and _installed(name) else []


def _installed(name):
    """Whether ``name`` is a standard module or one installed in this interpreter's environment (found
    without importing it: a finder only looks at file names)."""
    import importlib.util

    if name in sys.stdlib_module_names:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    found = spec and (spec.origin or next(iter(spec.submodule_search_locations or ()), None))
    if not found or found in ("built-in", "frozen"):
        return bool(found)
    where = Path(found).resolve()
    return any(where.is_relative_to(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})


def _raw_entries(output):
    """``git diff --raw -z``: (old mode, new mode, new blob, status letter, [path] or [old, new])."""
    fields = output.decode(errors="surrogateescape").split("\0")
    entries, at = [], 0
    while at < len(fields) and fields[at].startswith(":"):
        old_mode, new_mode, _, new_blob, status = fields[at][1:].split(" ")
        width = 2 if status[0] in "RC" else 1
        entries.append((old_mode, new_mode, new_blob, status[0], fields[at + 1 : at + 1 + width]))
        at += 1 + width
    return entries


def _change_notes(root, old_mode, new_mode, new_blob, status, names):
    notes = {"A": ["new"], "D": ["deleted"], "R": [f"renamed from {_shown_path(names[0])}"]}.get(status, [])
    if status == "C":
        notes.append(f"copied from {_shown_path(names[0])}")
    if status == "A":
        notes += [MODES.get(new_mode, f"mode {new_mode}")] if MODES.get(new_mode) != "" else []
    elif status != "D" and old_mode != new_mode:
        notes.append(f"mode {old_mode} -> {new_mode}" + (f" ({MODES[new_mode]})" if MODES.get(new_mode) else ""))
    if new_mode == "120000":
        target = _git("-C", str(root), "cat-file", "blob", new_blob).stdout.decode(errors="surrogateescape")
        notes.append(f"pointing to {_shown_path(target)}")
    return notes


def _numstat(output):
    """``git diff --numstat -z``: {path: '+added -removed' or 'binary'} by the path it has now."""
    fields, found, at = output.decode(errors="surrogateescape").split("\0"), {}, 0
    while at < len(fields) and fields[at].count("\t") >= 2:
        added, removed, name = fields[at].split("\t", 2)
        if not name:  # a rename or copy: the old and new paths follow as fields of their own
            name, at = fields[at + 2], at + 2
        found[name] = "binary" if added == "-" else f"+{added} -{removed}"
        at += 1
    return found


def _shown_path(path):
    """A path as the consent line prints it: quoted and escaped when it holds anything unprintable."""
    return path if path.isprintable() and path.strip() == path and "," not in path else repr(path)


def _first_error(*done):
    for result in done:
        text = result.stderr.decode(errors="replace").strip()
        if text:
            return text.splitlines()[0][:300]
    return "no output"


def _git(*args, stdin=None):
    return subprocess.run(["git", *args], input=stdin, capture_output=True, timeout=120)


@contextlib.contextmanager
def worktree(commit, diff, where):
    """A temporary checkout of ``commit`` with ``diff`` applied; yields its root and the folder to import
    the harness from. Removed afterwards, also when training fails or is interrupted."""
    repo = _git("-C", str(PACKAGE), "rev-parse", "--show-toplevel")
    if repo.returncode != 0:
        raise HarnessError(
            f"{where}: cannot rebuild its code (commit {commit[:12]}): the harness running here is not a "
            "git checkout; run from a clone of the repository, or pass --here to retrain with this code"
        )
    top = Path(repo.stdout.decode().strip())
    if _git("-C", str(top), "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise HarnessError(
            f"{where}: its commit {commit[:12]} is not in {top} (git fetch it), or pass --here to retrain "
            "with this code"
        )
    scratch = Path(tempfile.mkdtemp(prefix="harness-rebuild-"))
    folder = scratch / "code"
    try:
        added = _git("-C", str(top), "worktree", "add", "--detach", "--quiet", str(folder), commit)
        if added.returncode != 0:
            raise RunTimeFailure(f"{where}: git could not check out {commit[:12]}: {added.stderr.decode().strip()}")
        if diff:  # into the index too: what it changed is then read back from git (changes_summary)
            applied = _git("-C", str(folder), "apply", "--index", "--binary", "--whitespace=nowarn", "-", stdin=diff)
            if applied.returncode != 0:
                said = applied.stderr.decode(errors="replace").strip().splitlines()
                message = shown(said[0]) if said else "git apply failed"  # the patch's own names: quoted
                raise HarnessError(f"{where}: its git_diff.patch does not apply on {commit[:12]} (git: {message})")
        yield folder, folder / PACKAGE.parent.relative_to(top)
    finally:
        _git("-C", str(top), "worktree", "remove", "--force", str(folder))
        shutil.rmtree(scratch, ignore_errors=True)
        _git("-C", str(top), "worktree", "prune")


def train_rebuilt(folder, config_json, stop_at, include_test, where, paths=()):
    """Train the logged config with the harness in ``folder`` (and a run's own methods from ``paths``;
    never the working folder, whose files would shadow the standard library); a TrainResult whose
    network is rebuilt from the weights that code saved."""
    from ..records.weights import LoggedModel, parse_config, parse_weights

    with tempfile.TemporaryDirectory(prefix="harness-rebuild-io-") as io_dir:
        request, answer, driver = (Path(io_dir) / name for name in ("request.json", "answer.json", "driver.py"))
        request.write_text(json.dumps({"config": config_json, "stop_at": stop_at, "include_test": include_test}))
        driver.write_text(DRIVER)  # run as a file: its folder, not the working directory, leads sys.path
        done = subprocess.run(
            [sys.executable, str(driver), str(request), str(answer)],
            env={**_environment(), "PYTHONPATH": os.pathsep.join(str(p) for p in (folder, *paths) if p)},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not answer.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RunTimeFailure(
                f"{where}: training with the rebuilt code failed ({last}); --here trains with this code"
            )
        values = json.loads(answer.read_text())
    weights = base64.b64decode(values.pop("weights"))
    digest = values.pop("digest")
    config = parse_config(config_json, f"{where} config.json")
    network = LoggedModel(config, parse_weights(weights, f"{where} rebuilt weights")).network if weights else None
    return TrainResult(network=network, **values), digest


def _environment():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
