"""The comparison's statistics applied to a study's records: what is compared with what, and the sentences
written from it. The formulas themselves are checked in test_stats.py."""

import base64
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from harness.analysis import comparisons as analysis
from harness.analysis.findings import findings
from harness.analysis.summary import format_table, summarize
from harness.studies.parse import read_study
from tests.helpers import write_study

GRID = """
name = "grid"
[fixed]
dataset = "iris"
[conditions]
loss = ["mse", "cross_entropy"]
[conditions.optimizer]
sgd = { optimizer = "sgd", momentum = 0.0 }
momentum = { optimizer = "sgd", momentum = 0.9 }
[search]
lr = { low = 0.001, high = 10.0, log = true }
epochs = { low = 3, high = 8 }
[budget]
trials = 4
[confirm]
seeds = 4
"""

DATASETS = """
name = "sets"
[conditions]
dataset = ["iris", "wine", "digits"]
loss = ["mse", "cross_entropy", "mse_logits"]
[search]
lr = { low = 0.001, high = 10.0, log = true }
[budget]
trials = 3
[confirm]
seeds = 3
"""


def _records(study, accuracy, search=None, target=None, test_rows=None):
    """A records table: ``accuracy(condition, seed)`` per confirmation run, ``search(condition)`` ->
    [(lr, val_accuracy, state)] per trial, ``target(condition, seed)`` -> epoch reached or None. ``test_rows``: a
    fixed test split of that many rows whose per-row correctness each run records, the round(accuracy x
    test_rows) easiest rows right (the conditions agree on the rest), the accuracy then that count over them."""
    rows, clock = [], 0
    for condition in study.conditions:
        for trial, (lr, score, state) in enumerate((search or (lambda c: []))(condition.name)):
            clock += 1
            rows.append(
                {
                    "run_id": f"s{clock}",
                    "status": "FINISHED",
                    "start_time": clock,
                    "kind": "search",
                    "condition": condition.name,
                    "optuna_study": study.optuna_name(condition),
                    "trial": trial,
                    "seed": 0,
                    "state": state,
                    "best_search_trial": None,
                    "epochs_to_target": math.nan,
                    "param.lr": str(lr),
                    "metric.val_accuracy": score,
                    "metric.epochs_run": 8.0,
                }
            )
        for seed in study.confirm_seed_values():
            clock += 1
            reached = (target or (lambda c, s: 3))(condition.name, seed)
            rows.append(
                {
                    "run_id": f"c{clock}",
                    "status": "FINISHED",
                    "start_time": clock,
                    "kind": "confirm",
                    "condition": condition.name,
                    "optuna_study": study.optuna_name(condition, "confirm"),
                    "trial": None,
                    "seed": seed,
                    "state": "complete",
                    "best_search_trial": None,
                    "epochs_to_target": math.nan if reached is None else float(reached),
                    "metric.test_accuracy": accuracy(condition.name, seed),
                    **(_row_record(accuracy(condition.name, seed), test_rows) if test_rows else {}),
                    "metric.val_accuracy": 0.9,
                    "metric.epochs_run": 8.0,
                }
            )
    return pd.DataFrame(rows)


def _row_record(accuracy, rows):
    right = round(accuracy * rows)
    correct = np.arange(rows) < right
    text = base64.b64encode(np.packbits(correct).tobytes()).decode()
    return {"metric.test_accuracy": right / rows, "test_rows": rows, "test_correct": text}


@pytest.fixture
def grid(tmp_path):
    return read_study(write_study(tmp_path, GRID, "grid.toml"))


def test_conditions_know_their_factor_levels(grid):
    assert [c.levels for c in grid.conditions] == [
        {"loss": "mse", "optimizer": "sgd"},
        {"loss": "mse", "optimizer": "momentum"},
        {"loss": "cross_entropy", "optimizer": "sgd"},
        {"loss": "cross_entropy", "optimizer": "momentum"},
    ]


def test_pairs_are_paired_t_tests_with_holm_over_the_study(tmp_path):
    """Each seed on its own split: its spread covers the test rows, and the paired t-test over seeds is the test."""
    grid = read_study(write_study(tmp_path, GRID.replace("seeds = 4", 'seeds = 4\nvary = ["init", "split"]'), "g.toml"))
    rng = np.random.default_rng(0)
    base = {"mse-sgd": 0.90, "mse-momentum": 0.93, "cross_entropy-sgd": 0.95, "cross_entropy-momentum": 0.951}
    noise = {s: rng.normal(0, 0.01) for s in grid.confirm_seed_values()}
    values = {(c, s): base[c] + noise[s] + rng.normal(0, 0.002) for c in base for s in noise}
    for s in noise:  # no difference at all on average: p = 1
        values[("cross_entropy-momentum", s)] = values[("cross_entropy-sgd", s)] + (0.003 if s % 2 else -0.003)
    result = analysis.analyze(grid, _records(grid, lambda c, s: values[(c, s)]))
    pairs = result.pairs
    assert len(pairs) == 6
    seeds = grid.confirm_seed_values()
    for row in pairs.itertuples():
        a = [values[(row.a, s)] for s in seeds]
        b = [values[(row.b, s)] for s in seeds]
        assert row.p_value == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
        assert row.test == "paired t (seeds)"
    ordered = sorted(pairs["p_value"])  # Holm by hand: (m - i) p_(i), running max, capped at 1
    holm = np.minimum(1, np.maximum.accumulate([(6 - i) * p for i, p in enumerate(ordered)]))
    assert sorted(pairs["p_holm"]) == pytest.approx(list(holm))
    assert list(pairs["significant"]) == [p < 0.05 for p in pairs["p_holm"]]
    near = pairs[(pairs["a"] == "cross_entropy-sgd") & (pairs["b"] == "cross_entropy-momentum")].iloc[0]
    assert near["p_value"] == pytest.approx(1.0) and not near["significant"]


def test_main_effects_and_interaction_of_a_two_by_two_grid(grid):
    # accuracy = 0.90 + 0.04 [cross_entropy] + 0.02 [momentum] - 0.01 [both] + seed noise
    def accuracy(condition, seed):
        ce, mom = condition.startswith("cross"), condition.endswith("momentum")
        return 0.90 + 0.04 * ce + 0.02 * mom - 0.01 * (ce and mom) + 0.003 * (seed % 3) + 0.0005 * seed * ce

    effects = analysis.analyze(grid, _records(grid, accuracy)).effects
    by_name = {(e["effect"], e["factor"]): e for e in effects}
    assert by_name[("main", "loss")]["estimate"] == pytest.approx(0.04 - 0.005 + 0.0005 * np.mean([1, 2, 3, 4]))
    assert by_name[("main", "optimizer")]["estimate"] == pytest.approx(0.02 - 0.005)
    assert by_name[("interaction", "loss x optimizer")]["estimate"] == pytest.approx(-0.01)
    assert by_name[("main", "optimizer")]["n"] == 4


def test_search_scores_count_pruned_at_their_last_value_and_diverged_at_chance(grid):
    trials = [(0.01, 0.80, "complete"), (0.1, 0.95, "complete"), (0.3, 0.94, "pruned"), (5.0, math.nan, "diverged")]
    frame = _records(grid, lambda c, s: 0.9, search=lambda c: trials)
    scores = analysis.scores_of(grid, frame[frame["kind"] == "search"], "mse-sgd", 1 / 3)
    assert list(scores["score"])[:3] == [0.80, 0.95, 0.94] and math.isnan(scores["score"].iloc[3])
    assert list(scores["bounded"]) == [0.80, 0.95, 0.94, 1 / 3]  # iris: a diverged trial at chance, 1/3
    result = analysis.analyze(grid, frame)
    row = result.table.iloc[0]
    assert row["good_lr_decades"] == pytest.approx(np.log10(0.3 / 0.1))
    # sorted lrs 0.01, 0.1, 0.3, 5: the diverged one owns log10 5 - midpoint(0.3, 5) up to log10 10
    owned = (1 - (np.log10(0.3) + np.log10(5.0)) / 2) / (np.log10(10) - np.log10(0.001))
    assert row["diverged_lr_share"] == pytest.approx(owned)
    e = np.array([1 / 3, 0.80, 0.94, 0.95])  # E_k by hand over the sorted scores
    expected = [sum(e[i] * (((i + 1) / 4) ** k - (i / 4) ** k) for i in range(4)) for k in range(1, 5)]
    assert result.budget_curves["mse-sgd"] == pytest.approx(expected)


def test_intervals_stay_in_the_unit_range_and_need_three_seeds(tmp_path):
    study = read_study(write_study(tmp_path, GRID.replace("seeds = 4", "seeds = 2"), "two.toml"))
    table = summarize(study, _records(study, lambda c, s: [0.99, 0.60][s % 2]))
    assert table["test_accuracy_ci_low"].isna().all() and table["test_accuracy_ci_high"].isna().all()
    wide = read_study(write_study(tmp_path, GRID, "four.toml"))
    table = summarize(wide, _records(wide, lambda c, s: [1.0, 0.97, 1.0, 0.5][s % 4]))
    assert (table["test_accuracy_ci_high"] <= 1.0).all() and (table["test_accuracy_ci_low"] >= 0.0).all()
    assert (table["test_accuracy_ci_high"] == 1.0).all()  # clipped: the t interval passes 1


def test_epochs_to_target_counts_censored_seeds(grid):
    # seeds 1..4: reached at 2, never (ran 8), never (ran 8), reached at 5 -> S(2)=3/4, S(5)=3/8: median 5
    reached = {1: 2, 2: None, 3: None, 4: 5}
    table = summarize(grid, _records(grid, lambda c, s: 0.9, target=lambda c, s: reached[s]))
    assert list(table["epochs_to_target_median"]) == [5.0] * 4
    assert list(table["target_reached"]) == ["2/4"] * 4


def test_pairs_stay_within_a_data_set_and_ranks_go_across(tmp_path):
    study = read_study(write_study(tmp_path, DATASETS, "sets.toml"))
    score = {"mse": 0.90, "cross_entropy": 0.95, "mse_logits": 0.92}
    result = analysis.analyze(study, _records(study, lambda c, s: score[c.split("-", 1)[1]] + 0.001 * s))
    assert len(result.pairs) == 9  # 3 per data set, never digits against wine
    assert (result.pairs["a"].str.split("-").str[0] == result.pairs["b"].str.split("-").str[0]).all()
    ranks = result.ranks
    assert ranks["mean_ranks"] == {"mse": 3.0, "cross_entropy": 1.0, "mse_logits": 2.0}
    assert ranks["p_value"] == pytest.approx(scipy_stats.friedmanchisquare([0.9] * 3, [0.95] * 3, [0.92] * 3).pvalue)
    assert "Demšar" in ranks["caveat"]
    assert any("Mean rank by test accuracy across 3 data sets" in s for s in result.findings)


def test_findings_state_their_evidence(grid):
    def accuracy(condition, seed):
        return {"mse-sgd": 0.90, "mse-momentum": 0.91, "cross_entropy-sgd": 0.95, "cross_entropy-momentum": 0.96}[
            condition
        ] + 0.002 * ((seed * 7) % 5)

    def target(condition, seed):
        return 38 if condition == "mse-sgd" else 2

    result = analysis.analyze(grid, _records(grid, accuracy, target=target))
    sentences = findings(grid, result)
    assert 3 <= len(sentences) <= 6
    # the three tied at 2 epochs are named, not the first of them (issue 33)
    assert sentences[0].startswith(
        "mse-momentum, cross_entropy-sgd and cross_entropy-momentum reach 95% validation accuracy 19x sooner than "
        "mse-sgd (Kaplan-Meier median 2 vs 38 epochs; reached/seeds: mse-sgd 4/4, mse-momentum 4/4"
    )
    assert "after Holm correction" in sentences[1] and "over the 6 pairs tested" in sentences[1]
    text = format_table(grid, result.table)
    assert max(len(line) for line in text.splitlines()) <= 120


def test_a_best_setting_at_the_edge_names_the_key_to_edit_and_how(grid):
    """The warning said "widen the range" without naming the file, the key or which bound (issue 35)."""

    def search(condition):
        best = {"mse-sgd": 9.5, "mse-momentum": 9.0, "cross_entropy-sgd": 0.0011}.get(condition, 0.1)
        return [(best, 0.95, "complete"), (0.3, 0.90, "complete")]

    result = analysis.analyze(grid, _records(grid, lambda c, s: 0.95, search=search))
    text = format_table(grid, result.table).replace("\n  ", " ")
    key = "`[search] lr = { low = 0.001, high = 10.0, log = true }`"
    assert (
        f"warning: {key} in {grid.path}: the best lr of mse-sgd (9.5) and mse-momentum (9) sit at the high edge, so "
        "the best may lie beyond it; raise `high` (in a copy of the study with a new `name`: a study's search "
        "cannot change under its name)"
    ) in text, text
    assert f"warning: {key} in {grid.path}: the best lr of cross_entropy-sgd (0.0011) sits at the low edge" in text
    assert "lower `low`" in text and text.count("warning:") == 2  # cross_entropy-momentum's 0.1 is inside
    budget = next(s for s in result.findings if s.startswith("By expected best validation score"))
    assert '([sampler] name = "random" gives exact curves)' in budget  # the key, as the study file writes it


def test_diverged_confirmation_seeds_are_said_and_never_reach_the_target(grid):
    frame = _records(grid, lambda c, s: 0.95, target=lambda c, s: {1: 4, 2: 5}.get(s))
    diverged = (frame["kind"] == "confirm") & (frame["condition"] == "mse-sgd") & frame["seed"].isin([3, 4])
    frame.loc[diverged, "state"] = "diverged"
    frame.loc[diverged, "metric.test_accuracy"] = math.nan
    frame.loc[diverged, "metric.epochs_run"] = 2.0  # diverged early: not censored at 2, it never gets there
    result = analysis.analyze(grid, frame)
    row = result.table.iloc[0]
    assert (row["diverged_seeds"], row["seeds"], row["failure_rate"]) == (2, 4, 0.5)
    assert row["test_accuracy_mean"] == pytest.approx((0.95 + 0.95 + 1 / 3 + 1 / 3) / 4)  # iris: chance is 1/3
    # at risk 4 at epoch 4 (S = 3/4), 3 at epoch 5 (S = 1/2): median 5; censored at 2 they would give 4
    assert row["epochs_to_target_median"] == 5.0
    assert " 2/4" in format_table(grid, result.table).splitlines()[1]  # the "diverged seeds" column
    assert any("mse-sgd diverged in 2 of 4 confirmation seeds" in s for s in result.findings)


def test_robustness_is_compared_within_each_data_set(tmp_path):
    study = read_study(write_study(tmp_path, DATASETS, "sets.toml"))
    wide = [(0.01, 0.95, "complete"), (1.0, 0.95, "complete"), (5.0, math.nan, "diverged")]
    narrow = [(0.01, 0.80, "complete"), (0.1, 0.95, "complete"), (1.0, 0.70, "complete")]
    frame = _records(study, lambda c, s: 0.9, search=lambda c: wide if c.endswith("-mse") else narrow)
    sentence = next(s for s in analysis.analyze(study, frame).findings if "Learning rates scoring" in s)
    assert sentence.startswith("Learning rates scoring within 0.01 val_accuracy of the best validation score")
    # iris-mse is widest (2 decades) but diverges over part of the range, the others never: not "most forgiving"
    assert "iris-mse has the widest good range on iris (2 decades) but diverges more" in sentence
    assert "most forgiving" not in sentence


def test_robustness_tolerance_is_absolute_from_the_data_sets_best(tmp_path):
    """Issue 24: a poor condition (best 0.567) whose trials all lie within 1 point of its own best used to get
    the widest good range; within 0.01 of the data set's best (0.95) it has none."""
    study = read_study(write_study(tmp_path, DATASETS, "sets.toml"))
    poor = [(0.001, 0.567, "complete"), (0.1, 0.565, "complete"), (5.0, 0.560, "complete")]
    good = [(0.01, 0.80, "complete"), (0.1, 0.95, "complete"), (0.3, 0.945, "complete")]
    frame = _records(study, lambda c, s: 0.9, search=lambda c: poor if c.endswith("-mse") else good)
    table = analysis.analyze(study, frame).table.set_index("condition")
    assert table.loc["wine-mse", "good_lr_decades"] == 0.0
    assert table.loc["wine-cross_entropy", "good_lr_decades"] == pytest.approx(np.log10(3))
    wider = read_study(write_study(tmp_path, DATASETS + "[analysis]\ntolerance = 0.4\n", "wide.toml"))
    assert analysis.analyze(wider, frame).table.set_index("condition").loc["wine-mse", "good_lr_decades"] == (
        pytest.approx(np.log10(5.0 / 0.001))
    )
    sentence = next(s for s in analysis.analyze(study, frame).findings if "Learning rates scoring" in s)
    assert "wine-cross_entropy is the most forgiving on wine" in sentence
