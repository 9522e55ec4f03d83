"""The per-condition summary of a sweep: best settings, scores, and how reliable they are.

Built from the table of records (``records``): the runs MLflow holds, so the summary a sweep prints and
the table ``harness compare`` prints are one computation over one set of records. The 95% confidence
interval of the test accuracy is the Student t interval over the confirmation seeds:
mean +- t(0.975, n-1) * sd / sqrt(n).
"""

import math

import numpy as np
import pandas as pd

from .records import current

EDGE = 0.05
"""A best value within 5% of either end of its range (in log space for log ranges) is 'at the edge'."""


def t_interval(values, level=0.95):
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def edge_of(param, value):
    if param.choices is not None or value is None:
        return None
    low, high, v = (
        (math.log(x) for x in (param.low, param.high, value)) if param.log else (param.low, param.high, value)
    )
    position = (v - low) / (high - low)
    if position <= EDGE:
        return f"{param.name}:low"
    if position >= 1 - EDGE:
        return f"{param.name}:high"
    return None


def summarize(study, frame):
    """One row per condition, in the study's condition order, from the table of records
    (``records.records_frame``): the end-of-sweep summary and ``compare``'s table are this function."""
    search, confirm = current(study, frame)
    failed = frame[(frame["kind"] == "search") & (frame["state"] == "failed")] if len(frame) else frame
    table = []
    for condition in study.conditions:
        trials = search[search["condition"] == condition.name] if len(search) else search
        seeds = confirm[confirm["condition"] == condition.name] if len(confirm) else confirm
        n = len(trials)
        states = trials["state"] if n else pd.Series(dtype=object)
        row = {
            "condition": condition.name,
            "trials": n,
            "pruned_share": float((states == "pruned").mean()) if n else math.nan,
            "diverged_share": float((states == "diverged").mean()) if n else math.nan,
            "failed_trials": int((failed["condition"] == condition.name).sum()) if len(failed) else 0,
        }
        best = best_trial_run(study, trials, seeds)
        edges = []
        for param in study.search:
            value = None if best is None else _typed(param, best.get(f"param.{param.name}"))
            row[f"best_{param.name}"] = value
            edge = edge_of(param, value)
            if edge:
                edges.append(edge)
        row[f"best_{study.objective}"] = None if best is None else float(best[f"metric.{study.objective}"])
        row["at_edge"] = ",".join(edges)
        accuracies = seeds["metric.test_accuracy"].astype(float).tolist() if "metric.test_accuracy" in seeds else []
        mean, low, high = t_interval(accuracies)
        row.update(
            {
                "test_accuracy_mean": mean,
                "test_accuracy_ci_low": low,
                "test_accuracy_ci_high": high,
                "seeds": len(accuracies),
            }
        )
        reached = [e for e in seeds["epochs_to_target"].tolist() if not math.isnan(e)] if len(seeds) else []
        row["epochs_to_target_median"] = float(np.median(reached)) if reached else math.nan
        row["target_reached"] = f"{len(reached)}/{len(seeds)}"
        table.append(row)
    return pd.DataFrame(table)


def best_trial_run(study, trials, seeds):
    """The search run the confirmation retrained; before any confirmation, the best complete one
    (ties to the lowest trial number, as Optuna's pick)."""
    complete = trials[trials["state"] == "complete"] if len(trials) else trials
    column = f"metric.{study.objective}"
    if not len(complete) or column not in complete:
        return None
    chosen = seeds["best_search_trial"].dropna().unique() if len(seeds) else []
    if len(chosen) == 1:
        match = complete[complete["trial"] == int(chosen[0])]
        if len(match):
            return match.iloc[0]
    values = complete[column].astype(float)
    best = values.max() if study.direction == "maximize" else values.min()
    return complete[values == best].sort_values("trial").iloc[0]


def paired_differences(study, frame):
    """Test-accuracy difference per pair of conditions over the confirmation seeds both trained."""
    _, confirm = current(study, frame)
    by_condition = {
        c.name: dict(
            zip(
                confirm[confirm["condition"] == c.name]["seed"],
                confirm[confirm["condition"] == c.name]["metric.test_accuracy"],
            )
        )
        if len(confirm)
        else {}
        for c in study.conditions
    }
    rows = []
    names = [c.name for c in study.conditions]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            seeds = sorted(set(by_condition[a]) & set(by_condition[b]))
            diffs = [by_condition[a][s] - by_condition[b][s] for s in seeds]
            mean, low, high = t_interval(diffs)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "seeds": len(seeds),
                    "mean_difference": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "significant": bool(not math.isnan(low) and (low > 0 or high < 0)),
                }
            )
    return pd.DataFrame(rows, columns=["a", "b", "seeds", "mean_difference", "ci_low", "ci_high", "significant"])


def _typed(param, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if param.choices is not None:
        return next((c for c in param.choices if str(c) == str(value)), value)
    return int(value) if param.is_int else float(value)


def format_table(study, table):
    shown = table.copy()
    for column in ("pruned_share", "diverged_share"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    shown["test_accuracy (95% CI)"] = [
        "n/a" if pd.isna(m) else (f"{m:.4f}" if pd.isna(lo) else f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
        for m, lo, hi in zip(table["test_accuracy_mean"], table["test_accuracy_ci_low"], table["test_accuracy_ci_high"])
    ]
    shown["epochs_to_target"] = [
        f"{'n/a' if pd.isna(m) else f'{m:g}'} ({r})"
        for m, r in zip(table["epochs_to_target_median"], table["target_reached"])
    ]
    columns = [
        "condition",
        *[f"best_{p.name}" for p in study.search],
        f"best_{study.objective}",
        "test_accuracy (95% CI)",
        "epochs_to_target",
        "trials",
        "pruned_share",
        "diverged_share",
        "at_edge",
    ]
    formatters = {f"best_{p.name}": (lambda v: "" if v is None or pd.isna(v) else f"{v:.4g}") for p in study.search}
    formatters[f"best_{study.objective}"] = lambda v: "" if v is None or pd.isna(v) else f"{v:.4f}"
    text = shown[columns].to_string(index=False, formatters=formatters)
    warnings = [
        f"warning: {row.condition}: best {edge.split(':')[0]} sits at the {edge.split(':')[1]} edge of "
        "its search range; widen the range"
        for row in table.itertuples()
        for edge in row.at_edge.split(",")
        if edge
    ]
    note = (
        f"epochs_to_target: median epoch at which validation accuracy first reached "
        f"{study.target_accuracy:g} over the confirmation seeds (reached/seeds; the rest are censored)"
    )
    return "\n".join([text, note, *warnings])


def render(frame, fmt):
    """A result table as csv, markdown, or plain text (numbers to 4 significant digits)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "markdown":
        columns = list(frame.columns)
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in frame.itertuples(index=False):
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        return "\n".join(lines)
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)
