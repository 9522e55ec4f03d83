"""Each statistic of harness.stats against an independent computation: scipy, Monte Carlo, or worked by hand."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.analysis.stats import (
    FRIEDMAN_CAVEAT,
    binomial_standard_error,
    bounded_mean_interval,
    contrast_test,
    expected_max_band,
    expected_max_curve,
    factorial_contrasts,
    fixed_split_interval,
    friedman,
    friedman_permutation_p,
    holm,
    iman_davenport,
    kaplan_meier_median,
    leaders,
    lr_robustness,
    nemenyi_critical_difference,
    ranking_at,
    ranking_settles_at,
    rows_variance_bound,
    seeds_for,
    settled_from,
    sign_flip_p,
)

# expected_max_curve


def test_expected_max_by_hand():
    curve = expected_max_curve([0.9, 0.2, 0.5])
    # sorted v = 0.2, 0.5, 0.9; n = 3
    # k=1: weights 1/3 each -> the mean 1.6 / 3
    # k=2: weights 1/9, 4/9 - 1/9 = 3/9, 1 - 4/9 = 5/9 -> (0.2 + 1.5 + 4.5) / 9 = 6.2 / 9
    # k=3: weights 1/27, 8/27 - 1/27 = 7/27, 1 - 8/27 = 19/27 -> (0.2 + 3.5 + 17.1) / 27 = 20.8 / 27
    assert curve == pytest.approx([1.6 / 3, 6.2 / 9, 20.8 / 27], abs=1e-12)
    assert all(type(e) is float for e in curve)
    assert expected_max_curve([]) == []


def test_expected_max_by_monte_carlo():
    scores = np.array([0.2, 0.5, 0.9, 0.55, 0.7])
    rng = np.random.default_rng(0)
    curve = expected_max_curve(scores)
    for k in range(1, len(scores) + 1):
        simulated = rng.choice(scores, size=(200_000, k), replace=True).max(axis=1).mean()
        assert curve[k - 1] == pytest.approx(simulated, abs=0.005)


def test_expected_max_minimized_is_the_expected_min():
    losses = [0.3, 0.1, 0.7]
    curve = expected_max_curve(losses, maximize=False)
    assert curve == pytest.approx([-e for e in expected_max_curve([-x for x in losses])], abs=1e-12)
    assert curve[0] == pytest.approx(np.mean(losses)) and curve[-1] < curve[0]
    # k = 3, sorted descending 0.7, 0.3, 0.1 with weights 1/27, 7/27, 19/27
    assert curve[2] == pytest.approx((0.7 + 7 * 0.3 + 19 * 0.1) / 27)


# ranking_at / ranking_settles_at


def test_ranking_settles_after_the_last_crossing():
    curves = {
        "a": [0.50, 0.60, 0.70, 0.75, 0.78],
        "b": [0.60, 0.65, 0.68, 0.70, 0.71],  # ahead of a at k = 1, 2; behind from k = 3
        "c": [0.40, 0.50, 0.55, 0.60],  # shortest: the common k ends at 4
    }
    assert ranking_at(curves, 1) == ["b", "a", "c"]
    assert ranking_at(curves, 3) == ["a", "b", "c"]
    assert ranking_settles_at(curves) == 3


def test_ranking_that_crosses_back_and_ties():
    curves = {"y": [0.6, 0.6, 0.7, 0.8], "x": [0.5, 0.7, 0.6, 0.8]}  # y first: the tie must go by name
    # x ahead at k=2, y ahead at k=3, tied at k=4 -> name order x, y
    assert ranking_at(curves, 4) == ["x", "y"]
    assert ranking_settles_at(curves) == 4
    # minimized, lower first: x, y at k=1; y, x at k=2; x, y at k=3 and at k=4 (the tie, by name)
    assert ranking_at(curves, 1, maximize=False) == ["x", "y"]
    assert ranking_settles_at(curves, maximize=False) == 3
    assert ranking_settles_at({"only": [0.1, 0.2]}) is None
    assert ranking_settles_at({"b": [0.1, 0.2, 0.3], "a": [0.2, 0.3, 0.4]}) == 1  # never crosses


# lr_robustness


def test_lr_robustness_constructed():
    # unsorted on purpose; log10 lr = -4 .. 0, searched range 1e-4 .. 10 (log10 -4 .. 1, 5 decades)
    lrs = [1e-1, 1e-4, 1.0, 1e-2, 1e-3]
    scores = [0.94, 0.50, math.nan, 0.95, 0.90]
    diverged = [False, False, True, False, False]
    out = lr_robustness(lrs, scores, diverged, low=1e-4, high=10.0)
    # best 0.95; within 0.01: 0.95 (1e-2) and 0.94 (1e-1, exactly at the tolerance) -> 1 decade
    assert out["good_lr_decades"] == pytest.approx(1.0)
    assert out["good_trials"] == 2
    # owned intervals: [-4, -3.5], [-3.5, -2.5], [-2.5, -1.5], [-1.5, -0.5], [-0.5, 1]; diverged owns 1.5 of 5
    assert out["diverged_share_of_range"] == pytest.approx(0.3)


def test_lr_robustness_one_good_trial_and_given_best():
    lrs = [1e-3, 1e-2, 1e-1]
    out = lr_robustness(lrs, [0.7, 0.9, 0.5], [False, False, True], low=1e-3, high=1e-1)
    assert out["good_lr_decades"] == 0.0 and out["good_trials"] == 1
    # owned: [-3, -2.5], [-2.5, -1.5], [-1.5, -1]: the diverged trial owns 0.5 of 2 decades
    assert out["diverged_share_of_range"] == pytest.approx(0.25)
    wider = lr_robustness(lrs, [0.7, 0.9, 0.5], [False, False, True], best=0.9, tolerance=0.2, low=1e-3, high=1e-1)
    assert wider["good_lr_decades"] == pytest.approx(1.0)
    losses = lr_robustness(lrs, [0.30, 0.31, 0.1], [False, False, True], maximize=False, low=1e-3, high=1e-1)
    assert losses["good_lr_decades"] == pytest.approx(1.0)


# holm


def test_holm_by_hand():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # None passes through and is not counted: the same m = 4
    assert holm([0.01, None, 0.04, 0.03, 0.005]) == [
        pytest.approx(0.03),
        None,
        pytest.approx(0.06),
        pytest.approx(0.06),
        pytest.approx(0.02),
    ]
    # capped at 1: 0.6 * 2 = 1.2 -> 1.0, then max(1.0, 0.7) = 1.0
    assert holm([0.7, 0.6]) == [1.0, 1.0]
    assert holm([]) == [] and holm([None]) == [None]


# bounded_mean_interval


def test_bounded_mean_interval_clips_at_the_bound():
    values = [0.99, 1.0, 0.97, 0.98]
    mean, low, high = bounded_mean_interval(values)
    reference = sps.t.interval(0.95, 3, loc=np.mean(values), scale=sps.sem(values))
    assert reference[1] > 1.0  # the unclipped interval passes the bound
    assert mean == pytest.approx(np.mean(values))
    assert low == pytest.approx(reference[0])
    assert high == 1.0
    assert bounded_mean_interval([0.5, 0.6, 0.7], low=0.55, high=0.65) == (pytest.approx(0.6), 0.55, 0.65)


def test_bounded_mean_interval_fewer_than_three():
    assert bounded_mean_interval([0.8, math.nan, 0.9]) == (pytest.approx(0.85), None, None)
    mean, low, high = bounded_mean_interval([])
    assert math.isnan(mean) and low is None and high is None


# kaplan_meier_median


def test_kaplan_meier_median_censored_by_hand():
    # times 2, 3, 3, 5, 8; reached T, T, F, T, F
    # t=2: at risk 5, 1 event -> S = 4/5 = 0.8
    # t=3: at risk 4 (the censored 3 is still at risk), 1 event -> S = 0.8 * 3/4 = 0.6
    # t=5: at risk 2 (5, 8), 1 event -> S = 0.6 * 1/2 = 0.3 <= 0.5 -> median 5
    # (dropping the censored seeds would give the median of 2, 3, 5 = 3)
    assert kaplan_meier_median([2, 3, 3, 5, 8], [True, True, False, True, False]) == 5.0
    # a seed censored at t is at risk at t: t=1: 5 at risk, S = 4/5; t=2: 3 at risk (2, 2, 2), S = 4/5 * 2/3 = 0.53
    # -> never <= 0.5 (counting the censored seeds out at their own time would give 3/4 * 1/2 = 0.375, median 2)
    assert kaplan_meier_median([1, 1, 2, 2, 2], [True, False, True, False, False]) is None
    # S: 3/4 at t=1, then censored; never <= 0.5
    assert kaplan_meier_median([1, 4, 4, 4], [True, False, False, False]) is None


@pytest.mark.parametrize("times", [[4, 1, 7, 3, 9], [2, 6, 5, 3], [3, 3, 3, 8], [5]])
def test_kaplan_meier_median_without_censoring_is_the_lower_median(times):
    lower = float(np.sort(times)[(len(times) - 1) // 2])
    assert kaplan_meier_median(times, [True] * len(times)) == lower


# factorial_effects


def _grid(interaction_noise, seed=0):
    """A 2x2 grid on 6 seeds: y = unit + 0.10 A + 0.05 B + 0.03 A B (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for unit in range(6):
        offset = rng.normal(0.8, 0.05)
        for a, loss in enumerate(["mse", "ce"]):
            for b, opt in enumerate(["sgd", "adam"]):
                y = offset + 0.10 * a + 0.05 * b + 0.03 * a * b + interaction_noise * rng.normal()
                rows.append({"loss": loss, "optimizer": opt, "seed": unit, "acc": y})
    return pd.DataFrame(rows)


# friedman


def test_friedman_agrees_with_scipy():
    rng = np.random.default_rng(5)
    table = pd.DataFrame(rng.normal(size=(6, 4)) + [0.0, 0.3, 0.6, 0.9], columns=list("abcd"))
    table.iloc[0, :2] = 0.5  # a tie within a data set
    out = friedman(table)
    reference = sps.friedmanchisquare(*[table[c] for c in table.columns])
    assert out["statistic"] == pytest.approx(float(reference.statistic), rel=1e-10)
    assert out["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-10)
    assert out["caveat"] is None
    assert sum(out["mean_ranks"].values()) == pytest.approx(4 * 5 / 2)


def test_friedman_ranks_by_hand_and_caveat():
    table = pd.DataFrame({"a": [0.9, 0.7, 0.8], "b": [0.8, 0.7, 0.6], "c": [0.7, 0.9, 0.5]}, index=["x", "y", "z"])
    out = friedman(table)
    # x: a 1, b 2, c 3; y: c 1, a and b tie for 2 and 3 -> 2.5; z: a 1, b 2, c 3
    assert out["ranks"].to_numpy().tolist() == [[1, 2, 3], [2.5, 2.5, 1], [1, 2, 3]]
    assert out["mean_ranks"] == pytest.approx({"a": 4.5 / 3, "b": 6.5 / 3, "c": 7 / 3})
    assert out["caveat"] == FRIEDMAN_CAVEAT
    reference = sps.friedmanchisquare(table["a"], table["b"], table["c"])
    assert out["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-10)
    two = friedman(table[["a", "b"]])
    assert two["statistic"] is None and two["p_value"] is None


def test_friedman_exact_p_from_friedmans_table():
    # k = 3, N = 3, all data sets rank alike: 1 of the 3!^2 = 36 arrangements of rows 2 and 3 (row 1 fixed)
    # reaches chi2 = 6 (Friedman 1937 table: P = 0.028); k = 3, N = 4: chi2 = 8, P = 1/216 = 0.0046.
    three = pd.DataFrame([[0.9, 0.8, 0.7]] * 3, columns=list("abc"))
    out = friedman(three)
    assert out["statistic"] == pytest.approx(6.0)
    assert out["p_value_permutation"] == pytest.approx(1 / 36)
    assert out["permutation_method"] == "exact"
    assert out["p_value"] == pytest.approx(math.exp(-3))  # chi2(2) approximation, much smaller than exact 0.028
    assert friedman(pd.DataFrame([[0.9, 0.8, 0.7]] * 4, columns=list("abc")))["p_value_permutation"] == pytest.approx(
        1 / 216
    )


def test_friedman_monte_carlo_agrees_with_enumeration_and_is_seeded():
    rng = np.random.default_rng(3)
    ranks = np.array([sps.rankdata(-rng.normal(size=4) - [0, 0.5, 1, 1.5]) for _ in range(4)])
    exact, method = friedman_permutation_p(ranks)
    assert method == "exact"
    approximate, method = friedman_permutation_p(ranks, max_enumerated=10, draws=20_000, seed=1)
    assert method == "monte carlo"
    assert approximate == pytest.approx(exact, abs=0.01)
    assert friedman_permutation_p(ranks, max_enumerated=10, seed=1) == friedman_permutation_p(
        ranks, max_enumerated=10, seed=1
    )


def test_friedman_permutation_with_ties_never_below_chance_of_observed():
    ranks = np.array([[1.5, 1.5, 3.0], [1.0, 2.5, 2.5], [2.0, 2.0, 2.0]])
    p, _ = friedman_permutation_p(ranks)
    assert 0 < p <= 1
    # the all-tied row is the same under every permutation; count over the 3! orderings of row 2
    sums = [np.array([1.5, 1.5, 3.0]) + np.array(q) + 2.0 for q in itertools.permutations([1.0, 2.5, 2.5])]
    observed = float((ranks.sum(axis=0) ** 2).sum())
    assert p == pytest.approx(np.mean([float((s**2).sum()) >= observed - 1e-9 for s in sums]))


def test_iman_davenport_matches_demsar_example():
    # Demšar (2006), section 3.2.2: N = 14 data sets, k = 4, chi2_F = 9.28 -> F_F = 3.69, F(3, 39)
    f, p = iman_davenport(9.28, 14, 4)
    assert f == pytest.approx(3.69, abs=0.005)
    assert p == pytest.approx(float(sps.f.sf(f, 3, 39)))
    assert iman_davenport(2 * 3, 3, 3) == (math.inf, 0.0)


@pytest.mark.parametrize(
    ("k", "alpha", "q"),
    [(2, 0.05, 1.960), (3, 0.05, 2.343), (4, 0.05, 2.569), (7, 0.05, 2.949), (10, 0.05, 3.164), (4, 0.10, 2.291)],
)
def test_nemenyi_critical_difference_from_demsar_table(k, alpha, q):
    # q_alpha is tabled to 3 decimals: compare CD / sqrt(k (k+1) / (6 n)) with it
    n = 10
    assert nemenyi_critical_difference(k, n, alpha) / math.sqrt(k * (k + 1) / (6 * n)) == pytest.approx(q, abs=0.0011)


def test_nemenyi_critical_difference_demsar_example_and_in_friedman():
    # Demšar (2006): k = 4, N = 14 -> CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25
    assert nemenyi_critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)
    table = pd.DataFrame([[0.9, 0.8, 0.7, 0.6]] * 5, columns=list("abcd"))
    out = friedman(table)
    assert out["critical_difference"] == pytest.approx(nemenyi_critical_difference(4, 5))
    assert out["iman_davenport_f"] == math.inf
    with pytest.raises(ValueError):
        nemenyi_critical_difference(1, 5)


# equivalence and power


def test_fixed_split_interval_is_not_zero_width_when_every_seed_scores_the_same():
    """Issue 24: moons-cross_entropy scored 384/400 with all 5 seeds; the seeds' interval is [0.96, 0.96]."""
    values = [384 / 400] * 5
    assert bounded_mean_interval(values)[1:] == (0.96, 0.96)
    mean, low, high = fixed_split_interval(values, 400)
    se = math.sqrt(0.96 * 0.04 / 400)
    assert binomial_standard_error(0.96, 400) == pytest.approx(se)
    assert (low, high) == pytest.approx((0.96 - 1.959964 * se, 0.96 + 1.959964 * se))
    assert high - low > 0.03


# budget curves: bands and leaders


def test_expected_max_band_contains_the_curve_and_is_seeded():
    scores = [0.5, 0.7, 0.9, 0.92, 0.6, 0.8]
    low, high = expected_max_band(scores, seed=1)
    curve = expected_max_curve(scores)
    assert all(lo - 1e-12 <= c <= hi + 1e-12 for lo, c, hi in zip(low, curve, high))
    assert high[-1] <= 0.92 and low[0] < curve[0] < high[0]
    assert expected_max_band(scores, seed=1) == (low, high)


def test_leaders_count_differences_under_one_validation_example_as_ties():
    """Issue 24: conditions one validation example apart (1/360) are tied, not reordered."""
    tie = 1 / 360
    curves = {"a": [0.90, 0.95, 0.960], "b": [0.91, 0.95 - 0.5 / 360, 0.960 - 1.5 / 360], "c": [0.5, 0.6, 0.7]}
    assert leaders(curves, tie) == [["b"], ["a", "b"], ["a"]]
    assert settled_from([["b"], ["a", "b"], ["a", "b"]]) == 2
    assert settled_from([["a"], ["a"]]) == 1 and settled_from([]) is None
    assert leaders({"a": [0.2], "b": [0.1]}, 0.05, maximize=False) == [["b"]]


# contrasts over seeds and test rows


def _brute_sign_flip(d):
    """Every sign pattern written out, the share with |sum| >= the observed."""
    observed = abs(sum(d))
    patterns = list(itertools.product([1, -1], repeat=len(d)))
    return sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12 for signs in patterns) / len(patterns)


@pytest.mark.parametrize("d", [[1, 2, 3], [0.5, -0.1, 0.3, 0.2, 0.4], [2.0] * 5, [0.0, 0.0, 0.0], [3, -1, 2, 2, -1, 4]])
def test_sign_flip_p_is_the_share_of_sign_patterns(d):
    assert sign_flip_p(d) == pytest.approx(_brute_sign_flip(d))


def test_sign_flip_cannot_go_below_two_over_two_to_the_n():
    """Issue 33: 3 seeds each 2 of 36 rows apart: no test over 3 seeds can give p below 0.25."""
    assert sign_flip_p([2 / 36] * 3) == 0.25
    assert sign_flip_p([2 / 36] * 6) == pytest.approx(2 / 64)


def test_zero_variance_over_seeds_and_no_rows_term_is_the_exact_sign_flip():
    """Issue 33: wine-adam vs wine-adagrad, each seed exactly 2 of 36 rows apart, sd 6.4e-17 of float noise:
    the t-test gave p 3.1e-30."""
    d = [34 / 36 - 32 / 36, 35 / 36 - 33 / 36, 33 / 36 - 31 / 36]
    assert 0 < np.std(d) < 1e-15  # float noise, not zero
    out = contrast_test(d)
    assert out["test"] == "exact sign-flip over seeds (no variance)"
    assert out["p_value"] == 0.25 and out["ci_low"] is None and out["p_equivalence"] is None


def test_seeds_alone_is_the_paired_t_test():
    rng = np.random.default_rng(3)
    a = rng.normal(0.9, 0.02, size=7)
    b = a - 0.01 + rng.normal(0, 0.01, size=7)
    out = contrast_test(a - b, margin=0.02)
    reference = sps.ttest_rel(a, b)
    interval = reference.confidence_interval(0.95)
    assert out["test"] == "paired t (seeds)" and out["df"] == 6
    assert out["p_value"] == pytest.approx(float(reference.pvalue), rel=1e-10)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((float(interval.low), float(interval.high)), rel=1e-10)
    lower = sps.ttest_1samp(a - b, -0.02, alternative="greater").pvalue
    upper = sps.ttest_1samp(a - b, 0.02, alternative="less").pvalue
    assert out["p_equivalence"] == pytest.approx(max(lower, upper), rel=1e-10)
    few = contrast_test([0.1, 0.2])
    assert few["p_value"] is None and few["estimate"] == pytest.approx(0.15)


def test_fixed_split_adds_the_rows_variance_with_welch_degrees_of_freedom():
    """Per row, the contrast of the seeds' mean correctness: its variance over m rows adds to the seeds'."""
    rng = np.random.default_rng(4)
    m, seeds = 36, 3
    a = rng.random((seeds, m)) < 0.92
    b = a.copy()
    b[:, :2] = ~a[:, :2]  # the same 2 rows flipped for every seed: b right where a is wrong there, and back
    b[:, 0], b[:, 1], a[:, 0], a[:, 1] = False, False, True, True
    per_seed = a.mean(axis=1) - b.mean(axis=1)
    per_row = a.mean(axis=0) - b.mean(axis=0)
    out = contrast_test(per_seed, per_row, rows=m, margin=0.01)
    assert out["estimate"] == pytest.approx(2 / 36)
    v_rows = np.var(per_row, ddof=1) / m  # seeds do not vary here: only the rows' term
    assert out["test"] == "t (seeds + test rows)" and out["df"] == pytest.approx(m - 1)
    t = (2 / 36) / math.sqrt(v_rows)
    assert out["p_value"] == pytest.approx(2 * sps.t.sf(t, m - 1), rel=1e-10)
    assert out["p_value"] > 0.05  # 2 rows of 36 are not a significant difference
    # both terms: Welch-Satterthwaite by hand
    seed_part = np.array([0.01, 0.03, 0.02])
    out = contrast_test(seed_part, per_row, rows=m)
    vs, vr = np.var(seed_part, ddof=1) / 3, np.var(per_row, ddof=1) / m
    df = (vs + vr) ** 2 / (vs**2 / 2 + vr**2 / (m - 1))
    assert out["df"] == pytest.approx(df)
    assert out["p_value"] == pytest.approx(2 * sps.t.sf(0.02 / math.sqrt(vs + vr), df), rel=1e-10)


def test_rows_bound_is_never_below_the_true_rows_variance():
    rng = np.random.default_rng(5)
    for _ in range(200):
        p = rng.uniform(0.5, 1, size=3)
        rows = rng.random((3, 4, 50)) < p[:, None, None]  # condition x seed x row
        w = rng.normal(size=3)
        per_row = np.tensordot(w, rows.mean(axis=1), axes=1)
        bound = rows_variance_bound(rows.mean(axis=(1, 2)), w)
        assert np.var(per_row) <= bound + 1e-12


def test_seeds_for_answers_both_questions_and_knows_when_rows_limit_them():
    seeds_only = contrast_test([0.01, -0.004, 0.006, 0.0, 0.012])
    plan = seeds_for(seeds_only, 0.01)
    sd = math.sqrt(seeds_only["seed_variance"])
    # at the planned n the noncentral t gives about 80% power; one seed fewer does not reach the margin
    n = plan["seeds_to_detect"]
    critical = sps.t.ppf(0.975, n - 1)
    assert 0.75 < sps.nct.sf(critical, n - 1, 0.01 / (sd / math.sqrt(n))) < 0.9
    k = plan["seeds_to_show_equivalence"]  # TOST at a true difference of 0: (t_.95 + t_.90) se within the margin

    def reach(k):
        return (sps.t.ppf(0.95, k - 1) + sps.t.ppf(0.9, k - 1)) * sd / math.sqrt(k)

    assert reach(k) <= 0.01 < reach(k - 1)
    # 36 fixed test rows that disagree on 4: no number of seeds brings the rows' term under 1 point
    per_row = np.zeros(36)
    per_row[:4] = [1, -1, 1, 1]
    rows_limited = contrast_test([0.05, 0.06, 0.055], per_row, rows=36)
    assert seeds_for(rows_limited, 0.01) == {
        "detectable": pytest.approx(seeds_for(rows_limited, 0.01)["detectable"]),
        "seeds_to_detect": None,
        "seeds_to_show_equivalence": None,
    }


def test_factorial_contrasts_of_a_2x2_against_cell_means():
    levels = {
        "mse-sgd": {"loss": "mse", "opt": "sgd"},
        "mse-mom": {"loss": "mse", "opt": "mom"},
        "ce-sgd": {"loss": "ce", "opt": "sgd"},
        "ce-mom": {"loss": "ce", "opt": "mom"},
    }
    y = {"mse-sgd": 0.90, "mse-mom": 0.911, "ce-sgd": 0.95, "ce-mom": 0.946}
    found = factorial_contrasts(levels)
    value = {(e["effect"], e["factor"], e.get("at")): sum(w * y[c] for c, w in e["weights"].items()) for e in found}
    assert value[("main", "loss", None)] == pytest.approx((0.95 + 0.946 - 0.90 - 0.911) / 2)
    assert value[("main", "opt", None)] == pytest.approx((0.911 + 0.946 - 0.90 - 0.95) / 2)
    assert value[("interaction", "loss x opt", None)] == pytest.approx(0.946 - 0.911 - 0.95 + 0.90)
    assert value[("simple", "opt", "loss mse")] == pytest.approx(0.011)
    assert value[("simple", "opt", "loss ce")] == pytest.approx(-0.004)
    assert value[("simple", "loss", "opt mom")] == pytest.approx(0.035)
    # one factor, or a missing cell: no factorial contrasts
    assert factorial_contrasts({k: {"loss": v["loss"]} for k, v in levels.items() if k.endswith("sgd")}) == []
    assert factorial_contrasts({k: v for k, v in levels.items() if k != "ce-mom"}) == []


def test_factorial_contrasts_three_levels():
    levels = {f"{o}-{b}": {"opt": o, "batch": b} for o in ("sgd", "adam", "rms") for b in ("32", "64")}
    mains = [(e["factor"], e["level"], e["baseline"]) for e in factorial_contrasts(levels)]
    assert mains == [("opt", "adam", "sgd"), ("opt", "rms", "sgd"), ("batch", "64", "32")]
    weights = factorial_contrasts(levels)[0]["weights"]
    assert weights == {"sgd-32": -0.5, "sgd-64": -0.5, "adam-32": 0.5, "adam-64": 0.5, "rms-32": 0.0, "rms-64": 0.0}


def test_leaders_with_overlapping_bands_are_tied():
    """Issue 33: a leader stated while the bootstrap bands overlapped at every k."""
    curves = {"a": [0.90, 0.95], "b": [0.88, 0.90]}
    bands = {"a": ([0.85, 0.94], [0.93, 0.96]), "b": ([0.80, 0.85], [0.91, 0.92])}
    assert leaders(curves, 0.0, bands=bands) == [["a", "b"], ["a"]]
    assert leaders(curves, 0.0) == [["a"], ["a"]]


def test_sign_flip_beyond_sixteen_seeds_is_a_seeded_monte_carlo_estimate():
    """The hand-written enumeration refused more than 20 seeds (ValueError in compare); scipy's test samples."""
    p = sign_flip_p([0.01] * 25)
    assert p == sign_flip_p([0.01] * 25) and 0 < p <= 2e-4  # at most (1 + 1) / (1 + 9999)
    assert sign_flip_p([0.01, -0.01] * 12) == pytest.approx(1.0, abs=0.02)
