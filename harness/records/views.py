"""What the MLflow UI shows first for a study: its runs table with the results' columns.

MLflow 3's UI opens an experiment with no metric or param column and, unless told otherwise, in its
GenAI pages. It keeps a named view of the runs table (columns, sort) as an experiment tag,
``mlflow.sharedViewState.<key>``, that its Views menu lists and a ``?viewStateShareKey=<key>`` link
opens. The sweep writes one such view per study, with the condition parents' results as columns;
``harness ui --study`` prints the link that opens it in the "Model training" pages. The UI's own
"Override saved view" rewrites the tag, and a re-run sweep keeps that edit. (The experiment tag
``mlflow.experimentKind`` does not help here: MLflow 3.17's UI follows its GenAI / Model training
switch, not the tag.)
"""

import base64
import json
import time
import zlib

VIEW_KEY = "harness-results"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "harness: results by condition"


def ui_column(kind, name):
    """A column as the UI names it: ``metrics.`test_accuracy_mean```."""
    return f"{kind}.`{name}`"


def result_columns(study):
    """The parents' results (``records.parents.summary_metrics``), then what tells the conditions apart
    and their best searched settings."""
    metrics = [
        "test_accuracy_mean",
        "test_accuracy_ci_low",
        "test_accuracy_ci_high",
        f"best_{study.objective}",
        "epochs_to_target",
        "diverged_share",
        "pruned_share",
    ]
    settings = list(dict.fromkeys(key for condition in study.conditions for key in condition.settings))
    params = settings + [f"best.{p.name}" for p in study.search]
    return [ui_column("metrics", m) for m in metrics] + [ui_column("params", p) for p in params]


def header_width(key):
    """Pixels that show a column's whole name: the UI's default width cuts ``test_accuracy_mean`` short."""
    name = key.split("`")[1]
    return max(90, 8 * len(name) + 36)


def results_view(study, now_ms=None):
    """The view's tag value, in the format the UI itself writes on "Save as new view": the state as
    zlib-compressed JSON in base64, prefixed ``deflate;``."""
    columns = result_columns(study)
    state = {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",  # a metric sort would list the nested runs flat
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {c: header_width(c) for c in columns},
        "runsHiddenMode": "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
    }
    packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode())).decode()
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    return json.dumps({"name": VIEW_NAME, "createdAt": stamp, "updatedAt": stamp, "state": f"deflate;{packed}"})


def read_view(value):
    """The state a view's tag value holds (the inverse of ``results_view``), for checks and tests."""
    state = json.loads(value)["state"]
    encoding, _, packed = state.partition(";")
    if encoding != "deflate":
        raise ValueError(f"unknown view state encoding {encoding!r}")
    return json.loads(zlib.decompress(base64.b64decode(packed)))


def experiment_defaults(study):
    """Tags the sweep sets on the study's experiment when absent (a user's change in the UI stays)."""
    return {VIEW_TAG: results_view(study)}
