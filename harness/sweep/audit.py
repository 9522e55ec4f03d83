"""Check a finished sweep's records: what must hold after any kill, resume, extension or failure.

Used by the tests and by ``scripts/kill_resume_loop.py``; each problem is one line. What is checked:
every condition's search met its budget (the largest asked so far) exactly, with unique trial numbers;
nothing is left RUNNING or WAITING, and no run FINISHED without its results; every finished trial has
exactly one run holding its results, with one curve point per epoch run; every wanted confirmation seed
has one such run; the counted runs of a condition trained on one data set, with settings inside the
search ranges; the parents hold the study at that budget; and the summary the records give is the one
given (the sweep's printed summary).
"""

import dataclasses
import json
import math

import pandas as pd

from ..analysis.comparisons import analyze
from ..records import table as records
from ..records.operations import HARNESS_TAG
from ..records.runs import FINAL_STATES
from ..records.table import STUDY_ARTIFACT, current, fill_targets, records_frame
from ..records.tags import STATE
from .conditions import trial_rows
from .reconcile import artifacts_present
from .storages import open_storage
from .studies import budget_asked_before, existing_searches


def audit(study, storage_url, recorder, printed_summary=None):
    """Problems found in a sweep's records, one line each ([] when they are right). ``study``: as the
    command was given it; it is held at the largest budget asked before, as the sweep holds it."""
    storage, _ = open_storage(storage_url, study.name)
    study = dataclasses.replace(study, trials=max(study.trials, budget_asked_before(study, storage)))
    searches = existing_searches(study, storage)
    study = dataclasses.replace(study, search_ids={n: s.user_attrs.get("search_id") for n, s in searches.items()})
    trials = trial_rows(study, storage)
    _, runs = recorder.call("study_runs", study.name)
    frame = fill_targets(recorder, study, records_frame(runs))
    problems = (
        _unsettled(trials, runs, {None, *study.confirm_seed_values()})
        + _recorded_study(recorder, study, frame)
        + _data_and_ranges(study, frame)
    )
    for condition in study.conditions:
        problems += _condition(recorder, study, condition, trials, frame)
    if printed_summary is not None:
        expected = analyze(study, frame).table.to_dict(orient="records")
        if not _same_rows(expected, printed_summary):
            problems.append(f"the printed summary differs from the records' summary: {printed_summary} != {expected}")
    return problems


LOST = ("artifacts_lost",)
"""A run set aside because its files were deleted (its trial was trained again)."""


def _unsettled(trials, runs, wanted):
    """Nothing left RUNNING, no wanted seed WAITING (a seed queued for a larger ``--confirm-seeds`` stays
    queued for the next one that wants it), and no run FINISHED without its results (its ``state`` tag
    is written after its curves and artifacts: a FINISHED run without a final one lost them)."""
    problems = [
        f"{t['optuna_study']} trial {t['number']} is still {t['optuna_state']}"
        for t in trials
        if t["optuna_state"] == "RUNNING" or (t["optuna_state"] == "WAITING" and t["seed"] in wanted)
    ]
    for run in runs:
        if run["status"] == "RUNNING":
            problems.append(f"run {run['run_id']} ({run['run_name']}) is still RUNNING")
        kind, state = run["tags"].get(HARNESS_TAG), run["tags"].get(STATE)
        if run["status"] == "FINISHED" and kind in ("search", "confirm") and state not in FINAL_STATES + LOST:
            problems.append(f"run {run['run_id']} ({run['run_name']}) is FINISHED without its results (state={state})")
        if state in FINAL_STATES and run["status"] == "FINISHED" and not artifacts_present(run):
            problems.append(f"run {run['run_id']} ({run['run_name']}) holds results but its artifacts are gone")
    return problems


def _recorded_study(recorder, study, frame):
    """The parents hold the study as it ran; a smaller budget there than asked before is a reverted result."""
    parents = records.parents(frame)
    content = recorder.call("read_artifact", next(iter(parents.values())), STUDY_ARTIFACT) if parents else None
    if content is None:
        return ["the parent runs hold no study.json"] if parents else []
    recorded = json.loads(content)
    if recorded.get("trials") != study.trials:
        return [
            f"the parents' study.json says {recorded.get('trials')} trials; the study was extended to {study.trials}"
        ]
    return []


def _data_and_ranges(study, frame):
    """Every counted run trained on one data set per condition, with settings inside today's ranges."""
    search, confirm = current(study, frame)
    problems = []
    runs = pd.concat([search, confirm]) if "split" not in study.confirm_vary else search  # seeds' own splits
    for condition, group in runs.groupby("condition") if len(search) else ():
        digests = group["dataset_digest"].dropna().unique()
        if len(digests) > 1:
            problems.append(f"condition {condition}: its counted runs trained on {len(digests)} different data sets")
    for param in study.search:
        column = f"param.{param.name}"
        if column not in search or param.choices is not None:
            continue
        values = search[column].astype(float)
        outside = search[(values < float(param.low)) | (values > float(param.high))]
        for row in outside.itertuples():
            problems.append(
                f"run {row.run_id}: {param.name} = {row._asdict()[column]} lies outside the search "
                f"range [{param.low}, {param.high}]"
            )
    return problems


def _condition(recorder, study, condition, trials, frame):
    """The budget met exactly, trial numbers unique, one run holding each finished trial's results and
    each wanted seed's."""
    search, confirm = current(study, frame)
    name, problems = study.optuna_name(condition), []
    own = [t for t in trials if t["optuna_study"] == name]
    numbers = [t["number"] for t in own]
    if len(numbers) != len(set(numbers)):
        problems.append(f"{name}: trial numbers repeat")
    finished = [t for t in own if t["optuna_state"] in ("COMPLETE", "PRUNED")]
    if len(finished) != study.trials:
        problems.append(f"{name}: {len(finished)} finished search trials, budget {study.trials}")
    held = search[search["optuna_study"] == name] if len(search) else search
    for t in finished:
        rows = held[held["trial"] == t["number"]] if len(held) else held
        if len(rows) != 1:
            problems.append(f"{name} trial {t['number']}: {len(rows)} runs hold its results, not 1")
            continue
        _check_curve(recorder, rows.iloc[0], t["attrs"].get("epochs_run"), problems)
    confirm_name = study.optuna_name(condition, "confirm")
    seeds = confirm[confirm["optuna_study"] == confirm_name] if len(confirm) else confirm
    finite = any(t["optuna_state"] == "COMPLETE" and _finite(t["value"]) for t in own)
    for seed in study.confirm_seed_values():
        if not finite:  # nothing to confirm: each seed is told to Optuna as skipped, and has no run
            skipped = [t for t in trials if t["optuna_study"] == confirm_name and t["seed"] == seed]
            if [t["state"] for t in skipped if t["optuna_state"] == "COMPLETE"] != ["skipped"]:
                problems.append(f"{confirm_name} seed {seed}: no search trial is finite, and the seed is not skipped")
            continue
        count = int((seeds["seed"] == seed).sum()) if len(seeds) else 0
        if count != 1:
            problems.append(f"{confirm_name} seed {seed}: {count} runs hold its results, not 1")
    return problems


def _finite(value):
    return value is not None and math.isfinite(value)


def _check_curve(recorder, row, epochs_run, problems):
    curve = recorder.call("metric_histories", row["run_id"], ["val_accuracy"])["val_accuracy"]
    if epochs_run is not None and len(curve) != int(epochs_run):
        problems.append(f"run {row['run_id']}: {len(curve)} val_accuracy points for {epochs_run} epochs run")


def _same_rows(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if set(x) != set(y):
            return False
        for key in x:
            u, v = x[key], y[key]
            missing = lambda value: value is None or (isinstance(value, float) and math.isnan(value))  # noqa: E731
            if missing(u) and missing(v):
                continue
            if u != v:
                return False
    return True
