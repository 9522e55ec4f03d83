"""A logged run as ``reproduce`` and ``predict`` read it: from the tracking store, or from the one
file ``harness export`` wrote, so a colleague without the store (or the server) can check a result.

An export is a zip of plain files: ``run.json`` (id, name, tags with the commit, diff digest, package
versions and data digest, params, final metrics), ``curves.json`` (every metric at every step), and the
run's ``config.json``, ``weights.npz`` and ``git_diff.patch`` as logged. Nothing in it is unpickled,
and its patch is run only when the user asks for it (``reproduce --rebuild-code``): whoever wrote the
file chose every byte of it, its digests included. Only the members the harness uses are read, each
bounded (``LIMITS``) before it is; a damaged, oversized or foreign file gets one line naming it.
"""

import functools
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

from ..common.errors import HarnessError, shown
from ..common.files import memory_bound
from .export_schema import check_curves, check_run
from .operations import HARNESS_TAG
from .provenance import DIFF_ARTIFACT, MAX_DIFF_BYTES
from .runs import CONFIG_ARTIFACT, METHOD_FOLDER, METHOD_TAG, WEIGHTS_ARTIFACT
from .tags import GIT_DIFF, current_names

EXPORT_FORMAT = "harness-run-export 1"
RUN_FILE, CURVES_FILE = "run.json", "curves.json"
EXPORTED_ARTIFACTS = (CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, DIFF_ARTIFACT)
MB = 1 << 20
MAX_MEMBERS = 64
"""An export holds 5 files and the sources of at most two methods."""


LIMITS = {
    RUN_FILE: 16 * MB,
    CURVES_FILE: 64 * MB,
    CONFIG_ARTIFACT: 1 * MB,
    DIFF_ARTIFACT: MAX_DIFF_BYTES,
    WEIGHTS_ARTIFACT: memory_bound(4, 2 << 30),  # read whole, its arrays allocated beside it
    METHOD_FOLDER: 4 * MB,  # a custom method's module source, methods/<module>.py
}
"""The most bytes read of each file of a logged run (an export's members; for weights, also the arrays
their headers declare): far above what a run writes (curves of 16 metrics over 100,000 epochs are
about 40 MB; a run never logs a larger patch), far below what would exhaust memory."""


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
    """A run read from an export file; needs no store. Its members are read when used, each bounded."""

    def __init__(self, path):
        self.path, self.where = path, f"export {path}"
        self._check_members()
        self.run = self._json(RUN_FILE)
        if not isinstance(self.run, dict) or self.run.get("format") != EXPORT_FORMAT:
            found = self.run.get("format") if isinstance(self.run, dict) else None
            raise HarnessError(
                f"{path}: not a run exported by `harness export` (format {shown(found)}, expected {EXPORT_FORMAT!r})"
            )
        check_run(self.run, self.where)  # before anything of it is used
        self.run["tags"] = current_names(self.run["tags"])  # an export written before tags had one prefix

    def _check_members(self):
        """At most ``MAX_MEMBERS``, each named once: a reader and a person unzipping it see the same bytes,
        and a million empty members cannot make every read re-parse a huge directory."""
        try:
            with zipfile.ZipFile(self.path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
            raise HarnessError(f"{self.path}: not a run exported by `harness export` ({exc})") from None
        if len(names) > MAX_MEMBERS:
            raise HarnessError(f"{self.path}: holds {len(names)} files; an export holds at most {MAX_MEMBERS}")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise HarnessError(f"{self.path}: holds {twice[0]!r} more than once; an export names each file once")

    def _json(self, name):
        try:
            return json.loads(self._required(name))
        except (KeyError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            said = "nested too deeply" if isinstance(exc, RecursionError) else f"missing or bad {exc}"
            raise HarnessError(f"{self.path}: not a run exported by `harness export` ({said})") from None

    @functools.cached_property
    def curves(self):
        """Read (and checked) only when a comparison needs them: predict never does."""
        return check_curves(self._json(CURVES_FILE), self.where)

    def _required(self, name):
        content = self._member(name)
        if content is None:
            raise KeyError(name)
        return content

    def _member(self, name):
        """One member's bytes (None when absent), refused when it declares or holds more than its limit."""
        limit = LIMITS[METHOD_FOLDER if name.startswith(METHOD_FOLDER) else name]
        try:
            with zipfile.ZipFile(self.path) as archive:
                try:
                    info = archive.getinfo(name)
                except KeyError:
                    return None
                if info.file_size > limit:
                    raise HarnessError(f"{self.path}: {name} declares {info.file_size} bytes; at most {limit} are read")
                with archive.open(info) as stream:
                    content = stream.read(limit + 1)  # the declared size may lie
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise HarnessError(f"{self.path}: not a run exported by `harness export` ({exc})") from None
        if len(content) > limit:
            raise HarnessError(f"{self.path}: {name} holds more than {limit} bytes; at most {limit} are read")
        return content

    def artifact(self, name):
        return self._member(name)

    def histories(self, keys):
        return {key: self.curves.get(key, []) for key in keys}


def logged_diff(logged):
    """The run's ``git_diff.patch`` when its ``harness.git_diff`` tag names one, checked against that digest
    (None when the tag names none, or the patch was not logged): a patch that is not the one the run
    logged is damaged or planted, and is refused before anything else happens."""
    tag = logged.run["tags"].get(GIT_DIFF)
    if not tag:
        return None
    content = logged.artifact(DIFF_ARTIFACT)
    if content is None:
        return None
    digest = hashlib.sha256(content).hexdigest()[:16]
    if digest != tag:
        raise HarnessError(
            f"{logged.where}: its {DIFF_ARTIFACT} (sha256 {digest}) is not the patch the run logged "
            f"(git_diff {tag}); it was changed or damaged, and nothing of it was used"
        )
    return content


def export_run(run_id, uri, path):
    """Write one run to ``path`` as an export zip (atomically: a killed export leaves no partial file);
    returns the names it holds."""
    from .recorder import InlineRecorder
    from .store import check_exists

    check_exists(uri, f"run {run_id!r}")
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
    methods = [f"{METHOD_FOLDER}{key[len(METHOD_TAG) :]}.py" for key in run["tags"] if key.startswith(METHOD_TAG)]
    for name in (*EXPORTED_ARTIFACTS, *methods):
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
