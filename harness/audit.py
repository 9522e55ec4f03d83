"""Check a finished sweep's records: what must hold after any kill, resume, extension or failure.

Used by the tests and by ``scripts/kill_resume_loop.py``; each problem is one line. What is checked:
every condition's search met its budget exactly, with unique trial numbers; nothing is left RUNNING in
Optuna or MLflow; every finished trial has exactly one run holding its results, with one curve point
per epoch run; every wanted confirmation seed has one such run; and the summary the records give is
the one given (the sweep's printed summary).
"""

import math

from .analysis import analyze
from .records import current, fill_targets, records_frame
from .search import open_storage, trial_rows


def audit(study, storage_url, recorder, printed_summary=None):
    problems = []
    storage, _ = open_storage(storage_url, study.name)
    trials = trial_rows(study, storage)
    _, runs = recorder.call("study_runs", study.name)
    frame = fill_targets(recorder, study, records_frame(runs))
    search, confirm = current(study, frame)
    for t in trials:
        if t["optuna_state"] in ("RUNNING", "WAITING"):
            problems.append(f"{t['optuna_study']} trial {t['number']} is still {t['optuna_state']}")
    for run in runs:
        if run["status"] == "RUNNING":
            problems.append(f"run {run['run_id']} ({run['run_name']}) is still RUNNING")
    for condition in study.conditions:
        name = study.optuna_name(condition)
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
        for seed in study.confirm_seed_values():
            count = int((seeds["seed"] == seed).sum()) if len(seeds) else 0
            if count != 1:
                problems.append(f"{confirm_name} seed {seed}: {count} runs hold its results, not 1")
    if printed_summary is not None:
        expected = analyze(study, frame).table.to_dict(orient="records")
        if not _same_rows(expected, printed_summary):
            problems.append(f"the printed summary differs from the records' summary: {printed_summary} != {expected}")
    return problems


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
