"""The per-condition summary of a sweep: best settings, scores, and how reliable they are.

Built from the table of records (``records``): the runs MLflow holds, so the summary a sweep prints and
the table ``harness compare`` prints are one computation over one set of records. The test accuracy's
95% interval covers the confirmation seeds (Student t) and, with a fixed split, the test rows' binomial
sampling (``stats.fixed_split_interval``), clipped to [0, 1], none with fewer than 3 seeds; epochs to
target is a Kaplan-Meier median (``stats``). The printed tables give differences in points.
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
        sizes = data_sizes(study, condition, pd.concat([trials, seeds]))
        row.update(accuracy_columns(study, seed_scores(seeds, sizes["classes"]), seeds, sizes))
        row.update(val_rows=sizes["val_rows"], test_rows=sizes["test_rows"])
        times, reached = times_to_target(seeds)
        median = stats.kaplan_meier_median(times, reached) if times else None
        row["epochs_to_target_median"] = math.nan if median is None else float(median)
        row["target_reached"] = f"{sum(reached)}/{len(seeds)}"
        row["confirmed_after_trials"] = budget
        row["best_trial_run_id"] = None if best is None else best["run_id"]
        row["best_seed_run_id"] = best_seed_run(seeds)
        table.append(row)
    return pd.DataFrame(table)


VARIED = {"init": "initialisation and batch order", "split": "the train/validation/test split"}
"""What a confirmation seed varies (``[confirm] vary``), in the words the summary uses."""


def accuracy_columns(study, scores, seeds, sizes):
    """Mean test accuracy over every confirmation seed (a diverged one at chance), its 95% interval, the
    failure rate, and which sources of variance the interval covers."""
    values = list(scores.values())
    fixed = "split" not in study.confirm_vary
    rows = sizes["test_rows"]
    if fixed and rows and not math.isnan(rows):
        mean, low, high = stats.fixed_split_interval(values, int(rows))
    else:
        mean, low, high = stats.bounded_mean_interval(values)
    covers = ", ".join(VARIED[v] for v in study.confirm_vary)
    if fixed:
        covers += f", the test rows' sampling (binomial over {rows:g} rows)" if rows and not math.isnan(rows) else ""
    diverged = int((seeds["state"] == "diverged").sum()) if len(seeds) else 0
    return {
        "test_accuracy_mean": mean,
        "test_accuracy_ci_low": math.nan if low is None else low,
        "test_accuracy_ci_high": math.nan if high is None else high,
        "seeds": len(values),
        "diverged_seeds": diverged,
        "failure_rate": diverged / len(values) if values else math.nan,
        "chance_accuracy": 1 / sizes["classes"] if sizes["classes"] else math.nan,
        "interval_covers": covers,
    }


def seed_scores(seeds, classes):
    """{seed: test accuracy} of a condition's confirmation seeds; a diverged seed (no test score) scores
    chance, 1 / classes: a failure is data, and leaving it out would make a condition that fails look as
    good as one that never does."""
    if not len(seeds):
        return {}
    values = seeds["metric.test_accuracy"] if "metric.test_accuracy" in seeds else pd.Series(math.nan, seeds.index)
    chance = 1 / classes if classes and not math.isnan(classes) else math.nan
    scores = {}
    for seed, value, state in zip(seeds["seed"], values.astype(float), seeds["state"]):
        if state == "diverged":
            scores[seed] = chance
        elif not math.isnan(value):
            scores[seed] = float(value)
    return {s: v for s, v in scores.items() if not math.isnan(v)}


def data_sizes(study, condition, runs):
    """{"classes", "val_rows", "test_rows"} of a condition's data: from its runs' tags, else (runs recorded
    before they carried them) from loading its data set here; NaN when neither is possible."""
    sizes = {}
    for key in ("classes", "val_rows", "test_rows"):
        known = pd.to_numeric(runs[key], errors="coerce").dropna() if key in runs else pd.Series(dtype=float)
        sizes[key] = float(known.iloc[0]) if len(known) else math.nan
    if any(math.isnan(v) for v in sizes.values()):
        loaded = _loaded_sizes(study, condition)
        sizes = {k: loaded[k] if math.isnan(v) else v for k, v in sizes.items()}
    return sizes


def _loaded_sizes(study, condition):
    from ..common.errors import HarnessError
    from ..engine.data import load_split

    params = {p.name: p.choices[0] if p.choices else p.low for p in study.search}
    try:
        split = load_split(study.config_for(condition, params, 0))
    except (HarnessError, OSError, ValueError):
        return {"classes": math.nan, "val_rows": math.nan, "test_rows": math.nan}
    return {
        "classes": float(split.n_classes),
        "val_rows": float(len(split.y_val)),
        "test_rows": float(len(split.y_test)),
    }


def times_to_target(seeds):
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

    results, tuning, notes = table_frames(study, table)
    wrapped = [fill(n) for n in notes]
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
        for m, lo, hi in zip(table["test_accuracy_mean"], table["test_accuracy_ci_low"], table["test_accuracy_ci_high"])
    ]
    results["diverged seeds"] = [f"{d}/{n}" for d, n in zip(table["diverged_seeds"], table["seeds"])]
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
    notes = (
        []
        if table.empty or table["confirmed_after_trials"].iloc[0] >= study.trials
        else [
            f"the test accuracies are the confirmation after {table['confirmed_after_trials'].iloc[0]} trials per "
            f"condition: the extension to {study.trials} has not finished (run its sweep again to finish it)"
        ]
    )
    covers = table["interval_covers"].iloc[0] if len(table) and "interval_covers" in table else ""
    notes += [
        "test accuracy: mean over every confirmation seed, a diverged seed scored at chance (1 / classes); the "
        f"95% interval covers {covers}",
        f"epochs to {study.target_accuracy:g}: Kaplan-Meier median epoch at which validation accuracy first reached "
        f"{study.target_accuracy:g} (reached/seeds; the others are censored); no interval with fewer than 3 seeds",
    ]
    if "good_lr_decades" in table:
        notes.append(
            f"good lr: width of the learning rates scoring within {study.tolerance:g} {study.objective} of the best "
            "of any condition on the same data set"
        )
    return results, tuning, notes + edge_warnings(study, table)


def edge_warnings(study, table):
    """One warning per searched setting and edge where a condition's best value sits, naming the key of the
    study file to edit and how: a best at the edge may lie beyond the range searched."""
    from .answer import joined

    at = {}
    for row in table.to_dict("records"):
        for edge in filter(None, row["at_edge"].split(",")):
            name, side = edge.split(":")
            at.setdefault((name, side), []).append(f"{row['condition']} ({_number(row[f'best_{name}'])})")
    said = []
    for (name, side), where in at.items():
        param = next(p for p in study.search if p.name == name)
        change = "raise `high`" if side == "high" else "lower `low`"
        verb = "sits" if len(where) == 1 else "sit"
        said.append(
            f"warning: `[search] {name} = {search_range(param)}` in {study.path}: the best {name} of "
            f"{joined(where)} {verb} at the {side} edge, so the best may lie beyond it; {change} (in a copy of the "
            "study with a new `name`: a study's search cannot change under its name)"
        )
    return said


def search_range(param):
    """A searched setting's range as the study file writes it: { low = 5, high = 60 }."""
    log = ", log = true" if param.log else ""
    return f"{{ low = {param.low!r}, high = {param.high!r}{log} }}"


def format_opening(study, analysis):
    """The first lines of a printed comparison: the answer in plain words, then the findings, its evidence."""
    from .answer import answer, format_answer

    return format_answer(answer(study, analysis)) + format_findings(analysis.findings)


def fill(text, first="", rest="  "):
    """``text`` wrapped to 110 columns, never inside a `quoted key` (a key to copy stays on one line) nor at
    a hyphen of a condition's name."""
    import re
    import textwrap

    kept = re.sub(r"`[^`]*`", lambda quoted: quoted[0].replace(" ", "\0"), text)
    wrapped = textwrap.fill(
        kept, 110, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False, break_long_words=False
    )
    return wrapped.replace("\0", " ")


def format_findings(sentences):
    """The findings as a short list above the tables."""
    import textwrap

    if not sentences:
        return ""
    lines = ["findings:"]
    for sentence in sentences:
        lines += textwrap.wrap(sentence, 110, initial_indent="  - ", subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def format_pairs(analysis):
    """Paired differences (within each data set) in points, Holm-adjusted, each with the test its p comes
    from; then the factors' effects."""
    pairs = analysis.pairs
    if not len(pairs):
        return "paired differences: fewer than 2 conditions per data set"
    shown = pd.DataFrame(
        {
            "a - b": [f"{a} - {b}" for a, b in zip(pairs["a"], pairs["b"])],
            "seeds": pairs["seeds"],
            "difference [95% CI]": [
                _points(m) + ("" if lo is None or pd.isna(lo) else f" [{_points(lo)}, {_points(hi)}]")
                for m, lo, hi in zip(pairs["mean_difference"], pairs["ci_low"], pairs["ci_high"])
            ],
            "test": pairs["test"].map(TEST_SHORT.get),
            "p": pairs["p_value"].map(_p),
            "p Holm": pairs["p_holm"].map(_p),
            "p equiv. Holm": pairs["p_equivalence_holm"].map(_p),
            "detectable": pairs["detectable"].map(_points),
            "seeds to detect": [_seeds(v, t) for v, t in zip(pairs["seeds_needed"], pairs["test"])],
            "seeds for equiv.": [_seeds(v, t) for v, t in zip(pairs["seeds_for_equivalence"], pairs["test"])],
            "verdict": pairs["verdict"],
        }
    )
    if pairs["dataset"].nunique() > 1:
        shown.insert(0, "data set", pairs["dataset"])
    tested = int((pairs["verdict"] != "untested").sum())
    lines = [
        "paired differences of test accuracy in points (a - b over the seeds both trained, a diverged seed at "
        f"chance; Holm-adjusted over the {tested} pairs tested; equivalence: TOST within the margin, Holm-adjusted "
        "the same way; detectable: the difference found with 80% power; seeds to detect the margin and to show "
        "equivalence within it, 'rows' where the fixed test rows alone are too few):",
        shown.to_string(index=False),
        "test: " + "; ".join(f"{TEST_SHORT[t]} = {TEST_WORDS[t]}" for t in dict.fromkeys(pairs["test"])),
    ]
    if analysis.effects:
        lines += [
            "",
            "effects on test accuracy in points (contrasts over the seeds, tested as the pairs; main effects and "
            "interaction Holm-adjusted together per data set; a simple effect is a pair, see its Holm p above):",
            _effects_table(analysis.effects),
        ]
    if analysis.ranks:
        lines += ["", _ranks_line(analysis.ranks)]
    return "\n".join(lines)


TEST_WORDS = {
    "t (seeds + test rows)": "t-test over the seeds plus the test rows' paired sampling (each run's per-row "
    "correctness), Welch-Satterthwaite df",
    "t (seeds + test rows, bounded)": "the same with the rows' term bounded from the accuracies (the runs did not "
    "record their rows)",
    "paired t (seeds)": "paired t-test over the seeds, each seed on its own split",
    "exact sign-flip over seeds (no variance)": "exact sign-flip test over the seeds (their differences do not "
    "vary: no t-test)",
    "untested (fewer than 3 seeds)": "fewer than 3 seeds: no test",
}
TEST_SHORT = {
    "t (seeds + test rows)": "t+rows",
    "t (seeds + test rows, bounded)": "t+bound",
    "paired t (seeds)": "t",
    "exact sign-flip over seeds (no variance)": "sign-flip",
    "untested (fewer than 3 seeds)": "-",
}


def _seeds(value, test):
    """A seed count; 'rows' where a t-test's fixed test rows alone keep any number of seeds short."""
    if value is None or pd.isna(value):
        return "rows" if test.startswith("t (seeds + test rows") else ""
    return f"{int(value)}"


def _points(value):
    return "" if value is None or pd.isna(value) else f"{100 * value:+.2f}"


def _effects_table(found):
    effects = pd.DataFrame(found)
    at = effects["at"] if "at" in effects else [None] * len(effects)
    holm = effects["p_holm"] if "p_holm" in effects else [None] * len(effects)
    return pd.DataFrame(
        {
            "data set": effects["dataset"],
            "effect": [
                _effect_name(e, f, lv, b, w)
                for e, f, lv, b, w in zip(
                    effects["effect"], effects["factor"], effects["level"], effects["baseline"], at
                )
            ],
            "estimate [95% CI]": [
                _points(m) + ("" if lo is None or pd.isna(lo) else f" [{_points(lo)}, {_points(hi)}]")
                for m, lo, hi in zip(effects["estimate"], effects["ci_low"], effects["ci_high"])
            ],
            "test": effects["test"].map(TEST_SHORT.get),
            "p": effects["p_value"].map(_p),
            "p Holm": [_p(v) for v in holm],
        }
    ).to_string(index=False)


def _effect_name(kind, factor, level, baseline, under):
    """A main effect has no level it is taken under (pandas fills that cell with NaN): it says so."""
    if kind == "interaction":
        return f"{factor} (interaction)"
    return f"{factor}: {level} vs {baseline} " + (f"under {under}" if isinstance(under, str) else "(main effect)")


def _ranks_line(ranks):
    order = sorted(ranks["mean_ranks"].items(), key=lambda item: item[1])
    p = ranks["p_value"]
    exact = ranks.get("p_value_permutation")
    return (
        f"mean rank across {ranks['data_sets']} data sets (1 = best test accuracy): "
        + ", ".join(f"{c} {r:.2g}" for c, r in order)
        + ("" if p is None or pd.isna(p) else f"; Friedman p {p:.2g}")
        + (
            ""
            if exact is None
            else f" ({ranks['permutation_method']} permutation p {exact:.2g}, Iman-Davenport p "
            f"{ranks['iman_davenport_p']:.2g}; Nemenyi critical difference {ranks['critical_difference']:.2g} ranks)"
        )
        + (f"\n  {ranks['caveat']}" if ranks.get("caveat") else "")
    )


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
