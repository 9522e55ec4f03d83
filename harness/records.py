"""A study's MLflow runs as one table of records: what the summary, ``compare`` and the checks read.

One row per run (search trials, confirmation seeds, condition parents), with its tags, params and
final metric values as columns. ``current`` keeps the runs that hold a result of the sweep as it
stands: one run per finished search trial, one per wanted confirmation seed of the current budget.
The end-of-sweep summary and ``harness compare`` both start here, so they cannot disagree.
"""

import math

import pandas as pd

from .runs import FINAL_STATES
from .tracking import HARNESS_TAG
from .training import epochs_to_target

KINDS = ("search", "confirm", "condition")
STUDY_ARTIFACT = "study.json"
"""The resolved study a sweep records on every parent run; ``compare`` reads it back."""


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def records_frame(runs):
    """Plain run dicts (``tracking.study_runs``) -> the records table."""
    rows = []
    for run in runs:
        tags = run["tags"]
        if tags.get(HARNESS_TAG) not in KINDS:
            continue
        reached = tags.get("epochs_to_target")
        rows.append(
            {
                "run_id": run["run_id"],
                "run_name": run["run_name"],
                "status": run["status"],
                "start_time": run["start_time"],
                "kind": tags[HARNESS_TAG],
                "condition": tags.get("condition"),
                "phase": tags.get("phase"),
                "optuna_study": tags.get("optuna_study"),
                "trial": _int(tags.get("trial")),
                "seed": _int(tags.get("seed")),
                "state": tags.get("state"),
                "best_search_trial": _int(tags.get("best_search_trial")),
                "parent": tags.get("mlflow.parentRunId"),
                "superseded": tags.get("superseded") == "true",
                "rerun": tags.get("rerun") == "true",
                "epochs_to_target": (math.nan if reached in (None, "never") else float(reached)),
                "target_known": reached is not None,
                **({"tag.optuna_storage": tags["optuna_storage"]} if "optuna_storage" in tags else {}),
                **{f"param.{k}": v for k, v in run["params"].items()},
                **{f"metric.{k}": v for k, v in run["metrics"].items()},
            }
        )
    columns = [
        "run_id",
        "run_name",
        "status",
        "start_time",
        "kind",
        "condition",
        "phase",
        "optuna_study",
        "trial",
        "seed",
        "state",
        "best_search_trial",
        "superseded",
        "rerun",
        "epochs_to_target",
        "target_known",
    ]
    return pd.DataFrame(rows, columns=None if rows else columns)


def holds_result(frame):
    """Runs that ended and hold their results (their final ``state`` tag is written last)."""
    return (frame["status"] == "FINISHED") & frame["state"].isin(FINAL_STATES)


def current(study, frame):
    """(search, confirm) runs of the sweep as it stands, one per trial and one per wanted seed."""
    if frame.empty:
        return frame, frame
    done = frame[holds_result(frame)].sort_values(["start_time", "run_id"])
    search_names = {study.optuna_name(c) for c in study.conditions}
    confirm_names = {study.optuna_name(c, "confirm") for c in study.conditions}
    search = done[(done["kind"] == "search") & done["optuna_study"].isin(search_names)]
    confirm = done[
        (done["kind"] == "confirm")
        & done["optuna_study"].isin(confirm_names)
        & done["seed"].isin(study.confirm_seed_values())
    ]
    # a trial re-run after its record was lost has one run holding its result; should an old one also
    # hold it (a recorder that came back), the newest counts: identical by construction (deterministic)
    search = search.drop_duplicates(["optuna_study", "trial"], keep="last")
    confirm = confirm.drop_duplicates(["optuna_study", "seed"], keep="last")
    return search.sort_values(["condition", "trial"]), confirm.sort_values(["condition", "seed"])


def parents(frame):
    """{condition: parent run id}: the parent its trials' runs are nested under (stores made by older
    versions may hold a second, empty parent of a condition), else its oldest parent."""
    if frame.empty:
        return {}
    rows = frame[frame["kind"] == "condition"].sort_values(["start_time", "run_id"])
    found = dict(rows.drop_duplicates("condition")[["condition", "run_id"]].itertuples(index=False))
    children = frame[frame["kind"].isin(["search", "confirm"]) & frame["parent"].isin(rows["run_id"])]
    for condition, group in children.groupby("condition"):
        found[condition] = group["parent"].value_counts().index[0]
    return found


def load(recorder, study):
    """(experiment id or None, records table) of a study, read through a recorder."""
    experiment_id, runs = recorder.call("study_runs", study.name)
    return experiment_id, fill_targets(recorder, study, records_frame(runs))


def fill_targets(recorder, study, frame):
    """Confirmation runs recorded before runs carried their epochs to target get it from their curve."""
    if len(frame):
        old = frame[(frame["kind"] == "confirm") & ~frame["target_known"]]
        for index, run_id in zip(old.index, old["run_id"]):
            curve = recorder.call("metric_histories", run_id, ["val_accuracy"])["val_accuracy"]
            reached = epochs_to_target({"val_accuracy": [value for _, value, _ in curve]}, study.target_accuracy)
            frame.loc[index, "epochs_to_target"] = math.nan if reached is None else float(reached)
    return frame


class Curves:
    """A run's per-epoch values of one metric, read once."""

    def __init__(self, recorder):
        self.recorder, self._seen = recorder, {}

    def __call__(self, run_id, key):
        if (run_id, key) not in self._seen:
            history = self.recorder.call("metric_histories", run_id, [key])[key]
            self._seen[(run_id, key)] = [value for _, value, _ in history]
        return self._seen[(run_id, key)]
