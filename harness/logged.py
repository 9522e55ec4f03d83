"""A logged run as ``reproduce`` and ``predict`` read it: from the tracking store, or from the one
file ``harness export`` wrote, so a colleague without the store (or the server) can check a result.

An export is a zip of plain files: ``run.json`` (id, name, tags with the commit, diff digest, package
versions and data digest, params, final metrics), ``curves.json`` (every metric at every step), and the
run's ``config.json``, ``weights.npz`` and ``git_diff.patch`` as logged. Nothing in it is unpickled or
executed; a damaged or foreign file gets one line naming it.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

from .errors import HarnessError
from .provenance import DIFF_ARTIFACT
from .runs import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT
from .tracking import HARNESS_TAG

EXPORT_FORMAT = "harness-run-export 1"
RUN_FILE, CURVES_FILE = "run.json", "curves.json"
EXPORTED_ARTIFACTS = (CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, DIFF_ARTIFACT)


def is_export(source):
    """A RUN_ID argument names an export when it is a file, or looks like one (run ids are hex, never
    paths): a missing export is said as such, not looked up as a run."""
    if Path(source).is_file():
        return True
    if source.endswith(".zip") or os.sep in source:
        raise HarnessError(f"{source}: no such export file (write one with `harness export RUN_ID -o FILE`)")
    return False


class StoredRun:
    """A run in the tracking store, read through a recorder."""

    def __init__(self, recorder, run_id):
        self.recorder = recorder
        self.run = recorder.call("get_run", run_id)
        self.where = f"run {run_id}"
        if HARNESS_TAG not in self.run["tags"]:
            raise HarnessError(f"run {run_id} was not made by the harness (no {HARNESS_TAG} tag)")

    def artifact(self, name):
        return self.recorder.call("read_artifact", self.run["run_id"], name)

    def histories(self, keys):
        """{metric: [(step, value), ...]} in step order."""
        histories = self.recorder.call("metric_histories", self.run["run_id"], list(keys))
        return {key: [(step, value) for step, value, _ in points] for key, points in histories.items()}


class ExportedRun:
    """A run read from an export file; needs no store."""

    def __init__(self, path):
        self.where = f"export {path}"
        try:
            with zipfile.ZipFile(path) as archive:
                self.files = {name: archive.read(name) for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise HarnessError(f"{path}: not a run exported by `harness export` ({exc})") from None
        try:
            self.run = json.loads(self.files[RUN_FILE])
            curves = json.loads(self.files[CURVES_FILE])
            if self.run.get("format") != EXPORT_FORMAT or not isinstance(curves, dict):
                raise ValueError(f"format {self.run.get('format')!r}, expected {EXPORT_FORMAT!r}")
            self.curves = {key: [(int(step), float(value)) for step, value in points] for key, points in curves.items()}
            missing = [f for f in ("run_id", "run_name", "tags", "metrics") if f not in self.run]
            if missing:
                raise KeyError(missing[0])
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise HarnessError(f"{path}: not a run exported by `harness export` (missing or bad {exc})") from None

    def artifact(self, name):
        return self.files.get(name)

    def histories(self, keys):
        return {key: self.curves.get(key, []) for key in keys}


def export_run(run_id, uri, path):
    """Write one run to ``path`` as an export zip (atomically: a killed export leaves no partial file);
    returns the names it holds."""
    from .tracking import InlineRecorder

    logged = StoredRun(InlineRecorder(uri), run_id)
    run = {
        "format": EXPORT_FORMAT,
        **{k: logged.run[k] for k in ("run_id", "run_name", "experiment_name", "tags", "params", "metrics")},
    }
    curves = logged.histories(logged.run["metrics"])
    members = {
        RUN_FILE: json.dumps(run, indent=1, sort_keys=True),
        CURVES_FILE: json.dumps({k: [[s, v] for s, v in points] for k, points in curves.items()}),
    }
    for name in EXPORTED_ARTIFACTS:
        content = logged.artifact(name)
        if content is not None:
            members[name] = content
    if CONFIG_ARTIFACT not in members:
        raise HarnessError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact: there is nothing to rebuild it from")
    target = Path(path)
    if target.is_dir():
        raise HarnessError(f"-o {path}: is a directory; give the file to write, e.g. {run_id}.zip")
    if not target.parent.is_dir():
        raise HarnessError(f"-o {path}: folder {target.parent} does not exist")
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in members.items():
                archive.writestr(name, content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return sorted(members)
