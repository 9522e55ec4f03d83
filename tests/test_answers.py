"""Issue 24, "answers that hold up": each case the issue names, built from records like the ones it describes,
and the statement the comparison makes about it."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import comparisons as analysis
from harness.analysis.stats import holm
from harness.analysis.summary import format_pairs, format_table, summarize
from harness.cli import main
from harness.common.errors import ConfigError
from harness.studies.parse import read_study
from tests.conftest import TINY_STUDY
from tests.helpers import mlflow_runs, write_study
from tests.test_analysis import GRID, _records

ONE_FACTOR = """
name = "one"
[fixed]
dataset = "iris"
[conditions]
loss = ["mse", "cross_entropy", "mse_logits"]
[search]
lr = { low = 0.001, high = 10.0, log = true }
[budget]
trials = 4
[confirm]
seeds = 5
"""


@pytest.fixture
def one(tmp_path):
    return read_study(write_study(tmp_path, ONE_FACTOR, "one.toml"))


@pytest.fixture
def one_varied(tmp_path):
    """Each confirmation seed on its own split: the seeds' spread covers the test rows (no rows' term)."""
    text = ONE_FACTOR.replace("seeds = 5", 'seeds = 5\nvary = ["init", "split"]')
    return read_study(write_study(tmp_path, text, "varied.toml"))


def test_three_of_five_diverged_seeds_count_at_chance_and_their_pairs_are_tested(one_varied):
    """digits-mse_logits said "5 seeds" with a mean over 2 and its pairs untested; Holm said 9 pairs, ran 7."""
    noise = {1: 0.0, 2: 0.01, 3: -0.01, 4: 0.005, 5: -0.005}
    frame = _records(one_varied, lambda c, s: {"mse": 0.95, "cross_entropy": 0.96, "mse_logits": 0.97}[c] + noise[s])
    failed = (frame["kind"] == "confirm") & (frame["condition"] == "mse_logits") & frame["seed"].isin([3, 4, 5])
    frame.loc[failed, "state"] = "diverged"
    frame.loc[failed, "metric.test_accuracy"] = math.nan
    frame["classes"] = 3
    result = analysis.analyze(one_varied, frame)
    row = result.table.set_index("condition").loc["mse_logits"]
    assert (row["seeds"], row["diverged_seeds"], row["failure_rate"]) == (5, 3, 0.6)
    assert row["test_accuracy_mean"] == pytest.approx((0.97 + 0.98 + 3 / 3) / 5)
    pairs = result.pairs.set_index(["a", "b"])
    assert list(pairs["seeds"]) == [5, 5, 5] and pairs["p_value"].notna().all()
    scores = [0.97, 0.98, 1 / 3, 1 / 3, 1 / 3]
    mse = [0.95 + noise[s] for s in range(1, 6)]
    assert pairs.loc[("mse", "mse_logits"), "p_value"] == pytest.approx(sps.ttest_rel(mse, scores).pvalue)
    assert "Holm-adjusted over the 3 pairs tested" in format_pairs(result)
    assert any("mse_logits diverged in 3 of 5 confirmation seeds (failure rate 60%" in s for s in result.findings)
    assert "3/5" in format_table(one_varied, result.table)


def test_holm_counts_only_the_pairs_tested(one):
    frame = _records(one, lambda c, s: 0.9 + 0.001 * s)
    gone = (frame["kind"] == "confirm") & (frame["condition"] == "mse_logits") & (frame["seed"] > 2)
    result = analysis.analyze(one, frame[~gone])
    assert list(result.pairs["verdict"] == "untested") == [False, True, True]
    assert "Holm-adjusted over the 1 pairs tested" in format_pairs(result)


def test_a_fixed_split_adds_the_test_rows_term_and_a_varied_split_does_not(tmp_path, one):
    """moons-cross_entropy: every seed scored 384/400, and the interval was [0.96, 0.96]."""
    frame = _records(one, lambda c, s: 384 / 400)
    frame["test_rows"] = 400
    row = summarize(one, frame).iloc[0]
    half = 1.959964 * math.sqrt(0.96 * 0.04 / 400)
    assert (row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]) == pytest.approx((0.96 - half, 0.96 + half))
    assert row["interval_covers"] == (
        "initialisation and batch order, the test rows' sampling (binomial over 400 rows)"
    )
    text = ONE_FACTOR.replace("seeds = 5", 'seeds = 5\nvary = ["init", "split"]')
    varied = read_study(write_study(tmp_path, text, "v.toml"))
    assert varied.confirm_vary == ["init", "split"]
    row = summarize(varied, frame).iloc[0]
    assert (row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]) == (0.96, 0.96)
    assert row["interval_covers"] == "initialisation and batch order, the train/validation/test split"


def test_a_crossover_interaction_gives_simple_effects_and_no_main_effect_alone(tmp_path):
    """Quickstart: "momentum significantly helps, +0.4 points" while momentum helps under MSE and hurts under
    cross-entropy (interaction -1.5 points, p 0.011), and the interaction sentence was cut by a cap."""
    grid = read_study(write_study(tmp_path, GRID, "grid.toml"))
    noise = {1: 0.0, 2: 0.004, 3: -0.003, 4: 0.002}

    def accuracy(condition, seed):
        mse, momentum = condition.startswith("mse"), condition.endswith("momentum")
        shift = (0.011 + 0.001 * seed if mse else -0.004 - 0.0005 * seed) if momentum else 0.0
        return 0.95 - 0.01 * mse + shift + noise[seed]

    result = analysis.analyze(grid, _records(grid, accuracy, test_rows=2000))
    sentence = next(s for s in result.findings if "interact" in s)
    assert "so no main effect is stated alone" in sentence
    # one contrast, one verdict (issue 33): a simple effect is the pair, said with the pair's Holm p and verdict
    pair = result.pairs.set_index(["a", "b"]).loc[("mse-sgd", "mse-momentum")]  # sgd - momentum: the sign flips
    said = f"{-100 * pair['mean_difference']:+.1f} points [{-100 * pair['ci_high']:+.1f}, {-100 * pair['ci_low']:+.1f}]"
    assert pair["mean_difference"] == pytest.approx(-0.0135)  # +1.35 points, as counts of 2000 rows give it
    assert f"optimizer momentum instead of sgd: {said}, p Holm {pair['p_holm']:.2g} (different) under loss mse" in (
        sentence
    )
    assert "under loss cross_entropy" in sentence
    assert not any("instead of" in s and "interact" not in s for s in result.findings)
    simple = [e for e in result.effects if e["effect"] == "simple"]
    assert len(simple) == 4 and {e["at"] for e in simple} >= {"loss mse", "loss cross_entropy"}
    printed = format_pairs(result)  # the effects table: a main effect is named so, never "under nan"
    assert "nan" not in printed and "optimizer: momentum vs sgd (main effect)" in printed
    assert "optimizer: momentum vs sgd under loss mse" in printed


def test_two_conditions_one_validation_example_apart_are_tied(one):
    """Quickstart: "the ranking changes until 11 of 16 trials" from swaps of less than one validation example."""
    trials = {
        "mse": [(0.01, 0.950, "complete"), (0.1, 0.960, "complete"), (1.0, 0.955, "complete")],
        "cross_entropy": [(0.01, 0.954, "complete"), (0.1, 0.957, "complete"), (1.0, 0.956, "complete")],
        "mse_logits": [(0.01, 0.5, "complete"), (0.1, 0.6, "complete"), (1.0, 0.7, "complete")],
    }
    frame = _records(one, lambda c, s: 0.9, search=lambda c: trials[c])
    frame["val_rows"] = 100  # one example = 0.01: mse and cross_entropy never differ by that much
    result = analysis.analyze(one, frame)
    assert result.leaders["iris"] == [["mse", "cross_entropy"]] * 3 and result.settles_at["iris"] == 1
    assert any("mse and cross_entropy are tied at every budget from 1 to 3 trials" in s for s in result.findings)
    frame["val_rows"] = 10_000  # one example = 0.0001: their curves cross (cross_entropy's mean leads at k = 1,
    # mse from k = 2) but their bootstrap bands overlap at every k: tied, no leader (issue 33)
    result = analysis.analyze(one, frame)
    assert result.budget_curves["cross_entropy"][0] > result.budget_curves["mse"][0]
    assert result.budget_curves["mse"][-1] > result.budget_curves["cross_entropy"][-1]
    assert result.leaders["iris"] == [["mse", "cross_entropy"]] * 3
    low, high = result.budget_bands["mse"]
    assert all(lo <= e <= hi for lo, e, hi in zip(low, result.budget_curves["mse"], high))


def test_a_loss_objective_never_borrows_another_conditions_value(tmp_path):
    """losses: a diverged digits trial got 8.49e141, the study's worst finite value, imputed on wine and moons."""
    study = read_study(write_study(tmp_path, ONE_FACTOR + '[objective]\nmetric = "val_cross_entropy"\n', "loss.toml"))
    trials = {
        "mse": [(0.01, 0.2, "complete"), (0.1, 0.1, "complete"), (5.0, math.nan, "diverged")],
        "cross_entropy": [(0.01, 0.15, "complete"), (0.1, 8.49e141, "complete"), (1.0, 0.12, "complete")],
        "mse_logits": [(0.01, 0.3, "complete"), (0.1, 0.25, "complete"), (1.0, 0.2, "complete")],
    }
    frame = _records(study, lambda c, s: 0.9, search=lambda c: trials[c])
    frame = frame.rename(columns={"metric.val_accuracy": "metric.val_cross_entropy"})
    curves = analysis.analyze(study, frame).budget_curves
    # mse: exp(-loss) of 0.2, 0.1 and 0 (diverged); E_1 = -ln(mean)
    assert curves["mse"][0] == pytest.approx(-math.log((math.exp(-0.2) + math.exp(-0.1)) / 3))
    assert all(math.isfinite(v) and v < 2 for curve in curves.values() for v in curve)
    assert curves["mse"][-1] < curves["mse"][0]
    frame.loc[frame["metric.val_cross_entropy"] == 8.49e141, "metric.val_cross_entropy"] = 1e300
    assert analysis.analyze(study, frame).budget_curves["mse"] == curves["mse"]  # nothing borrowed


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[analysis]\nmargin = 2\n", "analysis.margin = 2 is not allowed; must be in (0, 1)"),
        ("[analysis]\ntolerance = -1\n", "analysis.tolerance = -1 is not allowed; must be > 0"),
        ("[analysis]\ntolerance = 'x'\n", "analysis.tolerance = 'x' is not allowed; must be a finite number"),
        ("[analysis]\nalpha = 0.1\n", "analysis.alpha = 0.1 is not allowed; known keys: margin, tolerance"),
    ],
)
def test_analysis_keys_are_checked(tmp_path, section, message):
    with pytest.raises(ConfigError) as error:
        read_study(write_study(tmp_path, ONE_FACTOR + section, "bad.toml"))
    assert "bad.toml" in str(error.value) and message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("vary", ['["split"]', '["init", "search"]', '"split"', '["init", "init"]'])
def test_confirm_vary_is_checked(tmp_path, vary):
    text = ONE_FACTOR.replace("seeds = 5", f"seeds = 5\nvary = {vary}")
    with pytest.raises(ConfigError, match=r"bad\.toml: confirm\.vary = .* is not allowed; expected"):
        read_study(write_study(tmp_path, text, "bad.toml"))


def test_a_varied_split_with_a_fixed_data_seed_is_refused(tmp_path):
    text = ONE_FACTOR.replace("seeds = 5", 'seeds = 5\nvary = ["init", "split"]').replace(
        'dataset = "iris"', 'dataset = "iris"\ndata_seed = 3'
    )
    with pytest.raises(ConfigError, match="fixed.data_seed = 3 fixes the split"):
        read_study(write_study(tmp_path, text, "bad.toml"))


@pytest.mark.e2e
def test_a_sweep_that_varies_the_split_trains_each_seed_on_its_own_split(workdir, capsys):
    text = TINY_STUDY.replace("seeds = 2", 'seeds = 3\nvary = ["init", "split"]') + "[analysis]\nmargin = 0.02\n"
    assert main(["sweep", write_study(workdir, text), "--trials", "2", "--epochs", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert {row["interval_covers"] for row in summary} == {
        "initialisation and batch order, the train/validation/test split"
    }
    _, runs = mlflow_runs(workdir)
    confirm = [r for r in runs if r.data.tags["harness.kind"] == "confirm"]
    assert sorted(int(r.data.params["data_seed"]) for r in confirm) == [1, 1, 2, 2, 3, 3]
    assert all(r.data.params["data_seed"] == r.data.params["seed"] for r in confirm)
    assert len(Counter(r.data.tags["harness.dataset_digest"] for r in confirm)) == 3
    assert {r.data.tags["harness.classes"] for r in runs if r.data.tags["harness.kind"] != "condition"} == {"3"}
    again = ["sweep", write_study(workdir, text), "--trials", "2", "--epochs", "2"]
    assert main(again) == 0  # resumes: the data check accepts the seeds' own splits
    assert np.isfinite([row["test_accuracy_mean"] for row in summary]).all()


@pytest.mark.parametrize(("spread", "equivalent"), [(0.005, True), (0.0075, False)])
def test_equivalence_is_claimed_for_the_family_of_pairs_as_a_difference_is(one_varied, spread, equivalent):
    """TOST was uncorrected while differences were Holm-adjusted: with 3 pairs at TOST p 0.036, 0.020 and 0.020
    the findings called all three "equivalent within 1 point"; after Holm (p 0.061) none is."""
    noise = {
        "mse": [0, spread, -spread, 0, 0],
        "cross_entropy": [0, 0, spread, -spread, 0],
        "mse_logits": [spread, 0, 0, 0, -spread],
    }
    result = analysis.analyze(one_varied, _records(one_varied, lambda c, s: 0.95 + noise[c][s - 1]))
    pairs = result.pairs
    assert (pairs["p_equivalence"] < 0.05).all()  # each pair alone would pass
    assert list(pairs["p_equivalence_holm"]) == pytest.approx(holm(list(pairs["p_equivalence"])))
    assert list(pairs["verdict"]) == ["equivalent" if equivalent else "inconclusive"] * 3
    sentence = next(s for s in result.findings if "Test accuracies" in s)
    assert ("equivalent within 1 point (TOST, Holm-adjusted p < 0.05)" in sentence) == equivalent
    assert ("inconclusive: " in sentence) != equivalent
    assert "p equiv. Holm" in format_pairs(result)
