"""The per-condition summary of a sweep: best settings, scores, and how reliable they are.

Built from the table of records (``records``): the runs MLflow holds, so the summary a sweep prints and
the table ``harness compare`` prints are one computation over one set of records. The test accuracy's
95% interval is the Student t interval over the confirmation seeds, clipped to [0, 1], and none with
fewer than 3 seeds; epochs to target is a Kaplan-Meier median (``stats``).
"""

import math

import pandas as pd

from ..records.table import current, result_budget
from . import stats

EDGE = 0.05
"""A best value within 5% of either end of its range (in log space for log ranges) is 'at the edge'."""


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
    (``table.records_frame``): the end-of-sweep summary and ``compare``'s table are this function."""
    search, confirm = current(study, frame)
    budget = result_budget(study, frame)
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
        mean, low, high = stats.bounded_mean_interval(accuracies)
        row.update(
            {
                "test_accuracy_mean": mean,
                "test_accuracy_ci_low": math.nan if low is None else low,
                "test_accuracy_ci_high": math.nan if high is None else high,
                "seeds": len(accuracies),
                "diverged_seeds": int((seeds["state"] == "diverged").sum()) if len(seeds) else 0,
            }
        )
        times, reached = epochs_to_target(seeds)
        median = stats.kaplan_meier_median(times, reached) if times else None
        row["epochs_to_target_median"] = math.nan if median is None else float(median)
        row["target_reached"] = f"{sum(reached)}/{len(seeds)}"
        row["confirmed_after_trials"] = budget
        row["best_trial_run_id"] = None if best is None else best["run_id"]
        row["best_seed_run_id"] = best_seed_run(seeds)
        table.append(row)
    return pd.DataFrame(table)


def epochs_to_target(seeds):
    """(times, reached) per confirmation seed for Kaplan-Meier: the epoch it reached the target, else the
    last epoch it ran (censored); a seed that diverged never reaches it (censored at infinity), rather than
    leaving the seeds at risk early and flattering the median."""
    if not len(seeds):
        return [], []
    ran = seeds["metric.epochs_run"] if "metric.epochs_run" in seeds else pd.Series(math.nan, index=seeds.index)
    times, reached = [], []
    for epoch, last, state in zip(seeds["epochs_to_target"], ran, seeds["state"]):
        hit = not pd.isna(epoch)
        if state == "diverged" and not hit:
            last = math.inf
        if hit or not pd.isna(last):
            times.append(float(epoch if hit else last))
            reached.append(hit)
    return times, reached


def best_seed_run(seeds):
    """The confirmation run with the highest test accuracy (ties: the lowest seed), the one to reproduce
    or to register; None before any confirmation."""
    if not len(seeds) or "metric.test_accuracy" not in seeds:
        return None
    return seeds.sort_values(["metric.test_accuracy", "seed"], ascending=[False, True]).iloc[0]["run_id"]


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


def _typed(param, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if param.choices is not None:
        return next((c for c in param.choices if str(c) == str(value)), value)
    return int(value) if param.is_int else float(value)


def format_table(study, table):
    """Two narrow tables (results, then tuning), the notes that say how to read them, and edge warnings."""
    import textwrap

    results, tuning, notes = table_frames(study, table)
    wrapped = [textwrap.fill(n, 110, subsequent_indent="  ") for n in notes]
    runs = pd.DataFrame(
        {
            "condition": table["condition"],
            "best seed's run (reproduce it)": table["best_seed_run_id"].fillna(""),
            "best search trial's run": table["best_trial_run_id"].fillna(""),
        }
    )
    tables = [results.to_string(index=False), "", tuning.to_string(index=False), "", runs.to_string(index=False)]
    return "\n".join([*tables, *wrapped])


def table_frames(study, table):
    """(results, tuning, notes): the summary as two narrow tables with readable headers."""
    results = pd.DataFrame({"condition": table["condition"]})
    results["test accuracy [95% CI]"] = [
        ("n/a" if pd.isna(m) else (f"{m:.4f}" if pd.isna(lo) else f"{m:.4f} [{lo:.4f}, {hi:.4f}]"))
        + (f" ({d} of {n} seeds diverged)" if d else "")
        for m, lo, hi, d, n in zip(
            table["test_accuracy_mean"],
            table["test_accuracy_ci_low"],
            table["test_accuracy_ci_high"],
            table["diverged_seeds"],
            table["seeds"],
        )
    ]
    results[f"epochs to {study.target_accuracy:g}"] = [
        f"{'n/a' if pd.isna(m) else f'{m:g}'} ({r})"
        for m, r in zip(table["epochs_to_target_median"], table["target_reached"])
    ]
    results[f"best {study.objective}"] = table[f"best_{study.objective}"].map(_number)
    for p in study.search:
        results[f"best {p.name}"] = table[f"best_{p.name}"].map(_number)
    tuning = pd.DataFrame({"condition": table["condition"], "trials": table["trials"]})
    tuning["pruned"] = table["pruned_share"].map(_share)
    tuning["diverged"] = table["diverged_share"].map(_share)
    if "good_lr_decades" in table:
        tuning["good lr (decades)"] = table["good_lr_decades"].map(lambda v: "" if pd.isna(v) else f"{v:.2g}")
        tuning["lr range diverging"] = table["diverged_lr_share"].map(_share)
        tuning["ranking settles at k"] = table["ranking_settles_at"].map(lambda v: "" if pd.isna(v) else f"{int(v)}")
    notes = (
        []
        if table.empty or table["confirmed_after_trials"].iloc[0] >= study.trials
        else [
            f"the test accuracies are the confirmation after {table['confirmed_after_trials'].iloc[0]} trials per "
            f"condition: the extension to {study.trials} has not finished (run its sweep again to finish it)"
        ]
    )
    notes += [
        f"epochs to {study.target_accuracy:g}: Kaplan-Meier median epoch at which validation accuracy first reached "
        f"{study.target_accuracy:g} (reached/seeds; the others are censored); no interval with fewer than 3 seeds",
    ]
    if "good_lr_decades" in table:
        notes.append(
            "good lr: width of the learning rates scoring within "
            f"{'1 point' if study.objective.endswith('accuracy') else '5%'} of the best; ranking settles at k: "
            "trials per condition after which the ranking by expected best score stops changing"
        )
    warnings = [
        f"warning: {row.condition}: best {edge.split(':')[0]} sits at the {edge.split(':')[1]} edge of "
        "its search range; widen the range"
        for row in table.itertuples()
        for edge in row.at_edge.split(",")
        if edge
    ]
    return results, tuning, notes + warnings


def format_findings(sentences):
    """The findings as a short list above the tables."""
    import textwrap

    if not sentences:
        return ""
    lines = ["findings:"]
    for sentence in sentences:
        lines += textwrap.wrap(sentence, 110, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines) + "\n"


def format_pairs(analysis):
    """Paired differences (within each data set), Holm-adjusted; then the factors' effects."""
    pairs = analysis.pairs
    if not len(pairs):
        return "paired differences: fewer than 2 conditions per data set"
    shown = pd.DataFrame(
        {
            "a - b": [f"{a} - {b}" for a, b in zip(pairs["a"], pairs["b"])],
            "seeds": pairs["seeds"],
            "difference [95% CI]": [
                f"{_signed(m)}" + ("" if lo is None or pd.isna(lo) else f" [{_signed(lo)}, {_signed(hi)}]")
                for m, lo, hi in zip(pairs["mean_difference"], pairs["ci_low"], pairs["ci_high"])
            ],
            "p": pairs["p_value"].map(_p),
            "p Holm": pairs["p_holm"].map(_p),
            "significant": pairs["significant"].map(lambda s: "yes" if s else "no"),
        }
    )
    if pairs["dataset"].nunique() > 1:
        shown.insert(0, "data set", pairs["dataset"])
    lines = [
        "paired differences of test accuracy (a - b over the seeds both trained; paired t-test, Holm-adjusted "
        f"over {len(pairs)} pairs):",
        shown.to_string(index=False),
    ]
    if analysis.effects:
        effects = pd.DataFrame(analysis.effects)
        lines += [
            "",
            "effects on test accuracy (paired over seeds; uncorrected p):",
            pd.DataFrame(
                {
                    "data set": effects["dataset"],
                    "effect": [
                        f"{f} (interaction)" if e == "interaction" else f"{f}: {lv} vs {b}"
                        for e, f, lv, b in zip(
                            effects["effect"], effects["factor"], effects["level"], effects["baseline"]
                        )
                    ],
                    "estimate [95% CI]": [
                        f"{_signed(m)}" + ("" if lo is None or pd.isna(lo) else f" [{_signed(lo)}, {_signed(hi)}]")
                        for m, lo, hi in zip(effects["estimate"], effects["ci_low"], effects["ci_high"])
                    ],
                    "p": effects["p_value"].map(_p),
                }
            ).to_string(index=False),
        ]
    if analysis.ranks:
        ranks = analysis.ranks
        order = sorted(ranks["mean_ranks"].items(), key=lambda item: item[1])
        p = ranks["p_value"]
        lines += [
            "",
            f"mean rank across {ranks['data_sets']} data sets (1 = best test accuracy): "
            + ", ".join(f"{c} {r:.2g}" for c, r in order)
            + ("" if p is None or pd.isna(p) else f"; Friedman p {p:.2g}")
            + (f"\n  {ranks['caveat']}" if ranks.get("caveat") else ""),
        ]
    return "\n".join(lines)


def _signed(value):
    return "" if value is None or pd.isna(value) else f"{value:+.4f}"


def _p(value):
    return "" if value is None or pd.isna(value) else f"{value:.3g}"


def _number(value):
    return "" if value is None or pd.isna(value) else f"{value:.4g}"


def _share(value):
    return "" if pd.isna(value) else f"{value:.0%}"


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
