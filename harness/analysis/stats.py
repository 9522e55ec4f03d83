"""Pure statistics of a study's results: expected-max curves, paired differences, multiple testing, rankings.

Plain lists, arrays and DataFrames in; plain Python floats, ``None`` and lists out (never numpy scalars), so the
values go straight into tables, JSON and MLflow. ``NaN`` marks a value that is undefined (no data); ``None``
marks a value that is deliberately not reported (an interval from fewer than 3 seeds). Only numpy, scipy and
pandas are used; scipy is imported inside the functions that need it.
"""

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

MIN_SEEDS = 3
"""Fewer paired values than this: the values are reported, without an interval or a p-value."""

FRIEDMAN_CAVEAT = "Friedman's test with N<5 data sets has little power (Demšar 2006)"

PERMUTATION_MAX_DATASETS = 20
"""Up to this many data sets Friedman's test also gets its permutation p (the chi2 approximation is poor)."""

_SLACK = 1e-9
"""Rounding slack of the comparisons with a threshold (0.95 - 0.94 is 0.010000000000000009 in floats)."""


def _finite(values: npt.ArrayLike) -> np.ndarray:
    """The finite values as a float array (None and NaN left out)."""
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def _t_quantile(level: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


# Expected maximum after k trials


def expected_max_curve(scores: npt.ArrayLike, maximize: bool = True) -> list[float]:
    """Expected best validation score after k = 1..n trials drawn with replacement from the n trials run.

    Why: the best of n trials favours the condition that was given more trials; E_k compares conditions at equal
    budgets (Dodge et al. 2019, "Show Your Work", eq. 1). With v_1 <= ... <= v_n,
    E_k = sum_i v_i [(i/n)^k - ((i-1)/n)^k]. A minimised objective is mirrored (negated, computed, negated back).
    Trials without a finite score are left out: give diverged trials a worst-case score to count them.
    """
    values = _finite(scores)
    if len(values) == 0:
        return []
    sign = 1.0 if maximize else -1.0
    v = np.sort(sign * values)
    n = len(v)
    i = np.arange(1, n + 1)
    k = np.arange(1, n + 1)[:, None]
    weights = (i / n) ** k - ((i - 1) / n) ** k
    return [float(sign * e) for e in weights @ v]


def ranking_at(curves: dict[str, Sequence[float]], k: int, maximize: bool = True) -> list[str]:
    """The conditions ordered best first by E_k (``curves[name][k - 1]``), ties broken by name, NaN last."""

    def key(name: str) -> tuple[bool, float, str]:
        value = float(curves[name][k - 1])
        if math.isnan(value):
            return True, 0.0, name
        return False, -value if maximize else value, name

    return sorted(curves, key=key)


def ranking_settles_at(curves: dict[str, Sequence[float]], maximize: bool = True) -> int | None:
    """The smallest k from which the ranking by E_k stays the same up to the largest k all curves share.

    Why: a ranking that still changes near the end of the budget says the budget decided the winner
    (Dodge et al. 2019, section 3). None with fewer than 2 conditions or an empty curve.
    """
    if len(curves) < 2:
        return None
    last = min(len(curve) for curve in curves.values())
    if last == 0:
        return None
    final = ranking_at(curves, last, maximize)
    k = last
    while k > 1 and ranking_at(curves, k - 1, maximize) == final:
        k -= 1
    return k


# Learning-rate robustness


def lr_robustness(
    lrs: npt.ArrayLike,
    scores: npt.ArrayLike,
    diverged: Sequence[bool],
    best: float | None = None,
    tolerance: float = 0.01,
    *,
    low: float,
    high: float,
    maximize: bool = True,
) -> dict:
    """How wide the good learning rates are and how much of the searched range diverges, from one condition's trials.

    Why: a condition that is good only in a narrow band of learning rates is harder to tune (Wilson et al. 2017;
    Schmidt et al. 2021, "Descending through a crowded valley"). Estimators:

    - ``good_lr_decades``: log10(max lr) - log10(min lr) over the non-diverged trials whose score lies within
      ``tolerance`` of ``best`` (default: the best non-diverged score; accuracy: 1 point = 0.01); 0.0 with one
      such trial, NaN with none.
    - ``diverged_share_of_range``: the trials are sorted by lr; each owns the log10-lr interval halfway to its
      neighbours, the first and last extended to log10(low) and log10(high); the share is the length owned by
      diverged trials over log10(high) - log10(low). A nearest-trial estimate: as good as the trials are dense.
    """
    lr = np.asarray(lrs, dtype=float)
    score = np.asarray(scores, dtype=float)
    bad = np.asarray(diverged, dtype=bool)
    if not len(lr) == len(score) == len(bad):
        raise ValueError("lrs, scores and diverged must have one value per trial")
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low}, high={high}")
    usable = ~bad & np.isfinite(score)
    if best is None:
        best = float(np.max(score[usable]) if maximize else np.min(score[usable])) if usable.any() else math.nan
    gap = (best - score) if maximize else (score - best)
    good = usable & (gap <= tolerance + _SLACK)
    decades = float(np.log10(lr[good].max()) - np.log10(lr[good].min())) if good.any() else math.nan
    return {
        "good_lr_decades": decades,
        "good_trials": int(good.sum()),
        "diverged_share_of_range": _diverged_share(lr, bad, low, high),
    }


def _diverged_share(lr: np.ndarray, bad: np.ndarray, low: float, high: float) -> float:
    """Share of [log10 low, log10 high] owned by diverged trials (each trial owns the half-way interval)."""
    if len(lr) == 0:
        return math.nan
    order = np.argsort(lr, kind="stable")
    x = np.clip(np.log10(lr[order]), math.log10(low), math.log10(high))
    edges = np.concatenate([[math.log10(low)], (x[1:] + x[:-1]) / 2, [math.log10(high)]])
    owned = np.diff(edges)
    return float(owned[bad[order]].sum() / (math.log10(high) - math.log10(low)))


# Paired differences and multiple testing


def paired_t(a: npt.ArrayLike, b: npt.ArrayLike, level: float = 0.95) -> dict:
    """Mean of the paired differences a - b with its Student t interval and two-sided paired t-test p-value.

    Why: seeds shared by two conditions remove the seed-to-seed variance from the comparison (Student 1908; the
    test of ``scipy.stats.ttest_rel``). Pairs with a missing value are left out. Fewer than 3 pairs: the mean
    difference only, interval and p-value None. Identical differences (sd = 0): interval [mean, mean], p-value
    0.0 if the mean is not 0, else 1.0.
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"paired values need equal lengths, got {len(x)} and {len(y)}")
    d = (x - y)[np.isfinite(x) & np.isfinite(y)]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    result: dict = {"mean_difference": mean, "ci_low": None, "ci_high": None, "p_value": None, "n": n}
    if n < MIN_SEEDS:
        return result
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        result.update(ci_low=mean, ci_high=mean, p_value=0.0 if mean != 0 else 1.0)
        return result
    from scipy import stats

    se = sd / math.sqrt(n)
    half = _t_quantile(level, n - 1) * se
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    result.update(ci_low=mean - half, ci_high=mean + half, p_value=p)
    return result


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p-values, monotone and capped at 1.

    Why: several comparisons of one study at once; Holm (1979) controls the family-wise error rate like
    Bonferroni and rejects at least as much. With the m p-values sorted, p_(1) <= ... <= p_(m):
    adjusted p_(j) = min(1, max_{i <= j} (m - i + 1) p_(i)). None (and NaN) pass through, not counted in m.
    """
    present = sorted((float(p), i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p))
    m = len(present)
    adjusted: list[float | None] = list(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def bounded_mean_interval(
    values: npt.ArrayLike, low: float = 0.0, high: float = 1.0, level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """Mean with its Student t interval clipped to [low, high] (an accuracy interval does not pass 1).

    Why: the t interval of a bounded quantity near its bound reaches past the bound; clipping keeps the reported
    interval possible without changing its coverage (Student 1908). Fewer than 3 finite values: (mean, None, None).
    """
    x = _finite(values)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < MIN_SEEDS:
        return mean, None, None
    half = _t_quantile(level, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, float(min(max(mean - half, low), high)), float(min(max(mean + half, low), high))


# Time to target


def kaplan_meier_median(times: npt.ArrayLike, reached: Sequence[bool]) -> float | None:
    """Kaplan-Meier median epoch to reach the target, counting seeds that never reached it as right-censored.

    Why: leaving out the seeds that never reached the target makes a condition look faster than it is; the
    product-limit estimate uses them while they were observed (Kaplan and Meier 1958). At each event time t,
    S(t) = S(t-) (1 - d_t / n_t), n_t = seeds observed up to t (a seed censored at t is still at risk at t).
    The median is the smallest t with S(t) <= 0.5; None if S never drops to 0.5.
    """
    t = np.asarray(times, dtype=float)
    event = np.asarray(reached, dtype=bool)
    if len(t) != len(event):
        raise ValueError("times and reached must have one value per seed")
    survival = 1.0
    for moment in np.unique(t[event]):
        at_risk = int((t >= moment).sum())
        events = int(((t == moment) & event).sum())
        survival *= 1 - events / at_risk
        if survival <= 0.5 + _SLACK:
            return float(moment)
    return None


# Factorial designs


def factorial_effects(table: pd.DataFrame, factors: list[str], value: str, unit: str) -> list[dict]:
    """Main effects (and the 2x2 interaction) of a full factorial grid of conditions run on paired units (seeds).

    Estimates, per unit, the contrast of cell means and then ``paired_t`` of the contrasts against 0:
    main effect of level L of factor F = mean over the other factors' cells at F = L minus the same at the first
    level of F (levels in order of first appearance; a pandas Categorical keeps its order); for exactly two
    factors of two levels, the interaction = (y[A1,B1] - y[A0,B1]) - (y[A1,B0] - y[A0,B0]).
    Why: averaging over the other factors is the classical factorial estimate (Box, Hunter and Hunter 2005,
    ch. 5); pairing by unit removes the unit-to-unit variance. Repeated rows of a cell are averaged; units that
    lack a cell of the grid are left out (``n`` says how many were used).
    """
    levels = {f: list(_levels(table[f])) for f in factors}
    cells = table.groupby([unit, *factors], observed=True, sort=False)[value].mean().unstack(unit)
    full = pd.MultiIndex.from_product([levels[f] for f in factors], names=factors)
    cells = cells.reindex(full) if len(factors) > 1 else cells.reindex(levels[factors[0]])
    cells = cells.loc[:, cells.notna().all(axis=0)]
    effects = []
    for factor in factors:
        means = cells.groupby(level=factor, sort=False).mean() if len(factors) > 1 else cells
        baseline = levels[factor][0]
        for level in levels[factor][1:]:
            contrast = (means.loc[level] - means.loc[baseline]).to_numpy(dtype=float)
            effects.append(_effect("main", factor, level, baseline, contrast))
    if len(factors) == 2 and all(len(levels[f]) == 2 for f in factors):
        (a0, a1), (b0, b1) = levels[factors[0]], levels[factors[1]]
        contrast = (cells.loc[(a1, b1)] - cells.loc[(a0, b1)] - cells.loc[(a1, b0)] + cells.loc[(a0, b0)]).to_numpy(
            dtype=float
        )
        effects.append(_effect("interaction", " x ".join(factors), f"{a1}:{b1}", f"{a0}:{b0}", contrast))
    return effects


def _levels(column: pd.Series) -> list:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [c for c in column.cat.categories if (column == c).any()]
    return list(pd.unique(column))


def _effect(kind: str, factor: str, level: object, baseline: object, contrast: np.ndarray) -> dict:
    t = paired_t(contrast, np.zeros(len(contrast)))
    return {
        "effect": kind,
        "factor": factor,
        "level": level,
        "baseline": baseline,
        "estimate": t["mean_difference"],
        "ci_low": t["ci_low"],
        "ci_high": t["ci_high"],
        "p_value": t["p_value"],
        "n": t["n"],
    }


# Many data sets


def friedman(ranks_table: pd.DataFrame, *, seed: int = 0) -> dict:
    """Ranks of the conditions on each data set, their mean ranks, and Friedman's test that all rank alike.

    Why: across data sets, scores are not comparable but ranks are (Friedman 1937; Demšar 2006, JMLR 7).
    Rows = data sets, columns = conditions, values = scores (higher better); rows with a missing score are left
    out. Rank 1 = best, ties share their average rank. chi2 = [12 / (N k (k+1)) sum_j R_j^2 - 3 N (k+1)] / C,
    R_j = rank sum of condition j, C = 1 - sum(t^3 - t) / (N k (k^2 - 1)) the tie correction; p from chi2 with
    k - 1 degrees of freedom. Statistic and p-value None with fewer than 3 conditions or 2 data sets.
    With few data sets the chi2 approximation is poor, so for N <= ``PERMUTATION_MAX_DATASETS`` the
    permutation p (``friedman_permutation_p``) is added; always the Iman-Davenport F (``iman_davenport``) and
    the Nemenyi critical difference of the mean ranks at alpha 0.05 (``nemenyi_critical_difference``).
    """
    scores = ranks_table.dropna(axis=0, how="any").astype(float)
    ranks = scores.rank(axis=1, ascending=False, method="average")
    n, k = ranks.shape
    result: dict = {
        "ranks": ranks,
        "mean_ranks": {str(c): float(ranks[c].mean()) if n else math.nan for c in ranks.columns},
        "statistic": None,
        "p_value": None,
        "n_datasets": n,
        "n_conditions": k,
        "caveat": FRIEDMAN_CAVEAT if n < 5 else None,
        "p_value_permutation": None,
        "permutation_method": None,
        "iman_davenport_f": None,
        "iman_davenport_p": None,
        "critical_difference": None,
    }
    if k < 3 or n < 2:
        return result
    from scipy import stats

    sums = ranks.sum(axis=0).to_numpy(dtype=float)
    ties = sum(float((c**3 - c).sum()) for c in (np.unique(row, return_counts=True)[1] for row in ranks.to_numpy()))
    correction = 1 - ties / (n * k * (k * k - 1))
    if correction <= 0:
        result.update(statistic=math.nan, p_value=math.nan)
        return result
    chi2 = (12 / (n * k * (k + 1)) * float((sums**2).sum()) - 3 * n * (k + 1)) / correction
    result.update(statistic=float(chi2), p_value=float(stats.chi2.sf(chi2, k - 1)))
    result["iman_davenport_f"], result["iman_davenport_p"] = iman_davenport(chi2, n, k)
    result["critical_difference"] = nemenyi_critical_difference(k, n)
    if n <= PERMUTATION_MAX_DATASETS:
        p, method = friedman_permutation_p(ranks.to_numpy(dtype=float), seed=seed)
        result.update(p_value_permutation=p, permutation_method=method)
    return result


def friedman_permutation_p(
    ranks: np.ndarray, *, max_enumerated: int = 200_000, draws: int = 20_000, seed: int = 0
) -> tuple[float, str]:
    """P(sum_j R_j^2 >= observed) when each data set's ranks are permuted at random (no condition differs).

    Why: the chi2 approximation of Friedman's statistic is poor for few data sets (Demšar 2006, section 3.2.2,
    points to exact tables); permuting each row's ranks is the exact null, ties included. Rows: data sets.
    The first row is held fixed (the statistic does not change when all rows are permuted alike); if the other
    rows' (k!)^(N-1) permutations number at most ``max_enumerated`` they are all enumerated ("exact"), else
    ``draws`` random permutations per row from ``numpy.random.default_rng(seed)`` give (1 + hits) / (1 + draws)
    ("monte carlo", Phipson and Smyth 2010).
    """
    ranks = np.asarray(ranks, dtype=float)
    n, k = ranks.shape
    observed = float((ranks.sum(axis=0) ** 2).sum()) - _SLACK
    if math.factorial(k) ** (n - 1) <= max_enumerated:
        sums = ranks[:1]
        for row in ranks[1:]:
            perms = np.array(list(itertools.permutations(row)))
            sums = (sums[:, None, :] + perms[None, :, :]).reshape(-1, k)
        return float(((sums**2).sum(axis=1) >= observed).mean()), "exact"
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(ranks, (draws, n, k)).copy(), axis=2)
    hits = int(((shuffled.sum(axis=1) ** 2).sum(axis=1) >= observed).sum())
    return (1 + hits) / (1 + draws), "monte carlo"


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """Iman and Davenport's (1980) F = (N-1) chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) degrees of freedom.

    Why: Friedman's chi2 is conservative; Demšar (2006, eq. after 3.2.2) recommends this F instead. Full
    agreement of all data sets (chi2 = N(k-1)) gives F = inf and p = 0.
    """
    from scipy import stats

    denominator = n * (k - 1) - chi2
    if denominator <= _SLACK:
        return math.inf, 0.0
    f = (n - 1) * chi2 / denominator
    return float(f), float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """The difference of mean ranks above which two of k conditions over n data sets differ (Nemenyi 1963).

    Why: after Friedman's test, the post-hoc test of all pairs (Demšar 2006, section 3.2.2):
    CD = q_alpha sqrt(k (k+1) / (6 n)), q_alpha = the studentized range quantile (1 - alpha, k, df = inf) over
    sqrt(2) (Demšar's table 5: k = 4, alpha 0.05 -> 2.569; k = 7 -> 2.949).
    """
    if k < 2 or n < 1:
        raise ValueError(f"need k >= 2 conditions and n >= 1 data sets, got k={k}, n={n}")
    from scipy import stats

    q = float(stats.studentized_range.ppf(1 - alpha, k, math.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


# Equivalence and power


def tost_paired(a: npt.ArrayLike, b: npt.ArrayLike, margin: float) -> float | None:
    """p-value of the paired two one-sided tests that |mean(a - b)| < margin (Schuirmann 1987).

    Why: a non-significant difference is not evidence of no difference; equivalence within ``margin`` is
    shown when both one-sided tests (difference > -margin, difference < +margin) reject: p = the larger of
    their two p-values, and p < alpha is the same as the 1 - 2 alpha interval lying inside (-margin, margin).
    None with fewer than 3 pairs. Identical differences (sd = 0): 0.0 if |mean| < margin, else 1.0.
    """
    from scipy import stats

    d = _differences(a, b)
    if len(d) < MIN_SEEDS:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(len(d))
    lower = float(stats.t.sf((mean + margin) / se, len(d) - 1))
    upper = float(stats.t.cdf((mean - margin) / se, len(d) - 1))
    return max(lower, upper)


def minimum_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The paired difference a two-sided paired t-test at ``alpha`` detects with probability ``power``.

    Why: says what a study could have found when it found nothing (Cohen 1988): with the standard deviation
    sd of the paired differences over n pairs, MDD = (t_{1 - alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n)
    (the usual t approximation of the noncentral t). NaN with fewer than 2 pairs.
    """
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.nan
    quantiles = float(stats.t.ppf(1 - alpha / 2, n - 1)) + float(stats.t.ppf(power, n - 1))
    return quantiles * sd / math.sqrt(n)


def seeds_to_detect(sd: float, difference: float, alpha: float = 0.05, power: float = 0.8, most: int = 10_000) -> int:
    """The fewest paired seeds (>= 3) whose minimum detectable difference is at most ``difference``.

    Why: turns "inconclusive" into a budget: the n with ``minimum_detectable_difference(sd, n)`` <= difference,
    sd taken as the observed one. ``most`` + 1 when even ``most`` seeds would not do.
    """
    if not difference > 0 or not math.isfinite(sd):
        raise ValueError(f"need a positive difference and a finite sd, got {difference}, {sd}")
    for n in range(MIN_SEEDS, most + 1):
        if minimum_detectable_difference(sd, n, alpha, power) <= difference + _SLACK:
            return n
    return most + 1


def _differences(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"paired values need equal lengths, got {len(x)} and {len(y)}")
    return (x - y)[np.isfinite(x) & np.isfinite(y)]


def binomial_standard_error(accuracy: float, rows: int) -> float:
    """sqrt(p (1 - p) / m): the standard error of an accuracy measured on m test rows.

    Why: with a fixed split every seed is scored on the same m rows, so the seeds' spread leaves out how
    much another test set of the same size would move the score (Bouthillier et al. 2021).
    """
    if rows < 1 or not 0 <= accuracy <= 1:
        return math.nan
    return math.sqrt(accuracy * (1 - accuracy) / rows)


def fixed_split_interval(
    values: npt.ArrayLike, rows: int, low: float = 0.0, high: float = 1.0, level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """Mean with an interval covering the seeds and the test rows: half-width
    sqrt((t s / sqrt(n))^2 + (z se_binomial)^2), clipped to [low, high].

    Why: the seeds share one test set, so its sampling error does not average out over seeds; the two
    independent terms add in variance. Fewer than 3 values: (mean, None, None).
    """
    from scipy import stats

    x = _finite(values)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < MIN_SEEDS:
        return mean, None, None
    seeds = _t_quantile(level, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    rows_term = float(stats.norm.ppf(0.5 + level / 2)) * binomial_standard_error(min(max(mean, 0.0), 1.0), rows)
    half = math.hypot(seeds, rows_term)
    return mean, float(min(max(mean - half, low), high)), float(min(max(mean + half, low), high))


# Budget curves: bands and leaders


def expected_max_band(
    scores: npt.ArrayLike, maximize: bool = True, draws: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Percentile bootstrap band of the E_k curve: the n trials resampled with replacement ``draws`` times.

    Why: E_k from a dozen trials is itself uncertain; a band shows which differences between curves the
    trials can resolve (Dodge et al. 2019 report the variance; the bootstrap needs no distribution).
    """
    values = _finite(scores)
    if len(values) < 2:
        curve = expected_max_curve(values, maximize)
        return curve, curve
    rng = np.random.default_rng(seed)
    samples = rng.choice(values, size=(draws, len(values)), replace=True)
    curves = np.array([expected_max_curve(row, maximize) for row in samples])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
    return [float(v) for v in low], [float(v) for v in high]


def leaders(curves: dict[str, Sequence[float]], tie: float, maximize: bool = True) -> list[list[str]]:
    """For k = 1..(shortest curve), the conditions whose E_k is within ``tie`` of the best E_k (the leader and
    those tied with it), in the curves' order.

    Why: a swap of conditions by less than one validation example is noise, not a change of ranking.
    """
    if not curves:
        return []
    last = min(len(c) for c in curves.values())
    sign = 1.0 if maximize else -1.0
    found = []
    for k in range(last):
        values = {name: sign * float(curve[k]) for name, curve in curves.items() if math.isfinite(float(curve[k]))}
        best = max(values.values()) if values else math.nan
        found.append([name for name, value in values.items() if best - value < tie - _SLACK])
    return found


def settled_from(sequence: Sequence) -> int | None:
    """The smallest k (1-based) from which every element of ``sequence`` equals the last; None if empty."""
    if not sequence:
        return None
    k = len(sequence)
    while k > 1 and sequence[k - 2] == sequence[-1]:
        k -= 1
    return k


def simple_effects(table: pd.DataFrame, factors: list[str], value: str, unit: str) -> list[dict]:
    """In a 2x2 grid, each factor's effect at each level of the other, paired by unit (``_effect`` rows with
    effect = "simple" and ``at`` = the other factor's level).

    Why: when the interaction is real, a main effect averages two different effects and can point the wrong
    way for both (Box, Hunter and Hunter 2005, ch. 5): report the effect under each level instead.
    """
    levels = {f: _levels(table[f]) for f in factors}
    cells = table.groupby([unit, *factors], observed=True, sort=False)[value].mean().unstack(unit)
    cells = cells.reindex(pd.MultiIndex.from_product([levels[f] for f in factors], names=factors))
    cells = cells.loc[:, cells.notna().all(axis=0)]
    found = []
    for i, factor in enumerate(factors):
        other = factors[1 - i]
        base, level = levels[factor][0], levels[factor][1]
        for at in levels[other]:
            key = (lambda v, at=at: (v, at)) if i == 0 else (lambda v, at=at: (at, v))
            contrast = (cells.loc[key(level)] - cells.loc[key(base)]).to_numpy(dtype=float)
            found.append({**_effect("simple", factor, level, base, contrast), "at": f"{other} {at}"})
    return found
