"""The per-condition summary of a sweep: best settings, scores, and how reliable they are.

Built from the trial records (Optuna's storage holds every trial's state, settings and scores), so it
is cheap to print at the end of every sweep. The 95% confidence interval of the test accuracy is the
Student t interval over the confirmation seeds: mean +- t(0.975, n-1) * sd / sqrt(n).
"""
import math

import numpy as np
import pandas as pd

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
    low, high, v = (math.log(x) for x in (param.low, param.high, value)) if param.log else \
        (param.low, param.high, value)
    position = (v - low) / (high - low)
    if position <= EDGE:
        return f"{param.name}:low"
    if position >= 1 - EDGE:
        return f"{param.name}:high"
    return None


def summarize(study, rows):
    """One row per condition, in the study's condition order."""
    frame = pd.DataFrame(rows)
    table = []
    for condition in study.conditions:
        part = frame[frame["condition"] == condition.name] if len(frame) else frame
        search = part[part["phase"] == "search"] if len(part) else part
        confirm = part[(part["phase"] == "confirm") & (part["optuna_state"] == "COMPLETE")] if len(part) else part
        state = search["state"] if "state" in search else pd.Series(dtype=object)
        finished = search[search["optuna_state"].isin(["COMPLETE", "PRUNED"])] if len(search) else search
        n = len(finished)
        complete = finished[(finished["optuna_state"] == "COMPLETE") & (state.reindex(finished.index) != "diverged")] \
            if n else finished
        row = {"condition": condition.name, "trials": n,
               "pruned_share": (finished["optuna_state"] == "PRUNED").sum() / n if n else math.nan,
               "diverged_share": (state.reindex(finished.index) == "diverged").sum() / n if n else math.nan,
               "failed_trials": int((search["optuna_state"] == "FAIL").sum()) if len(search) else 0}
        best = None
        if len(complete):
            values = complete["value"].astype(float)
            best = complete.loc[values.idxmax() if study.direction == "maximize" else values.idxmin()]
        edges = []
        for param in study.search:
            value = None if best is None else best.get(param.name)
            row[f"best_{param.name}"] = value
            edge = edge_of(param, value)
            if edge:
                edges.append(edge)
        row[f"best_{study.objective}"] = None if best is None else float(best["value"])
        row["at_edge"] = ",".join(edges)
        accuracies = confirm["test_accuracy"].astype(float).tolist() if "test_accuracy" in confirm else []
        mean, low, high = t_interval(accuracies)
        row.update({"test_accuracy_mean": mean, "test_accuracy_ci_low": low, "test_accuracy_ci_high": high,
                    "seeds": len(accuracies)})
        targets = confirm["epochs_to_target"].tolist() if "epochs_to_target" in confirm else []
        reached = [int(t) for t in targets if t is not None and not (isinstance(t, float) and math.isnan(t))]
        row["epochs_to_target_median"] = float(np.median(reached)) if reached else math.nan
        row["target_reached"] = f"{len(reached)}/{len(targets)}"
        table.append(row)
    return pd.DataFrame(table)


def format_table(study, table):
    shown = table.copy()
    for column in ("pruned_share", "diverged_share"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    shown["test_accuracy (95% CI)"] = [
        "n/a" if pd.isna(m) else (f"{m:.4f}" if pd.isna(lo) else f"{m:.4f} [{lo:.4f}, {hi:.4f}]")
        for m, lo, hi in zip(table["test_accuracy_mean"], table["test_accuracy_ci_low"],
                             table["test_accuracy_ci_high"])]
    shown["epochs_to_target"] = [
        f"{'n/a' if pd.isna(m) else f'{m:g}'} ({r})" for m, r in zip(table["epochs_to_target_median"],
                                                                     table["target_reached"])]
    columns = ["condition", *[f"best_{p.name}" for p in study.search], f"best_{study.objective}",
               "test_accuracy (95% CI)", "epochs_to_target", "trials", "pruned_share", "diverged_share",
               "at_edge"]
    formatters = {f"best_{p.name}": (lambda v: "" if v is None or pd.isna(v) else f"{v:.4g}")
                  for p in study.search}
    formatters[f"best_{study.objective}"] = lambda v: "" if v is None or pd.isna(v) else f"{v:.4f}"
    text = shown[columns].to_string(index=False, formatters=formatters)
    warnings = [f"warning: {row.condition}: best {edge.split(':')[0]} sits at the {edge.split(':')[1]} edge of "
                "its search range; widen the range" for row in table.itertuples() for edge in row.at_edge.split(",")
                if edge]
    note = (f"epochs_to_target: median epoch at which validation accuracy first reached "
            f"{study.target_accuracy:g} over the confirmation seeds (reached/seeds; the rest are censored)")
    return "\n".join([text, note, *warnings])
