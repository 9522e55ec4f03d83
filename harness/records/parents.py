"""A condition's parent run is the condition's result: what the MLflow UI shows without a filter typed.

Each parent carries its summary row as metrics (test accuracy and its interval, the best validation
score, epochs to target, pruned and diverged shares, trials), its best settings as params, a
description in words, and, named after its trials' curves (``val_accuracy_seeds_mean``,
``train_loss_seeds_mean``, ...), the mean over its confirmation seeds at each epoch: selecting the parents
and pressing Compare overlays the conditions' curves. The suffix says what they are: the seeds' mean
``val_accuracy`` may end above ``best_val_accuracy``, one search trial's score, and is no contradiction.
A result is written once; when it changes (a sweep
extended with more trials, more seeds), the condition gets a new parent run and its trials move
under it, since MLflow neither changes a param nor forgets a metric's points.
"""

import hashlib
import json
import math

import numpy as np

from ..engine.calibration import FIGURES
from .notes import NOTE_TAG, escape
from .table import current

NOT_CURVES = {
    "epochs_run",
    "diverged_epoch",
    "last_finite_loss",
    "train_seconds",
    "temperature",
    *(f"val_{ts}{figure}" for ts in ("", "ts_") for figure in FIGURES if ts or figure != "cross_entropy"),
}
"""Final values of a run, not per-epoch curves (nor are the ``test_`` scores): its probability quality on
validation is measured once, at the end (``val_cross_entropy`` itself is a curve)."""


PROBABILITY_MEANS = (
    "test_ece_mean",
    "test_classwise_ece_mean",
    "test_cross_entropy_mean",
    "test_brier_mean",
    "test_confidence_mean",
    "temperature_mean",
    "test_ts_ece_mean",
    "test_ts_cross_entropy_mean",
)
"""Probability quality over the seeds that finished (``analysis.calibration_comparison``), where the runs
recorded it."""


def results(study, frame, table, curve):
    """{condition: result} where result = {"metrics", "params", "points", "note", "digest"}; conditions
    with no confirmation yet are left out. ``curve(run_id, key)`` -> per-epoch values."""
    _, confirm = current(study, frame)
    out = {}
    for row in table.to_dict(orient="records"):
        seeds = confirm[confirm["condition"] == row["condition"]] if len(confirm) else confirm
        if not len(seeds):
            continue
        metrics = summary_metrics(study, row)
        params = {f"best.{p.name}": row.get(f"best_{p.name}") for p in study.search}
        params = {k: v for k, v in params.items() if v is not None}
        points = mean_curves(seeds, curve)
        note = describe(study, study.condition(row["condition"]), row)
        content = json.dumps([metrics, params, points, note], sort_keys=True, default=str)
        out[row["condition"]] = {
            "metrics": metrics,
            "params": params,
            "points": points,
            "note": note,
            "digest": hashlib.sha256(content.encode()).hexdigest()[:16],
        }
    return out


def summary_metrics(study, row):
    """The summary row's numbers under names that read well in the UI's columns (NaN left out). The seed
    mean is ``test_accuracy_mean``, not the seeds' own ``test_accuracy``: ``metrics.test_accuracy > 0.9``
    selects seeds, never a parent."""
    reached, seeds = (int(x) for x in row["target_reached"].split("/"))
    values = {
        "test_accuracy_mean": row["test_accuracy_mean"],
        "test_accuracy_ci_low": row["test_accuracy_ci_low"],
        "test_accuracy_ci_high": row["test_accuracy_ci_high"],
        f"best_{study.objective}": row.get(f"best_{study.objective}"),
        "epochs_to_target": row["epochs_to_target_median"],
        "target_reached_share": reached / seeds if seeds else math.nan,
        "pruned_share": row["pruned_share"],
        "diverged_share": row["diverged_share"],
        "trials": row["trials"],
        "seeds": row["seeds"],
        "good_lr_decades": row.get("good_lr_decades"),
        "diverged_lr_share": row.get("diverged_lr_share"),
        **{key: row.get(key) for key in PROBABILITY_MEANS},
    }
    return {k: float(v) for k, v in values.items() if v is not None and not _missing(v)}


MEAN_SUFFIX = "_seeds_mean"
"""A parent's curve: ``<the seeds' curve>_seeds_mean`` (listed after the results, as the curves were)."""


def mean_curves(seeds, curve):
    """(key, value, step) points: at each epoch, the mean over the seeds that ran it (``MEAN_SUFFIX``)."""
    keys = sorted(k[len("metric.") :] for k in seeds.columns if k.startswith("metric.") and seeds[k].notna().any())
    keys = [k for k in keys if k not in NOT_CURVES and not k.startswith("test_")]
    if hasattr(curve, "prefetch"):  # every seed's curves in one read
        curve.prefetch(list(seeds["run_id"]), keys)
    points = []
    for key in keys:
        curves = [c for c in (curve(run_id, key) for run_id in seeds["run_id"]) if c]
        for epoch in range(max((len(c) for c in curves), default=0)):
            values = [c[epoch] for c in curves if len(c) > epoch]
            points.append((key + MEAN_SUFFIX, float(np.mean(values)), epoch + 1))
    return points


def describe(study, condition, row):
    """The condition in words (Markdown, every value escaped: ``notes.escape``): what it sets, what was
    searched, what won, how sure."""
    settings = ", ".join(f"{k} = {v}" for k, v in condition.settings.items())
    fixed = ", ".join(f"{k} = {v}" for k, v in study.fixed.items())
    searched = ", ".join(
        f"{p.name} in {p.choices}" if p.choices else f"{p.name} in [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}"
        for p in study.search
    )
    best = ", ".join(
        f"{p.name} {row[f'best_{p.name}']:.4g}" for p in study.search if row.get(f"best_{p.name}") is not None
    )
    mean, low, high = row["test_accuracy_mean"], row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]
    accuracy = "n/a" if _missing(mean) else f"{mean:.4f}" + ("" if _missing(low) else f" [{low:.4f}, {high:.4f}]")
    return f"**{escape(condition.name)}**: {escape(settings)}.\n\n" + escape(
        f"Shared by every condition of study {study.name}: {fixed}.\n\n"
        f"Searched with {row['trials']} trials ({study.sampler}, pruner {study.pruner}): {searched}; best: "
        f"{best or 'none'} (best_{study.objective}: that one search trial's score).\n\n"
        f"Test accuracy over {row['seeds']} confirmation seeds: {accuracy} (95% interval). The curves "
        f"<metric>{MEAN_SUFFIX} are the mean over those seeds at each epoch: each seed trains the best "
        "settings again with its own seed, so their mean can end above or below the best trial's score."
    )


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def publish(recorder, study, frame, table, parent_ids, artifacts=None):
    """Write every condition's result onto its parent (``operations.publish_result``), with ``artifacts``;
    returns {condition: parent run id}, new ids where a parent was replaced by a new generation."""
    from .table import STUDY_ARTIFACT, Curves

    resolved = json.dumps(study.to_dict(), indent=1, default=str).encode()  # a new parent needs it too
    artifacts = {**(artifacts or {}), STUDY_ARTIFACT: resolved}
    found = results(study, frame, table, Curves(recorder))
    ids = dict(parent_ids)
    for condition, result in found.items():
        ids[condition] = recorder.call("publish_result", parent_ids[condition], result, artifacts)
    for condition in set(parent_ids) - set(found):
        recorder.call("write_artifacts", parent_ids[condition], artifacts)
    return ids


def models_elsewhere(study, frame):
    """{seed run id: its condition's model run id} for the confirmation seeds that logged no MLflow model
    (``confirm.models = "first"``) and do not say so yet. Why: loading such a seed's model gave MLflow's
    generic "Failed to download artifacts"; its run page now names the run that has the model."""
    if study.confirm_models == "every" or frame.empty:
        return {}
    first = study.confirm_seed_values()[0]
    confirm = frame[(frame["kind"] == "confirm") & ~frame["superseded"]]
    out = {}
    for _, runs in confirm.groupby(["condition", "optuna_study"]):
        holder = runs[(runs["seed"] == first) & (runs["state"] == "complete")]
        if holder.empty:
            continue  # the first seed diverged or failed: the condition has no model to point at
        model_run = holder["run_id"].iloc[0]
        others = runs[(runs["seed"] != first) & (runs["model_run"] != model_run)]
        out.update(dict.fromkeys(others["run_id"], model_run))
    return out


def model_note(run_id, model_run):
    """The tags that tell a seed without a model where its condition's model is."""
    from .table import MODEL_RUN_TAG

    return {
        MODEL_RUN_TAG: model_run,
        NOTE_TAG: escape(
            f'This seed logged no MLflow model (confirm.models = "first"): its condition\'s model is on run '
            f"{model_run}. "
        )
        + f"`harness predict {run_id} ROWS.csv` and `harness export {run_id}` work for this seed from its "
        + escape("weights.npz."),
    }
