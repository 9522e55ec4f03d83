"""Compare the conditions of a finished study from its MLflow records: table, paired differences, report.

Everything is read back from the tracking store, so the comparison can be rebuilt on any machine that
sees the store. The table is ``summary.summarize`` over the table of records, the same computation the
sweep printed at its end; the study it uses is the resolved study the sweep recorded on its parent runs
(``study.json``), so flags given to the sweep (``--trials``, ``--confirm-seeds``, ...) hold here too.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..common.errors import HarnessError
from ..common.urls import redact
from ..engine.data import load_split, model_example
from ..records import table as records
from ..records.parents import publish
from ..records.recorder import InlineRecorder
from ..records.runs import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT
from ..records.store import check_exists, check_writable, sqlite_path
from ..records.table import STUDY_ARTIFACT
from ..records.weights import parse_config
from ..studies.study import Study
from .comparisons import Analysis, analyze
from .leaderboard import CD_PLOT, LEADERBOARD_CSV, cd_diagram, leaderboard
from .report import html_report, plot_all


@dataclass
class Comparison:
    study: Study
    table: pd.DataFrame
    pairs: pd.DataFrame
    folder: Path | None  # --out, where the report was written; None when not asked
    parents: dict
    registered: list
    analysis: Analysis
    leaderboard: dict | None = None  # a study over several data sets: ``leaderboard.leaderboard``


def recorded_study(recorder, name, frame):
    """The resolved study the latest sweep recorded on its parent runs."""
    parents = records.parents(frame)
    if not parents:
        raise HarnessError(f"study {name!r}: no sweep runs in {redact(recorder.uri)}; run `harness sweep` first")
    content = recorder.call("read_artifact", next(iter(parents.values())), STUDY_ARTIFACT)
    if content is None:
        raise HarnessError(
            f"study {name!r}: its parent runs hold no {STUDY_ARTIFACT} (swept by an older version); "
            "run its `harness sweep` command once more (it resumes: nothing finished is retrained)"
        )
    try:
        return Study.from_dict(json.loads(content))
    except (ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"study {name!r}: its {STUDY_ARTIFACT} cannot be read ({exc})") from None


def optuna_storage(study, uri, flag, frame):
    """The Optuna storage to draw Optuna's plots from: the one the user named (``--storage``,
    $HARNESS_OPTUNA_STORAGE), else a journal file inside this store's folder: the default place, or the
    one the parents' tag names if it lies there. Tags are input: nothing outside the store is opened."""
    import os

    if flag or os.environ.get("HARNESS_OPTUNA_STORAGE"):
        return flag or os.environ["HARNESS_OPTUNA_STORAGE"]
    store = sqlite_path(uri)
    if store is None:
        return None
    folder = store.parent.resolve()
    candidates = [folder / "optuna" / f"{study.name}.journal"]
    tagged = frame[frame["kind"] == "condition"]["run_id"] if len(frame) else []
    if len(tagged):
        tag = frame.loc[tagged.index[0]].get("tag.optuna_storage")
        if isinstance(tag, str) and (tag.startswith("journal:") or tag.endswith((".journal", ".log"))):
            candidates.append(Path(tag.removeprefix("journal:")))
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved.is_file() and resolved.is_relative_to(folder):
            return f"journal:{resolved}"
    return None


def register_best(recorder, study, frame):
    """Register each condition's best confirmed model (highest test accuracy, ties to the lowest seed)
    as ``<study>-<condition>``; returns [(name, version, run id)]."""
    _, confirm = records.current(study, frame)
    registered = []
    for condition in study.conditions:
        seeds = confirm[confirm["condition"] == condition.name] if len(confirm) else confirm
        if not len(seeds) or "metric.test_accuracy" not in seeds:
            continue
        best = seeds.sort_values(["metric.test_accuracy", "seed"], ascending=[False, True]).iloc[0]
        name = f"{study.name}-{condition.name}"
        missing = () if recorder.call("has_model", best["run_id"]) else model_to_log(recorder, best["run_id"])
        registered.append((name, recorder.call("register_model", best["run_id"], name, *missing), best["run_id"]))
    return registered


def model_to_log(recorder, run_id):
    """(artifacts, model example) to log the MLflow model of a seed that logged none (``confirm.models``)."""
    artifacts = {a: recorder.call("read_artifact", run_id, a) for a in (CONFIG_ARTIFACT, WEIGHTS_ARTIFACT)}
    if None in artifacts.values():
        raise HarnessError(f"run {run_id} has no {CONFIG_ARTIFACT} or {WEIGHTS_ARTIFACT} to log its model from")
    return artifacts, model_example(load_split(parse_config(artifacts[CONFIG_ARTIFACT], f"run {run_id}")))


COUNTS = (
    "trials",
    "failed_trials",
    "best_epochs",
    "seeds",
    "diverged_seeds",
    "seeds_diverged",
    "val_rows",
    "test_rows",
    "confirmed_after_trials",
    "leader_settles_at",
    "epochs_to_target_median",
    "seeds_needed",
    "seeds_for_equivalence",
)
"""Columns that count something: written as integers (``16``, not ``16.0``), an unknown count left empty."""


def with_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its count columns as pandas' nullable ``Int64`` when every value is a whole number (a
    count of infinity, or a median half-way between two epochs, leaves its column as it is)."""
    import numpy as np

    frame = frame.copy()
    for column in COUNTS:
        if column not in frame or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        known = frame[column].dropna().to_numpy(dtype=float)
        if np.isfinite(known).all() and (known == np.round(known)).all():
            frame[column] = frame[column].astype("Int64")
    return frame


def reached_as_counts(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``target_reached`` ("4/5", as printed) as two integer columns, ``seeds_reached_target``
    and ``seeds_confirmed``: in a CSV, "4/5" is text to pandas and a date (April 5) to a spreadsheet."""
    if "target_reached" not in table:
        return table
    table = table.copy()
    parts = table["target_reached"].astype(str).str.split("/", n=1, expand=True)
    at = table.columns.get_loc("target_reached")
    table = table.drop(columns="target_reached")
    for offset, name in enumerate(("seeds_reached_target", "seeds_confirmed")):
        table.insert(at + offset, name, pd.to_numeric(parts[offset], errors="coerce").astype("Int64"))
    return table


def table_files(analysis: Analysis, board: dict | None) -> dict[str, str]:
    """{file name: CSV text}, one table per file, counts as integers: the summary, the paired differences,
    the probability-quality tables (when the runs recorded probabilities) and the leaderboard (several data
    sets)."""
    tables = {"summary.csv": reached_as_counts(analysis.table), "paired_differences.csv": analysis.pairs}
    if analysis.calibration is not None:
        tables["calibration.csv"] = analysis.calibration
        tables["calibration_pairs.csv"] = analysis.calibration_pairs
    if board is not None:
        tables[LEADERBOARD_CSV] = board["frame"]
    return {name: with_counts(frame).to_csv(index=False) for name, frame in tables.items()}


def run_compare(study_name, uri, out_dir=None, storage=None, register=False, search_plots=None):
    """The comparison of a study's conditions from its records (``Comparison``). The report, its plots and
    tables go onto every condition's parent run, and into ``out_dir`` only when it is given (nothing is
    written to the working folder unasked). ``search_plots(study, storage, folder)`` adds the search's own
    plots (Optuna's, drawn by the sweep's side) to the report."""
    check_exists(uri, f"study {study_name!r}")
    check_writable(uri)  # the report goes onto the parent runs too
    recorder = InlineRecorder(uri)
    _, runs = recorder.call("study_runs", study_name)
    frame = records.records_frame(runs)
    study = recorded_study(recorder, study_name, frame)
    frame = records.fill_targets(recorder, study, frame)
    analysis = analyze(study, frame)
    folder = _out_folder(out_dir)
    with tempfile.TemporaryDirectory(prefix="harness-compare-") as scratch:
        artifacts, board = _report(study, frame, recorder, analysis, folder or Path(scratch), (storage, search_plots))
    parents = publish(recorder, study, frame, analysis.table, records.parents(frame), artifacts)
    registered = register_best(recorder, study, frame) if register else []
    return Comparison(study, analysis.table, analysis.pairs, folder, parents, registered, analysis, board)


def _out_folder(out_dir):
    if not out_dir:
        return None
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"--out {folder}: cannot create the report folder ({exc.strerror})") from None
    return folder


def _report(study, frame, recorder, analysis, folder, search):
    """Draw the plots, the report and the tables into ``folder``; returns ({file name: bytes}, leaderboard)."""
    storage, search_plots = search
    images = plot_all(study, frame, records.Curves(recorder), folder, analysis)
    board = leaderboard(study, analysis)
    if board is not None:
        cd_diagram(board, f"{study.name}: mean ranks of test accuracy, Nemenyi CD").savefig(folder / CD_PLOT)
        images.insert(0, folder / CD_PLOT)
    storage = optuna_storage(study, recorder.uri, storage, frame)
    if storage and search_plots is not None:
        images += search_plots(study, storage, folder)
    files = {name: text.encode() for name, text in table_files(analysis, board).items()}
    files["report.html"] = html_report(study, analysis, images, board).encode()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {**{p.name: p.read_bytes() for p in images}, **files}, board
