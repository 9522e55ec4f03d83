"""An export's ``run.json`` and ``curves.json`` read against a closed schema before anything else.

An export is a stranger's data: every field a reader uses, prints or looks anything up by has one
allowed form here (a commit is 40 hex digits, a module name is a dotted identifier, a metric name has
MLflow's characters), so nothing in it can become a git option, a module to import, a path to open or
a terminal escape. Tags a reader does not use (MLflow's own, a user's) are kept but never read.
"""

from __future__ import annotations

import re
from typing import Any

from ..common.errors import HarnessError, shown
from .operations import HARNESS_TAG
from .runs import METHOD_TAG
from .tags import DATASET_DIGEST, GIT_COMMIT, GIT_DIFF, GIT_DIRTY, OLD_NAMES, OLD_VERSION, PRUNED_EPOCH, STATE, VERSION

RUN_FIELDS = {"format", "run_id", "run_name", "experiment_name", "tags", "params", "metrics"}
REQUIRED = ("run_id", "run_name", "tags", "metrics")
RUN_ID = re.compile(r"[0-9a-f]{32}")
NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]{0,500}")
"""A run or experiment name: printable (no control character: no terminal escape), bounded."""
METRIC = re.compile(r"[\w./: -]{1,250}")
"""MLflow's characters for a metric name."""
MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
COMMIT = r"[0-9a-f]{40}|[0-9a-f]{64}|unknown"
FORMS = {
    "mlflow.source.git.commit": COMMIT,
    GIT_COMMIT: COMMIT,
    GIT_DIRTY: r"true|false|unknown",
    GIT_DIFF: r"[0-9a-f]{16}|too large \(\d{1,12} bytes; not logged\)",
    DATASET_DIGEST: r"[0-9a-f]{64}",
    STATE: r"[a-z_]{1,32}",
    PRUNED_EPOCH: r"\d{1,6}",
    HARNESS_TAG: r"[a-z_]{1,32}",
}
TAG_FORMS = {**FORMS, **{old: FORMS[new] for old, new in OLD_NAMES.items() if new in FORMS}}
"""The tags a reader of a logged run uses, each with the one form it may take, under today's name and the
name runs recorded before carried (``tags.OLD_NAMES``): a reader reads either (``tags.current_names``)."""
PREFIX_FORMS = {VERSION: r"[\w.+!-]{1,64}", OLD_VERSION: r"[\w.+!-]{1,64}", METHOD_TAG: r"[0-9a-f]{64}"}


def check_run(run: Any, where: str) -> None:
    """``run.json``: its fields, and the form of every tag a reader uses; one line naming the first wrong one."""
    if not isinstance(run, dict):
        _fail(where, "run.json", run, "must be a JSON object")
    for key in run:
        if key not in RUN_FIELDS:
            _fail(where, key, run[key], f"run.json holds only {', '.join(sorted(RUN_FIELDS))}")
    for key in REQUIRED:
        if key not in run:
            raise HarnessError(f"{where}: not a run exported by `harness export` (run.json has no {key})")
    _match(where, "run_id", run["run_id"], RUN_ID, "32 hex digits")
    for key in ("run_name", "experiment_name"):
        if key in run:
            _match(where, key, run[key], NAME, "printable text of at most 500 characters")
    for key in ("tags", "params"):
        if not isinstance(run.get(key, {}), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in run.get(key, {}).items()
        ):
            _fail(where, key, run.get(key), "must map names to strings")
    for name, value in run["tags"].items():
        _check_tag(where, name, value)
    metrics = run["metrics"]
    if not isinstance(metrics, dict):
        _fail(where, "metrics", metrics, "must map metric names to numbers")
    for name, value in metrics.items():
        _match(where, "a metric name", name, METRIC, "letters, digits, '_', '.', '/', ':', '-', ' '")
        if not _number(value):
            _fail(where, f"metrics.{name}", value, "must be a number")


def _check_tag(where: str, name: str, value: str) -> None:
    form = TAG_FORMS.get(name)
    if form is None:
        prefix = next((p for p in PREFIX_FORMS if name.startswith(p)), None)
        if prefix is None:
            return  # a tag no reader uses
        form = PREFIX_FORMS[prefix]
        if prefix == METHOD_TAG:
            _match(where, "a method tag's module", name[len(prefix) :], MODULE, "a module name such as my_methods")
    if re.fullmatch(form, value) is None:
        _fail(where, f"tags.{name}", value, f"must match {form}")


def check_curves(curves: Any, where: str) -> dict[str, list[tuple[int, float]]]:
    """``curves.json``: {metric: [[step, value], ...]}, steps whole numbers >= 0; returned as tuples."""
    if not isinstance(curves, dict):
        _fail(where, "curves.json", curves, "must map metric names to lists of [step, value]")
    checked = {}
    for name, points in curves.items():
        _match(where, "a curve's name", name, METRIC, "letters, digits, '_', '.', '/', ':', '-', ' '")
        if not isinstance(points, list) or not all(
            isinstance(p, list)
            and len(p) == 2
            and isinstance(p[0], int)
            and not isinstance(p[0], bool)
            and 0 <= p[0] <= 2**63 - 1
            and _number(p[1])
            for p in points
        ):
            _fail(where, f"curves.{name}", points, "must be a list of [step, value], steps whole numbers >= 0")
        checked[name] = [(step, float(value)) for step, value in points]
    return checked


def _number(value: Any) -> bool:
    """A JSON number (NaN and infinity included: a diverged run logs them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _match(where: str, field: str, value: Any, pattern: re.Pattern[str], allowed: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        _fail(where, field, value, f"must be {allowed}")


def _fail(where: str, field: str, value: Any, allowed: str) -> None:
    raise HarnessError(f"{where}: {field} = {shown(value)} is not allowed; {allowed} (an export is read as data)")
