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


def leaders(
    curves: dict[str, Sequence[float]],
    tie: float,
    maximize: bool = True,
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> list[list[str]]:
    """For k = 1..(shortest curve), the conditions tied for the lead: the best E_k and those within ``tie``
    of it or, with ``bands`` ((low, high) per condition, on the curves' scale), whose band reaches the best's
    band; in the curves' order.

    Why: a swap of conditions by less than one validation example is noise, and so is a lead the trials
    cannot resolve (overlapping bootstrap bands): a leader is named only once its band separates.
    """
    if not curves:
        return []
    last = min(len(c) for c in curves.values())
    sign = 1.0 if maximize else -1.0
    found: list[list[str]] = []
    for k in range(last):
        values = {name: sign * float(curve[k]) for name, curve in curves.items() if math.isfinite(float(curve[k]))}
        if not values:
            found.append([])
            continue
        best = max(values, key=values.__getitem__)
        tied = []
        for name, value in values.items():
            close = name == best or values[best] - value < tie - _SLACK
            if bands is not None and not close:
                low, high = bands[name]
                best_low, best_high = bands[best]
                reach = sign * float(high[k] if maximize else low[k])
                floor = sign * float(best_low[k] if maximize else best_high[k])
                close = reach >= floor - _SLACK
            if close:
                tied.append(name)
        found.append(tied)
    return found


def settled_from(sequence: Sequence) -> int | None:
    """The smallest k (1-based) from which every element of ``sequence`` equals the last; None if empty."""
    if not sequence:
        return None
    k = len(sequence)
    while k > 1 and sequence[k - 2] == sequence[-1]:
        k -= 1
    return k


# Contrasts over seeds and test rows (pairs and factorial effects)


def factorial_contrasts(levels: dict[str, dict[str, object]]) -> list[dict]:
    """The contrasts of a full factorial grid of conditions, as weights over the conditions.

    ``levels``: condition -> {factor: level}. The factors are those whose level varies; with fewer than two,
    or a grid with a cell missing, none. Main effect of level L of factor F: the mean of the cells at F = L
    minus the mean of the cells at F's first level (levels in order of first appearance): the classical
    factorial estimate (Box, Hunter and Hunter 2005, ch. 5). For exactly two factors of two levels, the
    interaction (y[A1,B1] - y[A0,B1]) - (y[A1,B0] - y[A0,B0]) and each factor's simple effect at each level
    of the other (``at``): when the factors interact, a main effect averages two different effects and can
    point the wrong way for both.
    """
    names = list(levels)
    factors = [f for f in (levels[names[0]] if names else {}) if len({str(levels[n].get(f)) for n in names}) > 1]
    if len(factors) < 2:
        return []
    order = {f: list(dict.fromkeys(levels[n][f] for n in names)) for f in factors}
    cells = {tuple(levels[n][f] for f in factors): n for n in names}
    if len(cells) != len(names) or len(cells) != math.prod(len(v) for v in order.values()):
        return []
    found = []
    for factor in factors:
        base = order[factor][0]
        for level in order[factor][1:]:
            cells_at = [n for n in names if levels[n][factor] == level]
            baseline = [n for n in names if levels[n][factor] == base]
            weights = {
                n: (1 / len(cells_at) if n in cells_at else -1 / len(baseline) if n in baseline else 0.0) for n in names
            }
            found.append({"effect": "main", "factor": factor, "level": level, "baseline": base, "weights": weights})
    if len(factors) == 2 and all(len(order[f]) == 2 for f in factors):
        (a0, a1), (b0, b1) = order[factors[0]], order[factors[1]]
        weights = {cells[(a1, b1)]: 1.0, cells[(a0, b1)]: -1.0, cells[(a1, b0)]: -1.0, cells[(a0, b0)]: 1.0}
        found.append(
            {
                "effect": "interaction",
                "factor": " x ".join(factors),
                "level": f"{a1}:{b1}",
                "baseline": f"{a0}:{b0}",
                "weights": weights,
            }
        )
        for i, factor in enumerate(factors):
            other = factors[1 - i]
            base, level = order[factor][0], order[factor][1]
            for at in order[other]:
                key = (lambda v, at=at: (v, at)) if i == 0 else (lambda v, at=at: (at, v))
                weights = {cells[key(level)]: 1.0, cells[key(base)]: -1.0}
                found.append(
                    {
                        "effect": "simple",
                        "factor": factor,
                        "level": level,
                        "baseline": base,
                        "weights": weights,
                        "at": f"{other} {at}",
                    }
                )
    return found


def sign_flip_p(differences: npt.ArrayLike) -> float:
    """Exact two-sided p of the sign-flip permutation test that the paired differences are centred on 0.

    Why: it needs no variance, so it stays valid when every seed differs by the same number of test rows
    (a t-test's p is then meaningless: its sd is 0 or float noise); its smallest p is 2 / 2^n (0.25 from 3
    seeds). scipy's ``permutation_test`` enumerates all 2^n sign patterns of the one sample (Fisher 1935,
    Pitman 1937) up to 16 seeds (65,536 patterns, 0.2 s); beyond, 9,999 random patterns (seeded) estimate it.
    """
    from scipy import stats

    d = _finite(differences)
    if len(d) == 0:
        return math.nan
    exact = len(d) <= SIGN_FLIP_EXACT_SEEDS
    test = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=np.inf if exact else 9_999,
        alternative="two-sided",
        rng=np.random.default_rng(0),
    )
    return float(test.pvalue)


SIGN_FLIP_EXACT_SEEDS = 16
"""Up to this many seeds the sign-flip test enumerates its 2^n patterns (20 seeds took 5.7 s in scipy)."""


def contrast_test(
    per_seed: npt.ArrayLike,
    per_row: npt.ArrayLike | None = None,
    *,
    rows_variance_bound: float | None = None,
    rows: int | None = None,
    margin: float | None = None,
    level: float = 0.95,
) -> dict:
    """A contrast of test accuracies (a pair a - b, a main effect, an interaction) over the seeds that trained
    every condition in it: its estimate, interval, p-value, the test it comes from, and TOST within ``margin``.

    Why: with a fixed split every seed is scored on the same test rows, so a second test set of that size
    would move the contrast by its per-row spread; a paired test over seeds alone leaves that out and calls 2
    rows of 36 "significant". The variance is var_seeds(contrast) / n + var_rows(per-row contrast of the seeds'
    mean correctness) / m: the per-row term is the McNemar-type variance of the rows' correctness differences
    (Dietterich 1998; Bouthillier et al. 2021); the sum counts the seed-by-row term twice, so it errs wide.
    Degrees of freedom by Welch-Satterthwaite. ``per_row`` None and ``rows_variance_bound`` given (runs that
    did not record their rows): the bound replaces the per-row variance. Neither (a varied split): the seeds
    alone, the paired t-test. A variance that is zero or float noise (< 1e-9 in sd): no t-test; the exact
    sign-flip test over seeds (``sign_flip_p``), no interval, no equivalence. Fewer than 3 seeds: estimate only.
    """
    from scipy import stats

    d = _finite(per_seed)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    result: dict = {
        "estimate": mean,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "test": "untested (fewer than 3 seeds)",
        "n": n,
        "seed_variance": None,
        "rows_variance": None,
        "rows": rows,
        "df": None,
        "p_equivalence": None,
    }
    if n < MIN_SEEDS:
        return result
    seed_var = _no_noise(float(d.var(ddof=1)))
    rows_var, rows_kind, rows = _rows_term(per_row, rows_variance_bound, rows)
    result.update(seed_variance=seed_var, rows_variance=rows_var, rows=rows)
    variance = seed_var / n + (rows_var / rows if rows_var is not None and rows else 0.0)
    if variance == 0.0:
        result.update(p_value=sign_flip_p(d), test="exact sign-flip over seeds (no variance)")
        return result
    df = welch_df(seed_var, n, rows_var, rows)
    se = math.sqrt(variance)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    test = f"t (seeds + {rows_kind})" if rows_var is not None else "paired t (seeds)"
    result.update(ci_low=mean - half, ci_high=mean + half, p_value=p, test=test, df=df)
    if margin is not None:
        lower = float(stats.t.sf((mean + margin) / se, df))
        upper = float(stats.t.cdf((mean - margin) / se, df))
        result["p_equivalence"] = max(lower, upper)
    return result


def _no_noise(variance: float) -> float:
    """A variance whose sd is float noise (< 1e-9) is 0: 34/36 - 32/36 differs across seeds in the 17th digit."""
    return 0.0 if math.sqrt(max(variance, 0.0)) <= _SLACK else variance


def _rows_term(
    per_row: npt.ArrayLike | None, bound: float | None, rows: int | None
) -> tuple[float | None, str, int | None]:
    """(per-row variance, what it is, rows): recorded rows, else the bound, else none (a varied split)."""
    if rows and per_row is not None:
        r = _finite(per_row)
        return _no_noise(float(r.var(ddof=1)) if len(r) > 1 else 0.0), "test rows", len(r)
    if rows and bound is not None:
        return _no_noise(float(bound)), "test rows, bounded", rows
    return None, "", rows


def welch_df(seed_var: float, n: int, rows_var: float | None, rows: int | None) -> float:
    """Welch-Satterthwaite degrees of freedom of var_seeds / n + var_rows / m."""
    a = seed_var / n
    b = rows_var / rows if rows_var is not None and rows else 0.0
    denominator = (a * a / (n - 1) if n > 1 else 0.0) + (b * b / (rows - 1) if b and rows and rows > 1 else 0.0)
    return float((a + b) ** 2 / denominator) if denominator > 0 else float(max(n - 1, 1))


def seeds_for(test: dict, difference: float, alpha: float = 0.05, power: float = 0.8, most: int = 10_000) -> dict:
    """Seeds that would show a true difference of ``difference`` (two-sided test at ``alpha``) and seeds that
    would show equivalence within ``difference`` when the true difference is 0 (TOST), each with ``power``,
    with the observed variances; None for either when no number of seeds can (the fixed test rows' variance
    alone is too large), and the smallest detectable difference with the seeds used.

    Why: "inconclusive" is a budget question; with a fixed split more seeds shrink only the seeds' term
    (Cohen 1988 for the t approximation: (t_{1-a/2} + t_{power}) se; TOST: (t_{1-a} + t_{1-(1-power)/2}) se).
    """
    from scipy import stats

    seed_var, rows_var, rows, n = test["seed_variance"], test["rows_variance"], test["rows"], test["n"]
    empty = {"detectable": None, "seeds_to_detect": None, "seeds_to_show_equivalence": None}
    if seed_var is None or not difference > 0:
        return empty

    def se(k):
        return math.sqrt(seed_var / k + (rows_var / rows if rows_var is not None and rows else 0.0))

    def reaches(quantiles, k):
        return quantiles(welch_df(seed_var, k, rows_var, rows)) * se(k) <= difference + _SLACK

    def needed(quantiles):
        """The fewest seeds that reach; None when ``most`` do not (the rows' term alone may be too wide)."""
        if not reaches(quantiles, most):
            return None
        low, high = MIN_SEEDS, most  # se and the t quantiles fall as seeds grow: bisect
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if reaches(quantiles, middle) else (middle + 1, high)
        return low

    def detect(df):
        return float(stats.t.ppf(1 - alpha / 2, df)) + float(stats.t.ppf(power, df))

    def equivalence(df):
        return float(stats.t.ppf(1 - alpha, df)) + float(stats.t.ppf(1 - (1 - power) / 2, df))

    df = welch_df(seed_var, n, rows_var, rows)
    return {
        "detectable": detect(df) * se(n) if se(n) > 0 else None,
        "seeds_to_detect": needed(detect),
        "seeds_to_show_equivalence": needed(equivalence),
    }


def rows_variance_bound(accuracies: Sequence[float], weights: Sequence[float]) -> float:
    """The largest per-row variance a contrast sum_c w_c (mean correctness of condition c on a row) can have
    when only each condition's accuracy p_c is known: (sum_c |w_c| sqrt(p_c (1 - p_c)))^2 (perfectly
    opposed rows). For runs recorded without their per-row correctness: wide, never narrow."""
    return float(sum(abs(w) * math.sqrt(max(p * (1 - p), 0.0)) for p, w in zip(accuracies, weights)) ** 2)
