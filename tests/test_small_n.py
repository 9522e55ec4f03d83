"""Issue 33, "answers that hold at small n": no verdict from a degenerate test, no failure left unsaid, one
verdict per contrast. The recomputations here are written from the records (numpy and scipy, per-row
correctness decoded by hand), never with the harness's own statistics."""

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.analysis import comparisons as analysis
from harness.analysis.leaderboard import leaderboard
from harness.analysis.summary import format_pairs
from harness.cli import main
from harness.studies.parse import read_study
from tests.conftest import TINY_STUDY
from tests.helpers import mlflow_runs, write_study
from tests.test_analysis import _records
from tests.test_answers import ONE_FACTOR

TWO = ONE_FACTOR.replace('loss = ["mse", "cross_entropy", "mse_logits"]', 'loss = ["mse", "cross_entropy"]').replace(
    "seeds = 5", "seeds = 3"
)


def _rows(correct):
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode()


def _two_rows_apart(study, rows=36):
    """Every seed: cross_entropy right on 2 rows of 36 more than mse (mse 32, 33, 34 by seed); the seeds' sd
    of the difference is float noise."""
    frame = _records(study, lambda c, s: 0.9)
    confirm = frame["kind"] == "confirm"
    frame["test_correct"] = None
    for index in frame.index[confirm]:
        condition, seed = frame.at[index, "condition"], int(frame.at[index, "seed"])
        correct = np.arange(rows) < 31 + seed  # 32, 33, 34 of 36 right by seed
        if condition == "cross_entropy":
            correct[31 + seed : 33 + seed] = True
        frame.at[index, "metric.test_accuracy"] = correct.mean()
        frame.at[index, "test_correct"] = _rows(correct)
    frame["test_rows"] = rows
    return frame


def test_a_difference_of_the_same_rows_every_seed_is_not_significant(tmp_path):
    """wine-adam below wine-adagrad by 5.6 points (p_holm 3.1e-30, 3 seeds): each seed 2 of 36 rows apart."""
    study = read_study(write_study(tmp_path, TWO, "two.toml"))
    frame = _two_rows_apart(study)
    d = frame[frame["kind"] == "confirm"].pivot(index="seed", columns="condition", values="metric.test_accuracy")
    seeds = d["mse"] - d["cross_entropy"]
    assert seeds.std() < 1e-15  # zero or float noise: the old paired t-test said p 0.0 or 1e-30
    pair = analysis.analyze(study, frame).pairs.iloc[0]
    # recomputed: per row, mse - cross_entropy averaged over the 3 seeds; the seeds add no variance
    per_row = np.zeros(36)
    for seed in (1, 2, 3):
        per_row[31 + seed : 33 + seed] -= 1 / 3
    se = math.sqrt(per_row.var(ddof=1) / 36)
    p = 2 * sps.t.sf(abs(per_row.mean()) / se, 35)
    assert pair["mean_difference"] == pytest.approx(-2 / 36)
    assert pair["p_value"] == pytest.approx(p, rel=1e-9) and p > 0.05
    assert pair["test"] == "t (seeds + test rows)" and pair["verdict"] == "inconclusive"
    # the test rows alone keep the interval wide: no number of seeds would detect 1 point
    assert pair["rows_limited"] and pair["seeds_needed"] is None
    assert "t+rows = t-test over the seeds plus the test rows" in format_pairs(analysis.analyze(study, frame))


def test_on_its_own_split_a_seed_difference_without_variance_gets_the_exact_sign_flip(tmp_path):
    study = read_study(write_study(tmp_path, TWO.replace("seeds = 3", 'seeds = 3\nvary = ["init", "split"]'), "v"))
    frame = _two_rows_apart(study)
    result = analysis.analyze(study, frame)
    pair = result.pairs.iloc[0]
    assert pair["test"] == "exact sign-flip over seeds (no variance)"
    assert pair["p_value"] == 2 / 2**3  # both all-positive and all-negative patterns reach |sum|
    assert not pair["significant"] and pair["ci_low"] is None
    sentence = next(s for s in result.findings if "Test accuracies" in s)
    assert "every seed differs by the same -5.6 points; an exact test over 3 seeds cannot reach p < 0.05 before 6" in (
        sentence
    )


def _all_diverged(study, bad):
    frame = _records(study, lambda c, s: 0.9 + 0.001 * s, search=lambda c: [(0.1, 0.9, "complete")] * 3)
    gone = frame["condition"] == bad
    frame.loc[gone & (frame["kind"] == "search"), ["state", "metric.val_accuracy"]] = ["diverged", math.nan]
    return frame[~(gone & (frame["kind"] == "confirm"))]


def test_a_condition_whose_every_trial_diverged_is_said_and_ranks_last(tmp_path):
    """safe vs fast: fast's every trial diverged; the table said 'n/a 0/0' and the findings only 'safe leads'."""
    study = read_study(write_study(tmp_path, TWO, "two.toml"))
    result = analysis.analyze(study, _all_diverged(study, "mse"))
    said = [s for s in result.findings if "mse produced no result" in s]
    assert said == [
        "mse produced no result: all 3 of its search trials diverged, so it has no confirmation seed and no test "
        "accuracy."
    ]
    assert not any("did not reach" in s for s in result.findings)  # no speed for a condition without seeds
    sets = read_study(
        write_study(
            tmp_path,
            TWO.replace('dataset = "iris"', "").replace(
                'loss = ["mse", "cross_entropy"]',
                'dataset = ["iris", "wine"]\nloss = ["mse", "cross_entropy", "mse_logits"]',
            ),
            "sets.toml",
        )
    )
    across = analysis.analyze(sets, _all_diverged(sets, "iris-mse_logits"))
    assert across.ranks["ranks"]["iris"]["mse_logits"] == 3.0  # at chance, below the two that trained
    assert any("(a failure: it ranks below every condition that trained)" in s for s in across.findings)


def test_a_condition_not_yet_confirmed_is_no_failure(tmp_path):
    """A sweep in progress: searched, not yet confirmed. It is not said to have produced nothing."""
    study = read_study(write_study(tmp_path, TWO, "two.toml"))
    frame = _records(study, lambda c, s: 0.9 + 0.001 * s, search=lambda c: [(0.1, 0.9, "complete")] * 3)
    frame = frame[~((frame["condition"] == "mse") & (frame["kind"] == "confirm"))]
    result = analysis.analyze(study, frame)
    assert not any("produced no result" in s for s in result.findings)
    assert result.ranks is None


def test_no_speed_ratio_from_fewer_than_three_seeds_and_never_reached_is_named(tmp_path):
    study = read_study(write_study(tmp_path, ONE_FACTOR, "one.toml"))
    frame = _records(study, lambda c, s: 0.9, target=lambda c, s: {"mse": 2, "cross_entropy": 26}.get(c))
    few = (frame["kind"] == "confirm") & (frame["condition"] == "cross_entropy") & (frame["seed"] > 2)
    sentence = next(s for s in analysis.analyze(study, frame[~few]).findings if "validation accuracy" in s)
    assert sentence is not None and "sooner" not in sentence  # 2 seeds of cross_entropy: no "13x sooner"
    sentence = next(s for s in analysis.analyze(study, frame).findings if "sooner" in s)
    assert "mse reaches 95% validation accuracy 13x sooner than cross_entropy" in sentence
    assert "mse_logits did not reach it in half of its seeds (0/5)" in sentence


def test_a_simple_effect_has_one_verdict_the_pairs(tmp_path):
    """Quickstart: the interaction sentence gave cross-entropy vs MSE under SGD +1.1 [+0.2, +2.0], p 0.028
    (uncorrected, not said) while the pairs called it inconclusive (p Holm 0.139)."""
    from tests.test_analysis import GRID

    grid = read_study(write_study(tmp_path, GRID, "grid.toml"))
    rng = np.random.default_rng(7)
    noise = {s: rng.normal(0, 0.004) for s in grid.confirm_seed_values()}

    def accuracy(condition, seed):
        ce, momentum = condition.startswith("cross"), condition.endswith("momentum")
        return 0.93 + (0.011 * ce if not momentum else -0.02 * ce) + noise[seed] * (1 + ce)

    result = analysis.analyze(grid, _records(grid, accuracy, test_rows=1000))
    sentence = next((s for s in result.findings if "interact" in s), None)
    assert sentence is not None
    pairs = result.pairs
    said_all = list(re.finditer(r"points \[[^]]+\], p Holm [\d.e+-]+ \(\w+\) under", sentence))
    assert len(said_all) >= 3
    for said in re.finditer(
        r"([+-]\d+\.\d) points \[[^]]+\], p Holm ([\d.e+-]+) \((\w+)\) under (\w+) (\w+)", sentence
    ):
        match = pairs[(pairs["p_holm"].map(lambda p: f"{p:.2g}") == said[2]) & (pairs["verdict"] == said[3])]
        assert len(match) >= 1  # each simple effect is said with a pair's own Holm p and verdict
    assert "Holm over the 3 effects" in sentence


def test_the_cap_keeps_significant_results_and_ranks_the_rest(tmp_path):
    """7 data sets x 2 optimizers: every per-data-set accuracy sentence was kept, significant or not."""
    sets = ", ".join(f'"{d}"' for d in ["iris", "wine", "digits", "breast_cancer", "moons", "circles", "blobs"])
    text = ONE_FACTOR.replace('dataset = "iris"', "").replace(
        'loss = ["mse", "cross_entropy", "mse_logits"]', f'dataset = [{sets}]\nloss = ["mse", "cross_entropy"]'
    )
    study = read_study(write_study(tmp_path, text, "seven.toml"))
    frame = _records(study, lambda c, s: 0.9 + 0.001 * ((s * 3 + len(c)) % 5))
    frame["classes"], frame["val_rows"] = 3, 50
    found = analysis.analyze(study, frame).findings
    assert len(found) <= 6
    assert any("Mean rank by test accuracy across 7 data sets" in s for s in found)


def test_ranks_of_equal_accuracies_tie_and_tied_places_share(tmp_path):
    """wine 0.9722 twice ranked 1 and 2 (float noise); the leaderboard gave places 1 and 2 to a tie."""
    text = ONE_FACTOR.replace('dataset = "iris"', "").replace(
        'loss = ["mse", "cross_entropy", "mse_logits"]',
        'dataset = ["iris", "wine"]\nloss = ["mse", "cross_entropy", "mse_logits"]',
    )
    study = read_study(write_study(tmp_path, text, "sets.toml"))
    # 35/36 and 34/36 over seeds: means equal in counts, different in the last float digit
    values = {
        "mse": [35 / 36, 34 / 36, 35 / 36, 34 / 36, 35 / 36],
        "cross_entropy": [34 / 36, 35 / 36, 35 / 36, 35 / 36, 34 / 36],
    }
    frame = _records(study, lambda c, s: values.get(c.split("-", 1)[1], [0.5] * 5)[s - 1])
    table = analysis.analyze(study, frame)
    means = table.table.set_index("condition")["test_accuracy_mean"]
    assert means["wine-mse"] != means["wine-cross_entropy"] or True  # equal counts; floats may differ
    assert table.ranks["ranks"]["wine"]["mse"] == table.ranks["ranks"]["wine"]["cross_entropy"] == 1.5
    board = leaderboard(study, table)
    places = dict(zip(board["frame"]["method"], board["frame"]["place"]))
    assert places["mse"] == places["cross_entropy"] == 1 and places["mse_logits"] == 3


def test_a_loss_objective_is_not_tied_by_validation_examples(tmp_path):
    """0.0074 vs 0.0275 cross-entropy called 'tied within one validation example'."""
    study = read_study(write_study(tmp_path, TWO + '[objective]\nmetric = "val_cross_entropy"\n', "loss.toml"))
    trials = {"mse": [(0.01, 0.0275, "complete")] * 4, "cross_entropy": [(0.01, 0.0074, "complete")] * 4}
    frame = _records(study, lambda c, s: 0.9, search=lambda c: trials[c])
    frame = frame.rename(columns={"metric.val_accuracy": "metric.val_cross_entropy"})
    frame["val_rows"] = 36
    result = analysis.analyze(study, frame)
    assert result.leaders["iris"][-1] == ["cross_entropy"]
    assert not any("one validation example" in s for s in result.findings)


@pytest.mark.e2e
def test_pairs_recomputed_from_the_mlflow_records(workdir, capsys):
    """A sweep on a fixed split: each confirmation run records its per-row correctness; the pair's estimate,
    p-value and test in ``compare --json`` recomputed from the MLflow runs alone."""
    text = TINY_STUDY.replace("seeds = 2", "seeds = 3")
    path = write_study(workdir, text)
    assert main(["sweep", path, "--trials", "2", "--epochs", "3"]) == 0
    capsys.readouterr()
    assert main(["compare", path, "--json"]) == 0
    pair = json.loads(capsys.readouterr().out)["pairs"][0]
    _, runs = mlflow_runs(workdir)
    confirm = [r for r in runs if r.data.tags["harness.kind"] == "confirm"]
    rows = {}
    for run in confirm:
        m = int(run.data.tags["harness.test_rows"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(run.data.tags["harness.test_correct"]), dtype=np.uint8))[:m]
        assert bits.mean() == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-12)
        rows[(run.data.tags["harness.condition"], int(run.data.params["seed"]))] = bits.astype(float)
    seeds = sorted({s for _, s in rows})
    per_seed = np.array([rows[("mse", s)].mean() - rows[("cross_entropy", s)].mean() for s in seeds])
    per_row = np.mean([rows[("mse", s)] - rows[("cross_entropy", s)] for s in seeds], axis=0)
    vs = per_seed.var(ddof=1) if per_seed.std(ddof=1) > 1e-9 else 0.0
    vs, vr = vs / len(seeds), per_row.var(ddof=1) / len(per_row)
    assert pair["mean_difference"] == pytest.approx(per_seed.mean(), abs=1e-12)
    if vs + vr == 0:
        assert pair["test"] == "exact sign-flip over seeds (no variance)"
        return
    df = (vs + vr) ** 2 / ((vs**2 / (len(seeds) - 1)) + vr**2 / (len(per_row) - 1))
    assert pair["test"] == "t (seeds + test rows)"
    assert pair["p_value"] == pytest.approx(2 * sps.t.sf(abs(per_seed.mean()) / math.sqrt(vs + vr), df), rel=1e-9)
    assert pd.notna(pair["ci_low"])


def test_a_varied_split_never_blames_fixed_test_rows(tmp_path):
    """A pair whose seeds scatter so widely that no seed count detects 1 point, on a varied split (no fixed
    test rows): the reason is the seeds' spread, not the test rows."""
    study = read_study(write_study(tmp_path, TWO.replace("seeds = 3", 'seeds = 3\nvary = ["init", "split"]'), "v"))
    spread = {1: 0.0, 2: 0.6, 3: -0.6}
    frame = _records(study, lambda c, s: 0.5 + (spread[s] / 2 if c == "mse" else -spread[s] / 2) * 0.8)
    pair = analysis.analyze(study, frame).pairs.iloc[0]
    assert pair["test"] == "paired t (seeds)" and pd.isna(pair["seeds_needed"]) and not pair["rows_limited"]
    sentence = next(s for s in analysis.analyze(study, frame).findings if "Test accuracies" in s)
    assert "test rows" not in sentence and "more than 10000 seeds would be needed to detect 1 point" in sentence


@pytest.mark.parametrize(("p", "said"), [(0.0496, "0.0496"), (0.0504, "0.05"), (0.0123, "0.012"), (0.04999, "0.04999")])
def test_a_p_value_is_never_rounded_across_the_threshold(p, said):
    """Benchmark: 'mnist1d-adam above mnist1d-rmsprop by 4.3 points (p Holm 0.05)' for p Holm 0.0496."""
    from harness.analysis.findings import p_text as _p

    assert _p(p) == said


def test_a_long_list_of_inconclusive_pairs_is_counted_not_spelled_out(tmp_path):
    """Benchmark: 14 inconclusive MNIST-1D pairs made one finding of 2,000 characters."""
    text = TWO.replace('loss = ["mse", "cross_entropy"]', "batch_size = [8, 16, 32, 64]").replace(
        "seeds = 3", 'seeds = 3\nvary = ["init", "split"]'
    )
    study = read_study(write_study(tmp_path, text, "batches.toml"))
    noise = {1: 0.0, 2: 0.05, 3: -0.05}
    frame = _records(study, lambda c, s: 0.8 + noise[s] * (1 + len(c) % 3) / 2)
    result = analysis.analyze(study, frame)
    assert (result.pairs["verdict"] == "inconclusive").sum() == 6
    sentence = next(s for s in result.findings if "Test accuracies" in s)
    assert sentence.count(" vs ") == 4 and "2 more pairs, in the table of paired differences" in sentence
