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

from ..records.correctness import CORRECT_COLUMN, read_correctness
from ..records.table import current
from . import calibration_comparison, stats
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
    "test",
    "test_rows",
    "p_holm",
    "significant",
    "p_equivalence",
    "p_equivalence_holm",
    "detectable",
    "seeds_needed",
    "seeds_for_equivalence",
    "rows_limited",
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
    calibration: pd.DataFrame | None = None  # probability quality (``calibration_comparison``); None: not recorded
    calibration_pairs: pd.DataFrame | None = None  # its paired differences
    reliability: dict = field(default_factory=dict)  # condition -> mean reliability diagram over its seeds
    calibration_bins: int = 0
    study_settings: dict = field(default_factory=dict)  # condition -> its settings ({**fixed, **condition's})


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
    compared = accuracy_pairs(study, confirm, table)
    result = Analysis(
        table,
        compared,
        curves["curves"],
        curves["settles"],
        datasets,
        with_pair_verdicts(effects(study, confirm, table), compared),
        ranks(study, table),
        budget_bands=curves["bands"],
        leaders=curves["leaders"],
        budget_scale=curves["scale"],
        study_settings={c.name: {**study.fixed, **c.settings} for c in study.conditions},
    )
    if calibration_comparison.has_probabilities(confirm):
        result.calibration = calibration_comparison.condition_table(study, confirm)
        means = [f"{figure}_mean" for figure in calibration_comparison.FIGURES if figure != "test_accuracy"]
        result.table = result.table.join(result.calibration.set_index("condition")[means], on="condition")
        result.calibration_pairs = calibration_comparison.calibration_pairs(study, confirm, by_dataset(study))
        result.reliability = {
            c.name: calibration_comparison.mean_reliability(confirm, c.name) for c in study.conditions
        }
        result.calibration_bins = next((r["bins"] for r in result.reliability.values() if r), 0)
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
    """Budget curves E_k with their bootstrap bands, and per data set the leaders at each k: the best E_k and
    the conditions tied with it (``stats.leaders``: bands that overlap, or for accuracy within one validation
    example)."""
    accuracy = is_accuracy(study)
    back = (lambda v: v) if accuracy else (lambda v: -math.log(v) if v > 0 else math.inf)
    bounded = {name: stats.expected_max_curve(t["bounded"]) for name, t in trials.items()}
    curves = {name: [back(v) for v in curve] for name, curve in bounded.items()}
    bands, bounded_bands = {}, {}
    for name, t in trials.items():
        low, high = bounded_bands[name] = stats.expected_max_band(t["bounded"])
        bands[name] = (low, high) if accuracy else ([back(v) for v in high], [back(v) for v in low])
    leading, settles = {}, {}
    for dataset, names in by_dataset(study).items():
        shown = {n: bounded[n] for n in names if bounded[n]}
        rows = [sizes[n]["val_rows"] for n in names]
        # one validation example is a unit of accuracy only; a loss is tied by its bands alone
        tie = 1 / min(rows) if accuracy and all(r and not math.isnan(r) for r in rows) else 0.0
        found = stats.leaders(shown, tie, bands={n: bounded_bands[n] for n in shown}) if len(shown) >= 2 else []
        leading[dataset] = found
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


@dataclass
class SeedScores:
    """A condition's confirmation seeds: test accuracy per seed (a diverged seed at chance) and, with a fixed
    split, the per-row correctness per seed (a diverged seed: chance on every row; None: not recorded)."""

    accuracy: dict
    correct: dict


def seed_data(study, confirm, condition, table):
    seeds = confirm[confirm["condition"] == condition] if len(confirm) else confirm
    row = table.loc[table["condition"] == condition].iloc[0]
    chance = float(row["chance_accuracy"])
    accuracy = seed_scores(seeds, 1 / chance if chance > 0 else math.nan)
    correct: dict = {}
    rows = row["test_rows"] if "test_rows" in row else math.nan
    if fixed_split(study) and not pd.isna(rows):
        for seed, state, text in zip(seeds["seed"], seeds["state"], seeds.get(CORRECT_COLUMN, [None] * len(seeds))):
            if seed not in accuracy:
                continue
            if state == "diverged":
                correct[seed] = np.full(int(rows), chance)
                continue
            found = read_correctness(text, int(rows))
            # a record whose rows do not give its accuracy is not used (the bound stands in)
            ok = found is not None and abs(found.mean() - accuracy[seed]) <= 1e-9
            correct[seed] = found.astype(float) if ok else None
    return SeedScores(accuracy, correct)


def fixed_split(study):
    return "split" not in study.confirm_vary


def contrast(study, data, weights, rows):
    """``stats.contrast_test`` of sum_c w_c (test accuracy of c) over the seeds every weighted condition
    trained; with a fixed split the per-row term from the recorded rows, else from the bound."""
    names = [c for c, w in weights.items() if w]
    seeds = sorted(set.intersection(*(set(data[c].accuracy) for c in names))) if names else []
    per_seed = [sum(weights[c] * data[c].accuracy[s] for c in names) for s in seeds]
    per_row, bound = None, None
    if fixed_split(study) and rows and not math.isnan(rows) and seeds:
        recorded = [[data[c].correct.get(s) for s in seeds] for c in names]
        if all(r is not None for group in recorded for r in group):
            per_row = sum(weights[c] * np.mean(group, axis=0) for c, group in zip(names, recorded))
        else:
            means = [float(np.mean([data[c].accuracy[s] for s in seeds])) for c in names]
            bound = stats.rows_variance_bound(means, [weights[c] for c in names])
    rows_used = int(rows) if fixed_split(study) and rows and not math.isnan(rows) else None
    test = stats.contrast_test(
        per_seed, per_row, rows_variance_bound=bound, rows=rows_used, margin=study.analysis_margin
    )
    return test, seeds


def accuracy_pairs(study, confirm, table):
    """Paired differences of test accuracy (a - b) between the conditions of each data set over the seeds
    both trained (diverged seeds at chance), tested by ``stats.contrast_test`` (with a fixed split, the test
    rows' paired sampling included), Holm's adjustment over the pairs tested in the study, the equivalence
    test within ``study.analysis_margin`` (Holm-adjusted the same way) and the seeds each would need."""
    rows = []
    for dataset, names in by_dataset(study).items():
        data = {name: seed_data(study, confirm, name, table) for name in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                test, seeds = contrast(study, data, {a: 1.0, b: -1.0}, _test_rows(table, a))
                rows.append({"dataset": dataset, "a": a, "b": b, "seeds": len(seeds), **_pair_columns(study, test)})
    adjusted = ("p_holm", "significant", "p_equivalence_holm", "verdict")
    frame = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in adjusted])
    frame["p_holm"] = stats.holm(frame["p_value"].tolist()) if len(frame) else []
    # an equivalence claimed for several pairs at once holds for the family, as a difference does
    frame["p_equivalence_holm"] = stats.holm(frame["p_equivalence"].tolist()) if len(frame) else []
    frame["significant"] = [p is not None and not _nan(p) and p < ALPHA for p in frame["p_holm"]]
    frame["verdict"] = [_verdict(r) for r in frame.itertuples()]
    return frame[PAIR_COLUMNS]


def _test_rows(table, condition):
    value = table.loc[table["condition"] == condition, "test_rows"] if "test_rows" in table else []
    return float(value.iloc[0]) if len(value) and not pd.isna(value.iloc[0]) else math.nan


def _pair_columns(study, test):
    power = stats.seeds_for(test, study.analysis_margin, ALPHA, POWER)
    if test["test"].startswith("exact sign-flip"):  # no variance to plan with: the seeds any verdict needs
        needed = SIGN_FLIP_SEEDS if test["estimate"] != 0 else None  # none when every seed ties exactly
        power = {"detectable": None, "seeds_to_detect": needed, "seeds_to_show_equivalence": None}
    return {
        "mean_difference": test["estimate"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
        "p_value": test["p_value"],
        "test": test["test"],
        "test_rows": test["rows"],
        "p_equivalence": test["p_equivalence"],
        "detectable": power["detectable"],
        "seeds_needed": power["seeds_to_detect"],
        "seeds_for_equivalence": power["seeds_to_show_equivalence"],
        # no number of seeds detects the margin because the fixed test rows' term alone is too wide
        "rows_limited": power["seeds_to_detect"] is None and test["rows_variance"] is not None,
    }


SIGN_FLIP_SEEDS = next(n for n in range(1, 30) if 2 / 2**n < ALPHA)
"""The fewest seeds whose exact sign-flip test can reach p < ``ALPHA`` (6: 2 / 64)."""


def _verdict(row):
    if row.p_value is None or _nan(row.p_value):
        return "untested"
    if row.significant:
        return "different"
    if row.p_equivalence_holm is not None and not _nan(row.p_equivalence_holm) and row.p_equivalence_holm < ALPHA:
        return "equivalent"
    return "inconclusive"


def effects(study, confirm, table):
    """Main effects (and the 2x2 interaction, and each factor's simple effects at each level of the other)
    on test accuracy of the factors that make the study's grid, within each data set: contrasts of the
    conditions (``stats.factorial_contrasts``) tested as the pairs are (``contrast``). None unless at least
    two factors vary (one factor: the pairs). Main effects and the interaction of a data set are one family,
    Holm-adjusted together; a simple effect of a 2x2 is a pair, said with the pair's verdict."""
    found = []
    for dataset, names in by_dataset(study).items():
        levels = {n: {f: v for f, v in study.condition(n).levels.items() if f != "dataset"} for n in names}
        data = {name: seed_data(study, confirm, name, table) for name in names}
        family = []
        for effect in stats.factorial_contrasts(levels):
            weights = effect.pop("weights")
            test, seeds = contrast(study, data, weights, _test_rows(table, names[0]))
            if effect["effect"] == "simple":  # the pair (plus, minus) it is
                effect["pair"] = tuple(sorted(weights, key=lambda n: -weights[n]))
            row = {"dataset": dataset, **effect, "estimate": test["estimate"], "ci_low": test["ci_low"]}
            row.update(ci_high=test["ci_high"], p_value=test["p_value"], test=test["test"], n=len(seeds))
            (found if effect["effect"] == "simple" else family).append(row)
        for row, p in zip(family, stats.holm([r["p_value"] for r in family])):
            row["p_holm"] = p
        found += family
    return _ordered(found)


def with_pair_verdicts(found, compared):
    """A simple effect is a pair: it takes the pair's Holm-adjusted p and verdict (one contrast, one verdict)."""
    for effect in found:
        if effect["effect"] != "simple":
            continue
        plus, minus = effect["pair"]
        row = compared[(compared["dataset"] == effect["dataset"]) & compared["a"].isin([plus, minus])]
        row = row[row["b"].isin([plus, minus])]
        if len(row):
            effect.update(p_holm=row["p_holm"].iloc[0], verdict=row["verdict"].iloc[0])
    return found


def _ordered(found):
    """Main effects, then the interaction, then the simple effects, per data set in the study's order."""
    rank = {"main": 0, "interaction": 1, "simple": 2}
    order = list(dict.fromkeys(e["dataset"] for e in found))
    return sorted(found, key=lambda e: (order.index(e["dataset"]), rank[e["effect"]]))


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
            scores.setdefault(dataset, {})[label] = rank_score(table, name)
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


def rank_score(table, condition):
    """The test accuracy a condition is ranked by: its mean over the seeds rounded to 9 decimals (a mean of
    exact counts: equal counts tie, never split by float noise), a condition whose every trial diverged at
    chance (a failure ranks below every condition that trained), NaN when it has no result yet."""
    row = table.loc[table["condition"] == condition]
    if not len(row):
        return math.nan
    mean, seeds, trials = row["test_accuracy_mean"].iloc[0], row["seeds"].iloc[0], row["trials"].iloc[0]
    if pd.isna(mean) and seeds == 0 and trials > 0 and row["diverged_share"].iloc[0] == 1:
        return float(row["chance_accuracy"].iloc[0])
    return math.nan if pd.isna(mean) else round(float(mean), 9)


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
