"""A study's MLflow runs as one table of records: what the summary, ``compare`` and the checks read.

One row per run (search trials, confirmation seeds, condition parents), with its tags, params and
final metric values as columns. ``current`` keeps the runs that hold a result of the sweep as it
stands: one run per finished search trial, one per wanted confirmation seed of the current budget.
The end-of-sweep summary and ``harness compare`` both start here, so they cannot disagree.
"""

import dataclasses
import math
import re

import pandas as pd

from ..engine.config import TrainConfig
from ..engine.training import epochs_to_target
from ..studies.study import CONFIRM_NAME, LEGACY_SEARCH
from .correctness import CORRECT_COLUMN, CORRECT_TAG
from .operations import HARNESS_TAG
from .quality import RELIABILITY_COLUMN, RELIABILITY_TAG
from .runs import FINAL_STATES
from .tags import (
    BEST_SEARCH_TRIAL,
    CONDITION,
    DATASET_DIGEST,
    EPOCHS_TO_TARGET,
    OPTUNA_STORAGE,
    OPTUNA_STUDY,
    OPTUNA_TRIAL,
    PREFIX,
    RERUN,
    SEARCH_ID,
    STATE,
    SUPERSEDED,
    current_names,
)

KINDS = ("search", "confirm", "condition")
STUDY_ARTIFACT = "study.json"
"""The resolved study a sweep records on every parent run; ``compare`` reads it back."""


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


MODEL_RUN_TAG = "harness.model_run"
"""On a confirmation seed that logged no MLflow model: the run of its condition's model."""
REUSED_TAG = "harness.confirms"
"""On a confirmation run that a larger budget re-used (its best trial unchanged: same settings, same seed,
so the same result): ``<confirm study>#<trial>`` of each confirmation it also stands for, ';'-separated."""
SIZES = ("classes", "val_rows", "test_rows")
"""Tags of a run's data (``runs.run_tags``, ``harness.<size>``); None in runs recorded before they were."""


COLUMNS = [
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
    "search_id",
    "dataset_digest",
    "superseded",
    "rerun",
    "model_run",
    "epochs_to_target",
    "target_known",
    *SIZES,
    CORRECT_COLUMN,
    RELIABILITY_COLUMN,
    "confirms",
]
"""The columns of an empty records table."""


def records_frame(runs):
    """Plain run dicts (``operations.study_runs``) -> the records table."""
    rows = []
    for run in runs:
        tags = current_names(run["tags"])
        if tags.get(HARNESS_TAG) not in KINDS:
            continue
        reached = tags.get(EPOCHS_TO_TARGET)
        rows.append(
            {
                "run_id": run["run_id"],
                "run_name": run["run_name"],
                "status": run["status"],
                "start_time": run["start_time"],
                "kind": tags[HARNESS_TAG],
                "condition": tags.get(CONDITION),
                "phase": tags.get("harness.phase", tags[HARNESS_TAG]),  # runs before 0.2 carried both
                "optuna_study": tags.get(OPTUNA_STUDY),
                "trial": _int(tags.get(OPTUNA_TRIAL)),
                "seed": _int(run["params"].get("seed", tags.get("harness.seed"))),
                "state": tags.get(STATE),
                "best_search_trial": _int(tags.get(BEST_SEARCH_TRIAL)),
                "parent": tags.get("mlflow.parentRunId"),
                "search_id": tags.get(SEARCH_ID),
                "dataset_digest": tags.get(DATASET_DIGEST),
                "superseded": tags.get(SUPERSEDED) == "true",
                "rerun": tags.get(RERUN) == "true",
                "model_run": tags.get(MODEL_RUN_TAG),
                "epochs_to_target": (math.nan if reached in (None, "never") else float(reached)),
                "target_known": reached is not None,
                **{key: _int(tags.get(PREFIX + key)) for key in SIZES},
                CORRECT_COLUMN: tags.get(CORRECT_TAG),
                RELIABILITY_COLUMN: tags.get(RELIABILITY_TAG),
                "confirms": tags.get(REUSED_TAG, ""),
                **({"tag.optuna_storage": tags[OPTUNA_STORAGE]} if OPTUNA_STORAGE in tags else {}),
                **{f"param.{k}": v for k, v in run["params"].items()},
                **{f"metric.{k}": v for k, v in run["metrics"].items()},
            }
        )
    return pd.DataFrame(rows, columns=None if rows else COLUMNS)


def holds_result(frame):
    """Runs that ended and hold their results (their final ``state`` tag is written last)."""
    return (frame["status"] == "FINISHED") & frame["state"].isin(FINAL_STATES)


def belongs(study, condition, search_id):
    """Whether a run of ``condition`` that carries ``search_id`` (None: none) is of the study's current
    search; a study recorded before searches had ids counts every run."""
    wanted = study.search_ids.get(condition)
    if wanted is None:
        return True
    return search_id == wanted or (search_id is None and wanted == LEGACY_SEARCH)


def _belonging(study, frame):
    if not study.search_ids:
        return frame
    ids = frame["search_id"] if "search_id" in frame else [None] * len(frame)
    return frame[[belongs(study, c, s) for c, s in zip(frame["condition"], ids)]]


def settled_confirmations(frame):
    """(optuna study, seed) of the confirmation runs that settled their seed: results (also for each larger
    budget that re-used them), or a training failure (an outcome too)."""
    confirm = frame[frame["kind"] == "confirm"]
    rows = with_reuses(confirm[holds_result(confirm) | (confirm["state"] == "failed")])
    return list(zip(rows["optuna_study"], rows["seed"]))


def reuses(text):
    """[(confirm study, trial number)] a run's ``REUSED_TAG`` names."""
    found = []
    for entry in str(text or "").split(";"):
        name, _, number = entry.rpartition("#")
        if name and number.isdigit():
            found.append((name, int(number)))
    return found


def with_reuses(confirm):
    """Confirmation runs, and one more row per larger budget that re-used a run (its confirm study and
    trial in place of the run's own): the run stands for that seed there too."""
    if not len(confirm) or "confirms" not in confirm:
        return confirm
    extra = [
        {**row, "optuna_study": name, "trial": number}
        for row in confirm[confirm["confirms"].astype(bool)].to_dict("records")
        for name, number in reuses(row["confirms"])
    ]
    return pd.concat([confirm, pd.DataFrame(extra, columns=confirm.columns)]) if extra else confirm


def standing_budget(study, settled):
    """The search budget whose confirmation is the study's result.

    ``settled``: (optuna study, seed) of the confirmation runs that settled their seed
    (``settled_confirmations``). The study's own budget, once every condition confirmed at some budget
    has settled all its wanted seeds there; until then the largest smaller budget that has: an
    extension in progress never hides the result it extends, and a smaller budget never replaces a
    larger one's (a sweep runs at least the largest budget asked before, ``sweep.studies.budget_asked_before``).
    """
    wanted, by_budget = set(study.confirm_seed_values()), {}
    conditions = {study.optuna_name(c): c.name for c in study.conditions}
    for name, seed in settled:
        match = CONFIRM_NAME.fullmatch(str(name))
        if match and match["search"] in conditions and int(match["budget"]) <= study.trials:
            by_budget.setdefault(int(match["budget"]), {}).setdefault(conditions[match["search"]], set()).add(seed)
    confirmable = {condition for seeds in by_budget.values() for condition in seeds}
    for budget in sorted(by_budget, reverse=True):
        if all(wanted <= by_budget[budget].get(condition, set()) for condition in confirmable):
            return budget
    return study.trials


def result_budget(study, frame):
    """The budget whose confirmation the study's result is, from its records (``standing_budget``)."""
    if frame.empty:
        return study.trials
    return standing_budget(study, settled_confirmations(_belonging(study, frame)))


def current(study, frame):
    """(search, confirm) runs of the sweep as it stands: one per finished trial of the current search,
    one per wanted seed of the standing budget's confirmation (``standing_budget``)."""
    if frame.empty:
        return frame, frame
    mine = _belonging(study, frame)
    done = mine[holds_result(mine)].sort_values(["start_time", "run_id"])
    search_names = {study.optuna_name(c) for c in study.conditions}
    budget = result_budget(study, frame)
    confirm_names = {f"{study.optuna_name(c)}/confirm-after-{budget}-trials" for c in study.conditions}
    search = done[(done["kind"] == "search") & done["optuna_study"].isin(search_names)]
    confirm = with_reuses(done[done["kind"] == "confirm"]).sort_values(["start_time", "run_id"], kind="stable")
    confirm = confirm[confirm["optuna_study"].isin(confirm_names) & confirm["seed"].isin(study.confirm_seed_values())]
    # a trial re-run after its record was lost has one run holding its result; should an old one also
    # hold it (a recorder that came back), the newest counts: identical by construction (deterministic)
    search = search.drop_duplicates(["optuna_study", "trial"], keep="last")
    confirm = confirm.drop_duplicates(["optuna_study", "seed"], keep="last")
    return search.sort_values(["condition", "trial"]), confirm.sort_values(["condition", "seed"])


def parents(frame):
    """{condition: parent run id}: the parent its trials' runs are nested under (stores made by older
    versions may hold a second, empty parent of a condition), else its oldest parent; never the parent
    of a search given up (tagged superseded)."""
    if frame.empty:
        return {}
    rows = frame[(frame["kind"] == "condition") & ~frame["superseded"]].sort_values(["start_time", "run_id"])
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


# --- the notebook's table: MLflow's names and pandas' types --------------------------------------------------
IDENTITY = [
    "run_id",
    "experiment_id",
    "run_name",
    "status",
    "artifact_uri",
    "start_time",
    "end_time",
    "condition",
    "phase",
    "optuna_study",
    "trial",
    "seed",
    "state",
    "best_search_trial",
    "epochs_to_target",
]
"""The trials table's own columns, unprefixed as ``mlflow.search_runs`` leaves ``run_id`` and ``status``;
after them come every metric, param and tag of the runs as ``metrics.*``, ``params.*``, ``tags.*``."""
COUNTS = ("trial", "seed", "best_search_trial", "epochs_to_target")
"""Identity columns that count (nullable Int64: a search trial has no best trial, a run may never reach the target)."""
DTYPES = {"float": "float64", "int": "Int64", "bool": "boolean", "str": "str", "str | None": "str", "list": "str"}
"""A setting's declared type (``TrainConfig``) -> its param column's dtype; a list is logged as ``64,32``."""
INTEGER = re.compile(r"[+-]?\d+")


def trials_table(rows: pd.DataFrame, runs: list[dict]) -> pd.DataFrame:
    """The rows of a records table (``current``'s runs) as ``mlflow.search_runs`` gives runs, typed.

    ``runs``: the plain run dicts the rows were read from (``operations.study_runs``). Times are
    datetimes in UTC as MLflow's own table has them, metrics floats, params parsed (``param_column``),
    tags the text MLflow holds; the identity columns come from the rows (a re-used confirmation run
    stands there for its larger budget's trial)."""
    by_id = {run["run_id"]: run for run in runs}
    picked = [by_id[run_id] for run_id in rows["run_id"]]
    columns: dict[str, object] = {"run_id": list(rows["run_id"])}
    for name in ("experiment_id", "run_name", "status", "artifact_uri"):
        columns[name] = [run.get(name) for run in picked]
    for name in ("start_time", "end_time"):  # as mlflow.search_runs converts them, so the two tables compare
        columns[name] = [pd.to_datetime(run.get(name), unit="ms", utc=True) for run in picked]
    for name in IDENTITY[IDENTITY.index("condition") :]:  # what the records table read from the tags
        values = pd.Series(list(rows[name]) if name in rows else [None] * len(rows), dtype=object)
        columns[name] = values.astype("float64").astype("Int64") if name in COUNTS else values.tolist()
    for prefix in ("metrics", "params", "tags"):
        for key in sorted({key for run in picked for key in run[prefix]}):
            values = pd.Series([run[prefix].get(key) for run in picked], dtype=object)
            if prefix == "metrics":
                values = values.astype("float64")
            columns[f"{prefix}.{key}"] = param_column(key, values) if prefix == "params" else values.tolist()
    return pd.DataFrame(columns, columns=list(columns))


def param_column(name: str, texts: pd.Series) -> pd.Series:
    """A param's texts as the setting's type: floats float64, integers nullable Int64, booleans boolean,
    the rest text as MLflow gives it. A harness setting has its declared type (``hidden`` stays text even
    when every run has one layer); a param of no setting (a custom method's own) is typed by its values;
    a value that does not parse as the type leaves the column as text."""
    texts = texts.reset_index(drop=True)
    field_types = {field.name: field.type for field in dataclasses.fields(TrainConfig)}
    declared = DTYPES.get(str(field_types.get(name)))
    known = texts.dropna().astype(str)
    as_text = pd.Series(texts.tolist())  # the dtype pandas infers for MLflow's lists of text
    if declared == "str" or not len(known):
        return as_text
    if declared in ("boolean", None) and known.isin(["True", "False"]).all():
        return texts.map({"True": True, "False": False}).astype("boolean")
    integral = bool(known.map(lambda text: INTEGER.fullmatch(text) is not None).all())
    wanted = declared or ("Int64" if integral else "float64")
    parsed = pd.to_numeric(known, errors="coerce")
    if declared == "boolean" or parsed.isna().any() or (wanted == "Int64" and not integral):
        return as_text
    return pd.to_numeric(texts, errors="coerce").astype(wanted)


class Curves:
    """A run's per-epoch values of one metric, read once."""

    def __init__(self, recorder):
        self.recorder, self._seen = recorder, {}

    def prefetch(self, run_ids, keys):
        """Read these runs' curves of ``keys`` in one operation (``metric_histories_bulk``)."""
        wanted = [r for r in run_ids if any((r, k) not in self._seen for k in keys)]
        if not wanted:
            return
        for run_id, histories in self.recorder.call("metric_histories_bulk", wanted, list(keys)).items():
            for key, history in histories.items():
                self._seen[(run_id, key)] = [value for _, value, _ in history]

    def __call__(self, run_id, key):
        if (run_id, key) not in self._seen:
            history = self.recorder.call("metric_histories", run_id, [key])[key]
            self._seen[(run_id, key)] = [value for _, value, _ in history]
        return self._seen[(run_id, key)]
