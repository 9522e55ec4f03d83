"""The comparison's statistics, from the table of records: what ``compare``, the sweep's summary, the report
and the notebook API show. The formulas live in ``stats`` (pure functions, each with its reference); this
module decides what they are applied to:

- budget curves and learning-rate robustness from each condition's search trials;
- paired tests only between conditions on the same data set (the same seeds trained both), with Holm's
  correction over every pair of the study; main effects and interaction of the factors of a grid;
- ranks across data sets with Friedman's test when the study spans several.
"""

import math
from dataclasses import dataclass, field

import pandas as pd

from ..records.table import current
from . import stats
from .summary import summarize

ALPHA = 0.05
"""Significance level of the Holm-adjusted paired tests and of Friedman's test."""

PAIR_COLUMNS = [
    "dataset",
    "a",
    "b",
    "seeds",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "significant",
]


@dataclass
class Analysis:
    table: pd.DataFrame  # one row per condition (summary.summarize plus robustness and budget columns)
    pairs: pd.DataFrame  # PAIR_COLUMNS
    budget_curves: dict  # condition -> [E_1 .. E_n] expected best validation score after k trials
    settles_at: dict  # data set -> k from which the ranking by E_k stays (None: fewer than 2 conditions)
    datasets: dict  # condition -> its data set
    effects: list = field(default_factory=list)  # factorial effects on test accuracy, per data set
    ranks: dict | None = None  # across data sets: ranks, mean ranks, Friedman statistic, p-value, caveat
    findings: list = field(default_factory=list)  # sentences (findings.findings)


def analyze(study, frame):
    """Every statistic of a study's comparison from its records."""
    from .findings import findings

    search, confirm = current(study, frame)
    table = summarize(study, frame)
    curves, robust = {}, []
    for condition in study.conditions:
        trials = scores_of(study, search, condition.name)
        curves[condition.name] = stats.expected_max_curve(trials["score"], study.direction == "maximize")
        robust.append(robustness(study, trials))
    table = pd.concat([table, pd.DataFrame(robust)], axis=1)
    settles = {
        dataset: stats.ranking_settles_at(
            {c: curves[c] for c in names if curves[c]}, maximize=study.direction == "maximize"
        )
        for dataset, names in by_dataset(study).items()
    }
    table["ranking_settles_at"] = [settles[dataset_of(study, c)] for c in study.conditions]
    datasets = {c.name: dataset_of(study, c) for c in study.conditions}
    result = Analysis(
        table, pairs(study, confirm), curves, settles, datasets, effects(study, confirm), ranks(study, table)
    )
    result.findings = findings(study, result)
    return result


def dataset_of(study, condition):
    settings = {**study.fixed, **condition.settings}
    return str(settings.get("csv") or settings.get("dataset") or "digits")


def by_dataset(study):
    """{data set: [condition names]} in the study's order."""
    groups: dict = {}
    for condition in study.conditions:
        groups.setdefault(dataset_of(study, condition), []).append(condition.name)
    return groups


def scores_of(study, search, condition):
    """A condition's search trials as (lr, score, diverged): a complete trial scores its objective, a pruned
    one its last reported value, a diverged one the worst value (0 for an accuracy, else the worst finite
    value of the study's trials)."""
    column = f"metric.{study.objective}"
    trials = search[search["condition"] == condition] if len(search) else search
    if not len(trials) or column not in trials:
        return pd.DataFrame({"lr": [], "score": [], "diverged": []})
    values = pd.to_numeric(search[column], errors="coerce")
    finite = values[values.abs() != math.inf].dropna()
    maximize = study.direction == "maximize"
    if study.objective.endswith("accuracy"):
        worst = 0.0 if maximize else 1.0
    else:
        worst = (finite.min() if maximize else finite.max()) if len(finite) else math.nan
    diverged = (trials["state"] == "diverged").to_numpy()
    score = pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float, copy=True)
    score[diverged] = worst
    lr = pd.to_numeric(trials["param.lr"], errors="coerce") if "param.lr" in trials else pd.Series(math.nan)
    return pd.DataFrame({"lr": lr.to_numpy(dtype=float), "score": score, "diverged": diverged})


def robustness(study, trials):
    """Width of the good learning rates (within 1 point of accuracy, or 5% of a loss, of the best) and the
    share of the searched learning-rate range that diverges."""
    lr_range = next((p for p in study.search if p.name == "lr" and p.choices is None), None)
    empty = {"good_lr_decades": math.nan, "diverged_lr_share": math.nan}
    if lr_range is None or not len(trials) or trials["lr"].isna().all():
        return empty
    usable = trials[~trials["diverged"]]["score"].dropna()
    if not len(usable):
        return {**empty, "diverged_lr_share": 1.0}
    maximize = study.direction == "maximize"
    best = float(usable.max() if maximize else usable.min())
    tolerance = 0.01 if study.objective.endswith("accuracy") else 0.05 * abs(best)
    found = stats.lr_robustness(
        trials["lr"],
        trials["score"],
        trials["diverged"],
        best,
        tolerance,
        low=lr_range.low,
        high=lr_range.high,
        maximize=maximize,
    )
    return {"good_lr_decades": found["good_lr_decades"], "diverged_lr_share": found["diverged_share_of_range"]}


def _accuracies(confirm, condition):
    seeds = confirm[confirm["condition"] == condition] if len(confirm) else confirm
    if not len(seeds) or "metric.test_accuracy" not in seeds:
        return {}
    return dict(zip(seeds["seed"], seeds["metric.test_accuracy"].astype(float)))


def pairs(study, confirm):
    """Paired differences of test accuracy (a - b) between the conditions of each data set over the seeds
    both trained, with the paired t-test and Holm's adjustment over all of the study's pairs."""
    rows = []
    for dataset, names in by_dataset(study).items():
        values = {name: _accuracies(confirm, name) for name in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                seeds = sorted(set(values[a]) & set(values[b]))
                test = stats.paired_t([values[a][s] for s in seeds], [values[b][s] for s in seeds])
                rows.append({"dataset": dataset, "a": a, "b": b, "seeds": len(seeds), **_without_n(test)})
    frame = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in ("p_holm", "significant")])
    frame["p_holm"] = stats.holm(frame["p_value"].tolist()) if len(frame) else []
    frame["significant"] = [p is not None and not _nan(p) and p < ALPHA for p in frame["p_holm"]]
    return frame[PAIR_COLUMNS]


def _without_n(test):
    return {k: test[k] for k in ("mean_difference", "ci_low", "ci_high", "p_value")}


def effects(study, confirm):
    """Main effects (and the 2x2 interaction) on test accuracy of the factors that make the study's grid,
    within each data set, paired by seed. None unless at least two factors vary (one factor: the pairs)."""
    found = []
    for dataset, names in by_dataset(study).items():
        conditions = [study.condition(n) for n in names]
        factors = [f for f in (conditions[0].levels if conditions else {}) if f != "dataset"]
        factors = [f for f in factors if len({c.levels.get(f) for c in conditions}) > 1]
        if len(factors) < 2:
            continue
        rows = [
            {**{f: c.levels[f] for f in factors}, "seed": seed, "test_accuracy": value}
            for c in conditions
            for seed, value in _accuracies(confirm, c.name).items()
        ]
        if rows:
            table = pd.DataFrame(rows)
            for f in factors:  # the study file's order of levels
                order = list(dict.fromkeys(c.levels[f] for c in conditions))
                table[f] = pd.Categorical(table[f], categories=order, ordered=True)
            found += [
                {"dataset": dataset, **e} for e in stats.factorial_effects(table, factors, "test_accuracy", "seed")
            ]
    return found


def ranks(study, table):
    """Across data sets (a study whose conditions span several): each condition's rank by test accuracy on
    each data set, its mean rank and Friedman's test (Demšar 2006). None for a single data set."""
    groups = by_dataset(study)
    if len(groups) < 2:
        return None
    scores: dict = {}
    for dataset, names in groups.items():
        for name in names:
            levels = study.condition(name).levels
            label = "-".join(v for f, v in levels.items() if f != "dataset") or name
            mean = table.loc[table["condition"] == name, "test_accuracy_mean"]
            scores.setdefault(dataset, {})[label] = float(mean.iloc[0]) if len(mean) else math.nan
    result = stats.friedman(pd.DataFrame(scores).T)
    ranked = result["ranks"]
    return {
        "ranks": {d: {c: float(v) for c, v in row.items()} for d, row in ranked.iterrows()},
        "mean_ranks": result["mean_ranks"],
        "statistic": result["statistic"],
        "p_value": result["p_value"],
        "data_sets": result["n_datasets"],
        "caveat": result["caveat"],
    }


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
