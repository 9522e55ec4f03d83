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

import numpy as np
import pandas as pd

from ..records.table import current
from . import stats
from .summary import seed_scores, summarize

ALPHA = 0.05
"""Significance level of the Holm-adjusted paired tests and equivalence tests, and of Friedman's test."""

POWER = 0.8
"""Power at which the minimum detectable difference of a pair is stated."""

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
    "p_equivalence",
    "p_equivalence_holm",
    "detectable",
    "seeds_needed",
    "verdict",
]


@dataclass
class Analysis:
    table: pd.DataFrame  # one row per condition (summary.summarize plus robustness and budget columns)
    pairs: pd.DataFrame  # PAIR_COLUMNS
    budget_curves: dict  # condition -> [E_1 .. E_n] expected best validation score after k trials
    settles_at: dict  # data set -> k from which the leaders (ties included) stay (None: fewer than 2 conditions)
    datasets: dict  # condition -> its data set
    effects: list = field(default_factory=list)  # factorial effects on test accuracy, per data set
    ranks: dict | None = None  # across data sets: ranks, mean ranks, Friedman statistic, p-value, caveat
    findings: list = field(default_factory=list)  # sentences (findings.findings)
    budget_bands: dict = field(default_factory=dict)  # condition -> (low, high) bootstrap 95% band of E_k
    leaders: dict = field(default_factory=dict)  # data set -> per k, the leading conditions (ties included)
    budget_scale: str = ""  # how the curves were computed (the objective, or a bounded transform of a loss)


def analyze(study, frame):
    """Every statistic of a study's comparison from its records."""
    from .findings import findings

    search, confirm = current(study, frame)
    table = summarize(study, frame)
    sizes = dict(zip(table["condition"], table[["chance_accuracy", "val_rows"]].to_dict("records")))
    trials = {c.name: scores_of(study, search, c.name, sizes[c.name]["chance_accuracy"]) for c in study.conditions}
    table = pd.concat([table, pd.DataFrame(robustness_table(study, trials))], axis=1)
    curves = budget(study, trials, sizes)
    table["leader_settles_at"] = [curves["settles"][dataset_of(study, c)] for c in study.conditions]
    datasets = {c.name: dataset_of(study, c) for c in study.conditions}
    result = Analysis(
        table,
        pairs(study, confirm, table),
        curves["curves"],
        curves["settles"],
        datasets,
        effects(study, confirm, table),
        ranks(study, table),
        budget_bands=curves["bands"],
        leaders=curves["leaders"],
        budget_scale=curves["scale"],
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


def is_accuracy(study):
    return study.objective.endswith("accuracy")


def scores_of(study, search, condition, chance):
    """A condition's search trials as (lr, score, diverged, bounded): score = the objective of a complete
    trial, the last reported value of a pruned one, NaN for a diverged one; bounded = the value the budget
    curves use, never borrowed from another condition: the accuracy itself (a diverged trial at chance), or
    exp(-loss) for a loss objective (a diverged trial at 0, the limit of an infinite loss)."""
    column = f"metric.{study.objective}"
    trials = search[search["condition"] == condition] if len(search) else search
    if not len(trials) or column not in trials:
        return pd.DataFrame({"lr": [], "score": [], "diverged": [], "bounded": []})
    diverged = (trials["state"] == "diverged").to_numpy()
    score = pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float, copy=True)
    score[diverged | ~np.isfinite(score)] = math.nan
    if is_accuracy(study):
        bounded = np.where(diverged, chance, score)
    else:
        bounded = np.where(diverged, 0.0, np.exp(-score))
    lr = pd.to_numeric(trials["param.lr"], errors="coerce") if "param.lr" in trials else pd.Series(math.nan)
    return pd.DataFrame({"lr": lr.to_numpy(dtype=float), "score": score, "diverged": diverged, "bounded": bounded})


def budget(study, trials, sizes):
    """Budget curves E_k with their bootstrap bands, and per data set the leaders at each k: the conditions
    within one validation example (1 / validation rows, on the bounded scale) of the best E_k."""
    accuracy = is_accuracy(study)
    back = (lambda v: v) if accuracy else (lambda v: -math.log(v) if v > 0 else math.inf)
    bounded = {name: stats.expected_max_curve(t["bounded"]) for name, t in trials.items()}
    curves = {name: [back(v) for v in curve] for name, curve in bounded.items()}
    bands = {}
    for name, t in trials.items():
        low, high = stats.expected_max_band(t["bounded"])
        bands[name] = (low, high) if accuracy else ([back(v) for v in high], [back(v) for v in low])
    leading, settles = {}, {}
    for dataset, names in by_dataset(study).items():
        shown = {n: bounded[n] for n in names if bounded[n]}
        rows = [sizes[n]["val_rows"] for n in names]
        tie = 1 / min(rows) if all(r and not math.isnan(r) for r in rows) else stats._SLACK
        leading[dataset] = stats.leaders(shown, tie) if len(shown) >= 2 else []
        settles[dataset] = stats.settled_from(leading[dataset])
    scale = (
        f"expected best {study.objective}"
        if accuracy
        else f"-ln E_k[exp(-{study.objective})] (a diverged trial counts as exp(-inf) = 0)"
    )
    return {"curves": curves, "bands": bands, "leaders": leading, "settles": settles, "scale": scale}


def robustness_table(study, trials):
    """Per condition: the width of its learning rates scoring within ``study.tolerance`` (absolute, in the
    objective's units) of the best validation score of any condition on its data set, and the share of the
    searched learning-rate range that diverges."""
    best = {}
    for dataset, names in by_dataset(study).items():
        scores = pd.concat([trials[n]["score"] for n in names]).dropna()
        best[dataset] = (scores.max() if study.direction == "maximize" else scores.min()) if len(scores) else None
    return [robustness(study, trials[c.name], best[dataset_of(study, c)]) for c in study.conditions]


def robustness(study, trials, best):
    lr_range = next((p for p in study.search if p.name == "lr" and p.choices is None), None)
    empty = {"good_lr_decades": math.nan, "diverged_lr_share": math.nan}
    if lr_range is None or not len(trials) or trials["lr"].isna().all():
        return empty
    found = stats.lr_robustness(
        trials["lr"],
        trials["score"],
        trials["diverged"],
        best,
        study.tolerance,
        low=lr_range.low,
        high=lr_range.high,
        maximize=study.direction == "maximize",
    )
    decades = found["good_lr_decades"] if found["good_trials"] else 0.0
    return {"good_lr_decades": decades, "diverged_lr_share": found["diverged_share_of_range"]}


def _accuracies(confirm, condition, table):
    """{seed: test accuracy} of a condition's confirmation seeds, a diverged seed at chance."""
    seeds = confirm[confirm["condition"] == condition] if len(confirm) else confirm
    chance = table.loc[table["condition"] == condition, "chance_accuracy"]
    return seed_scores(seeds, 1 / float(chance.iloc[0]) if len(chance) and chance.iloc[0] > 0 else math.nan)


def pairs(study, confirm, table):
    """Paired differences of test accuracy (a - b) between the conditions of each data set over the seeds
    both trained (diverged seeds at chance), with the paired t-test, Holm's adjustment over the pairs tested
    in the study, the equivalence test within ``study.analysis_margin`` (Holm-adjusted the same way) and the
    power of each pair."""
    rows = []
    for dataset, names in by_dataset(study).items():
        values = {name: _accuracies(confirm, name, table) for name in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                seeds = sorted(set(values[a]) & set(values[b]))
                x, y = [values[a][s] for s in seeds], [values[b][s] for s in seeds]
                test = stats.paired_t(x, y)
                rows.append({"dataset": dataset, "a": a, "b": b, "seeds": len(seeds), **_without_n(test)})
                rows[-1].update(_equivalence(x, y, study.analysis_margin))
    adjusted = ("p_holm", "significant", "p_equivalence_holm", "verdict")
    frame = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in adjusted])
    frame["p_holm"] = stats.holm(frame["p_value"].tolist()) if len(frame) else []
    # an equivalence claimed for several pairs at once holds for the family, as a difference does
    frame["p_equivalence_holm"] = stats.holm(frame["p_equivalence"].tolist()) if len(frame) else []
    frame["significant"] = [p is not None and not _nan(p) and p < ALPHA for p in frame["p_holm"]]
    frame["verdict"] = [_verdict(r) for r in frame.itertuples()]
    return frame[PAIR_COLUMNS]


def _equivalence(x, y, margin):
    """TOST p-value, the minimum detectable difference at ``POWER`` and the seeds that would detect ``margin``."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if len(d) < stats.MIN_SEEDS:
        return {"p_equivalence": None, "detectable": None, "seeds_needed": None}
    sd = float(d.std(ddof=1))
    return {
        "p_equivalence": stats.tost_paired(x, y, margin),
        "detectable": stats.minimum_detectable_difference(sd, len(d), ALPHA, POWER),
        "seeds_needed": stats.seeds_to_detect(sd, margin, ALPHA, POWER) if sd > 0 else stats.MIN_SEEDS,
    }


def _verdict(row):
    if row.p_value is None or _nan(row.p_value):
        return "untested"
    if row.significant:
        return "different"
    if row.p_equivalence_holm is not None and not _nan(row.p_equivalence_holm) and row.p_equivalence_holm < ALPHA:
        return "equivalent"
    return "inconclusive"


def _without_n(test):
    return {k: test[k] for k in ("mean_difference", "ci_low", "ci_high", "p_value")}


def effects(study, confirm, table):
    """Main effects (and the 2x2 interaction, and then each factor's simple effects at each level of the
    other) on test accuracy of the factors that make the study's grid, within each data set, paired by seed
    (diverged seeds at chance). None unless at least two factors vary (one factor: the pairs)."""
    found = []
    for dataset, names in by_dataset(study).items():
        conditions = [study.condition(n) for n in names]
        factors = [f for f in (conditions[0].levels if conditions else {}) if f != "dataset"]
        factors = [f for f in factors if len({c.levels.get(f) for c in conditions}) > 1]
        if len(factors) < 2:
            continue
        cells = [
            {**{f: c.levels[f] for f in factors}, "seed": seed, "test_accuracy": value}
            for c in conditions
            for seed, value in _accuracies(confirm, c.name, table).items()
        ]
        if cells:
            grid = pd.DataFrame(cells)
            for f in factors:  # the study file's order of levels
                order = list(dict.fromkeys(c.levels[f] for c in conditions))
                grid[f] = pd.Categorical(grid[f], categories=order, ordered=True)
            found += [
                {"dataset": dataset, **e} for e in stats.factorial_effects(grid, factors, "test_accuracy", "seed")
            ]
            if len(factors) == 2 and all(len(grid[f].cat.categories) == 2 for f in factors):
                found += [
                    {"dataset": dataset, **e} for e in stats.simple_effects(grid, factors, "test_accuracy", "seed")
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
        "p_value_permutation": result["p_value_permutation"],
        "permutation_method": result["permutation_method"],
        "iman_davenport_p": result["iman_davenport_p"],
        "critical_difference": result["critical_difference"],
        "data_sets": result["n_datasets"],
        "caveat": result["caveat"],
    }


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
