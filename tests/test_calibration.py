"""Probability quality (issue 34): each figure recomputed independently (scikit-learn, scipy, plain loops),
temperature scaling's fit, the records a run keeps, and the per-condition statistics built from them."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from scipy import stats as sps
from sklearn.metrics import brier_score_loss, log_loss

from harness.engine import calibration as cal


def _logits(n=400, classes=4, scale=1.0, seed=0):
    """Logits and labels drawn from softmax(logits): calibrated at scale 1 by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * 2.0
    p = special.softmax(z, axis=1)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return z * scale, labels


def _ece_by_loop(p, labels, bins):
    """Top-label ECE written out plainly: sort by confidence, cut into near-equal parts, weigh |acc - conf|."""
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    order = sorted(range(len(labels)), key=lambda i: confidence[i])
    n, total, start = len(labels), 0.0, 0
    for b in range(bins):
        size = n // bins + (1 if b < n % bins else 0)
        part = order[start : start + size]
        start += size
        accuracy = sum(predicted[i] == labels[i] for i in part) / size
        mean_confidence = sum(confidence[i] for i in part) / size
        total += size / n * abs(accuracy - mean_confidence)
    return total


def test_nll_and_brier_equal_scikit_learn():
    z, labels = _logits()
    p = special.softmax(z, axis=1)
    assert cal.negative_log_likelihood(z, labels) == pytest.approx(log_loss(labels, p, labels=range(4)), rel=1e-10)
    # scikit-learn's multiclass Brier score is the sum over classes (scale_by_half=False)
    assert cal.brier(p, labels) == pytest.approx(
        brier_score_loss(labels, p, labels=range(4), scale_by_half=False), rel=1e-10
    )


@pytest.mark.parametrize("n", [400, 37, 10])
def test_top_label_ece_matches_a_plain_loop(n):
    z, labels = _logits(n=n, scale=3.0, seed=n)
    p = special.softmax(z, axis=1)
    bins = min(cal.BINS, n)
    assert cal.expected_calibration_error(p, labels) == pytest.approx(_ece_by_loop(p, labels, bins), abs=1e-12)
    sizes = [rows for _, _, rows in cal.reliability(p, labels)]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and len(sizes) == bins


def test_classwise_ece_averages_the_per_class_calibration_errors():
    z, labels = _logits(n=300, classes=3, scale=2.0, seed=3)
    p = special.softmax(z, axis=1)
    per_class = []
    for k in range(3):
        order = np.argsort(p[:, k], kind="stable")
        parts = np.array_split(order, cal.BINS)
        per_class.append(sum(len(b) / 300 * abs((labels[b] == k).mean() - p[b, k].mean()) for b in parts))
    assert cal.classwise_ece(p, labels) == pytest.approx(np.mean(per_class), abs=1e-12)


def test_a_model_calibrated_by_construction_scores_low_and_scaling_finds_t_near_1():
    z, labels = _logits(n=20000, seed=1)
    assert cal.fit_temperature(z, labels) == pytest.approx(1.0, abs=0.05)
    assert cal.expected_calibration_error(special.softmax(z, axis=1), labels) < 0.02


def test_temperature_undoes_an_overconfident_scaling_and_minimises_the_validation_nll():
    z, labels = _logits(n=20000, scale=3.0, seed=2)
    t = cal.fit_temperature(z, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    best = optimize.minimize_scalar(
        lambda x: cal.negative_log_likelihood(z, labels, x), bounds=(0.5, 10), method="bounded"
    )
    assert t == pytest.approx(best.x, rel=1e-3)
    p, scaled = special.softmax(z, axis=1), special.softmax(z / t, axis=1)
    assert p.max(axis=1).mean() > (p.argmax(axis=1) == labels).mean() + 0.1  # overconfident as trained
    assert cal.expected_calibration_error(scaled, labels) < cal.expected_calibration_error(p, labels) / 3
    assert np.array_equal(scaled.argmax(axis=1), p.argmax(axis=1))  # scaling never changes a prediction


def test_assess_names_each_figure_per_split_and_recomputes():
    val, val_labels = _logits(n=300, scale=2.5, seed=4)
    test, test_labels = _logits(n=200, scale=2.5, seed=5)
    found = cal.assess(val, val_labels, test, test_labels)
    t = found.metrics["temperature"]
    p = special.softmax(test / t, axis=1)
    assert found.metrics["test_ts_ece"] == pytest.approx(_ece_by_loop(p, test_labels, cal.BINS), abs=1e-12)
    assert found.metrics["test_ts_cross_entropy"] == pytest.approx(log_loss(test_labels, p, labels=range(4)), rel=1e-9)
    assert found.metrics["test_confidence"] == pytest.approx(special.softmax(test, axis=1).max(axis=1).mean())
    assert "test_cross_entropy" not in found.metrics  # the cross_entropy yardstick is that figure already
    expected = {f"{s}_{k}" for s in ("val", "test") for k in cal.FIGURES if k != "cross_entropy"}
    expected |= {f"{s}_ts_{k}" for s in ("val", "test") for k in cal.FIGURES} | {"temperature"}
    assert set(found.metrics) == expected


def test_figures_stay_finite_when_a_probability_underflows():
    z = np.array([[0.0, 2000.0], [3000.0, 0.0]])
    found = cal.assess(z, np.array([0, 0]), z, np.array([0, 0]))
    assert all(math.isfinite(v) for v in found.metrics.values())


def test_the_probabilities_artifact_recomputes_every_recorded_figure(split):
    from harness.engine.config import make_config
    from harness.engine.training import train_model
    from harness.records.quality import PROBABILITIES_ARTIFACT, RELIABILITY_TAG, quality_records, read_reliability

    result = train_model(make_config({"epochs": 5, "lr": 0.1, "hidden": [8]}), split)
    tags, artifacts = quality_records(result, split)
    assert result.quality is not None  # assessed once, in training
    with np.load(io.BytesIO(artifacts[PROBABILITIES_ARTIFACT]), allow_pickle=False) as saved:
        val_logits, val_labels = saved["val_logits"], saved["val_labels"]
        test_logits, test_labels, test_p = saved["test_logits"], saved["test_labels"], saved["test_probabilities"]
        t = float(saved["temperature"])
    assert np.array_equal(test_labels, split.y_test) and np.allclose(test_p.sum(axis=1), 1.0)
    final = result.final
    for key in ("test_ece", "test_brier", "test_ts_ece", "val_ece", "temperature", "test_ts_cross_entropy"):
        assert key in final, key
    assert t == final["temperature"] == pytest.approx(cal.fit_temperature(val_logits, val_labels), rel=1e-6)
    assert final["test_ece"] == pytest.approx(_ece_by_loop(test_p, test_labels, cal.BINS), abs=1e-12)
    assert final["test_brier"] == pytest.approx(2 * final["test_mse"], rel=1e-9)
    scaled = special.softmax(test_logits / t, axis=1)
    assert final["test_ts_cross_entropy"] == pytest.approx(log_loss(test_labels, scaled, labels=range(3)), rel=1e-9)
    diagram = read_reliability(tags[RELIABILITY_TAG])
    assert diagram["bins"] == cal.BINS and diagram["before"][:, 2].sum() == len(test_labels)
    assert json.loads(tags[RELIABILITY_TAG])["after"][0][2] == diagram["after"][0, 2]


def _confirm_frame(values):
    """A records table of confirmation runs: {condition: [(seed, test_ece, test_cross_entropy), ...]}."""
    rows = []
    for condition, seeds in values.items():
        for seed, ece, nll in seeds:
            state = "diverged" if ece is None else "complete"
            metrics = {} if ece is None else {"test_ece": ece, "test_cross_entropy": nll}
            metrics.update({k: 0.5 for k in ("test_brier", "test_ts_ece", "test_accuracy", "test_confidence")})
            rows.append(
                {"condition": condition, "seed": seed, "state": state, **{f"metric.{k}": v for k, v in metrics.items()}}
            )
    return pd.DataFrame(rows)


class _Study:
    def __init__(self, names):
        self.conditions = [type("C", (), {"name": n}) for n in names]


def test_condition_means_intervals_and_paired_tests_recompute_with_scipy():
    from harness.analysis import calibration_comparison as acal
    from harness.analysis.stats import holm

    frame = _confirm_frame(
        {
            "a": [(1, 0.10, 0.5), (2, 0.12, 0.6), (3, 0.11, 0.55), (4, None, None)],
            "b": [(1, 0.05, 0.4), (2, 0.06, 0.42), (3, 0.04, 0.41), (4, 0.05, 0.44)],
            "c": [(1, 0.05, 0.4), (2, 0.07, 0.43)],
        }
    )
    study = _Study(["a", "b", "c"])
    table = acal.condition_table(study, frame).set_index("condition")
    assert table.loc["a", "seeds"] == 3 and table.loc["a", "seeds_diverged"] == 1  # a failure is counted, not hidden
    ece = [0.10, 0.12, 0.11]
    half = sps.t.ppf(0.975, 2) * np.std(ece, ddof=1) / math.sqrt(3)
    assert table.loc["a", "test_ece_ci_low"] == pytest.approx(np.mean(ece) - half)
    assert pd.isna(table.loc["c", "test_ece_ci_low"])  # 2 seeds: no interval
    found = acal.calibration_pairs(study, frame, {"digits": ["a", "b", "c"]})
    ece_pairs = found[found["figure"] == "test_ece"].set_index(["a", "b"])
    ab = ece_pairs.loc[("a", "b")]
    assert ab["seeds"] == 3  # seed 4 diverged under a
    assert ab["p_value"] == pytest.approx(sps.ttest_rel([0.10, 0.12, 0.11], [0.05, 0.06, 0.04]).pvalue)
    assert pd.isna(ece_pairs.loc[("a", "c"), "p_value"])  # 2 common seeds: untested
    p_values = found[found["figure"] == "test_ece"]["p_value"].tolist()
    adjusted = np.array(found[found["figure"] == "test_ece"]["p_holm"].tolist(), dtype=float)
    assert np.array_equal(adjusted, np.array(holm(p_values), dtype=float), equal_nan=True)
    assert adjusted[0] == p_values[0]  # one tested pair of this figure: nothing to adjust for
    assert not found["significant"][found["p_holm"].isna()].any()


NOISY_STUDY = """
name = "noisy"
[fixed]
dataset = "iris"
hidden = [8]
batch_size = 16
label_noise = 0.3
[conditions]
loss = ["mse", "cross_entropy", "gce"]
[search]
lr = { low = 0.01, high = 2.0, log = true }
epochs = { low = 3, high = 8 }
[budget]
trials = 2
[confirm]
seeds = 3
"""


def _fitted_temperature(val_logits, val_labels):
    """Guo et al.'s temperature, found here by a grid then scipy's bounded Brent on log T."""
    nll = lambda log_t: (
        -np.mean(  # noqa: E731
            special.log_softmax(val_logits / math.exp(log_t), axis=1)[np.arange(len(val_labels)), val_labels]
        )
    )
    return math.exp(optimize.minimize_scalar(nll, bounds=(math.log(0.01), math.log(100)), method="bounded").x)


@pytest.mark.e2e
def test_every_recorded_figure_recomputes_from_the_saved_probabilities_and_the_findings_say_them(tmp_path):
    """Issue 34's done-when: a sweep with label noise, then each confirmation's figures recomputed from its
    probabilities.npz as read back from MLflow, the comparison's means from those, and a noisy run reproduced."""
    from tests.helpers import harness, mlflow_runs, write_study

    study = write_study(tmp_path, NOISY_STUDY, "noisy.toml")
    harness("sweep", study, cwd=tmp_path, check=True)
    client, runs = mlflow_runs(tmp_path, "noisy")
    confirms = [
        r for r in runs if r.data.tags.get("harness.kind") == "confirm" and r.data.tags["harness.state"] != "diverged"
    ]
    assert len(confirms) >= 6
    by_condition = {}
    for run in confirms:
        path = client.download_artifacts(run.info.run_id, "probabilities.npz", str(tmp_path / run.info.run_id))
        with np.load(path, allow_pickle=False) as saved:
            test_logits, labels = saved["test_logits"], saved["test_labels"]
            t = _fitted_temperature(saved["val_logits"], saved["val_labels"])
        metrics = run.data.metrics
        p, scaled = special.softmax(test_logits, axis=1), special.softmax(test_logits / t, axis=1)
        assert metrics["temperature"] == pytest.approx(t, rel=1e-4)
        assert metrics["test_ece"] == pytest.approx(_ece_by_loop(p, labels, cal.BINS), abs=1e-12)
        assert metrics["test_ts_ece"] == pytest.approx(_ece_by_loop(scaled, labels, cal.BINS), abs=1e-5)
        assert metrics["test_cross_entropy"] == pytest.approx(log_loss(labels, p, labels=range(3)), rel=1e-9)
        assert metrics["test_brier"] == pytest.approx(
            brier_score_loss(labels, p, labels=range(3), scale_by_half=False), rel=1e-9
        )
        assert metrics["test_accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == labels))
        by_condition.setdefault(run.data.tags["harness.condition"], []).append(metrics["test_ece"])
    shown = json.loads(harness("compare", "noisy", "--json", cwd=tmp_path, check=True).stdout)
    table = {row["condition"]: row for row in shown["calibration"]}
    for condition, values in by_condition.items():
        assert table[condition]["test_ece_mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert table[condition]["seeds"] == len(values)
    sentence = next(s for s in shown["findings"] if s.startswith("Probabilities"))
    best = min(by_condition, key=lambda c: np.mean(by_condition[c]))
    assert f"{best}'s come closest to face value (test ECE {np.mean(by_condition[best]):.4f}" in sentence
    assert "Temperature scaling" not in sentence or "noisy validation labels" in sentence  # every condition's are
    noisy = next(r for r in confirms if r.data.params.get("label_noise") == "0.3")
    from harness.engine.config import make_config
    from harness.engine.data import load_split

    drawn = load_split(make_config({"dataset": "iris", "label_noise": 0.3}))
    assert noisy.data.tags["harness.noisy_train_rows"] == str(drawn.noisy_train) and drawn.noisy_train > 0
    assert noisy.data.tags["harness.train_rows_per_class"] == ",".join(map(str, np.bincount(drawn.y_train)))
    again = harness("reproduce", noisy.info.run_id, cwd=tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout


def _analysis_of(seeds, settings=None):
    """An Analysis-like object with the calibration tables built from {condition: [(ece, ts_ece, conf, acc)]}."""
    from types import SimpleNamespace

    from harness.analysis import calibration_comparison as acal

    rows = []
    for condition, values in seeds.items():
        for seed, (ece, ts_ece, confidence, accuracy) in enumerate(values, start=1):
            metrics = {"test_ece": ece, "test_ts_ece": ts_ece, "test_confidence": confidence}
            metrics.update(test_accuracy=accuracy, test_cross_entropy=0.3, test_brier=0.1, temperature=1.5)
            rows.append({"condition": condition, "seed": seed, "state": "complete"})
            rows[-1].update({f"metric.{k}": v for k, v in metrics.items()})
    frame = pd.DataFrame(rows)
    study = _Study(list(seeds))
    return SimpleNamespace(
        calibration=acal.condition_table(study, frame),
        calibration_pairs=acal.calibration_pairs(study, frame, {"d": list(seeds)}),
        study_settings=settings or {},
    )


def test_the_finding_names_the_order_reversing_after_scaling_and_its_test():
    from harness.analysis.calibration_comparison import finding

    analysis = _analysis_of(
        {
            "mse": [(0.065, 0.018, 0.90, 0.96), (0.060, 0.016, 0.90, 0.96), (0.070, 0.021, 0.90, 0.96)],
            "ce": [(0.017, 0.031, 0.98, 0.97), (0.018, 0.030, 0.98, 0.97), (0.016, 0.032, 0.98, 0.97)],
        }
    )
    sentence, essential = finding(analysis, "d", ["mse", "ce"])
    assert "ce's come closest to face value" in sentence and "mse's the least" in sentence
    assert "mean confidence 0.900 at accuracy 0.960: underconfident" in sentence
    assert "the order reverses, mse's now 0.013 below" in sentence  # 0.031 - 0.018
    p = sps.ttest_rel([0.018, 0.016, 0.021], [0.031, 0.030, 0.032]).pvalue
    assert f"a significant difference after scaling, p Holm {p:.2g}" in sentence
    assert essential == (sps.ttest_rel([0.065, 0.060, 0.070], [0.017, 0.018, 0.016]).pvalue < 0.05)


def test_the_finding_says_when_nothing_is_tested_and_when_the_temperature_fits_noise():
    from harness.analysis.calibration_comparison import finding

    two = {"a": [(0.30, 0.40, 0.5, 0.9), (0.31, 0.41, 0.5, 0.9)], "b": [(0.05, 0.06, 0.95, 0.9)] * 2}
    noisy = {"a": {"label_noise": 0.4}, "b": {"label_noise": 0.4, "clean_validation": True}}
    sentence, essential = finding(_analysis_of(two, noisy), "d", ["a", "b"])
    assert "with fewer than 3 seeds per condition no ECE difference is tested" in sentence and not essential
    assert "the gap of 0.255 widens to 0.345" in sentence and "(untested: fewer than 3 seeds)" in sentence
    assert "a tuned on noisy validation labels" in sentence and "a and b" not in sentence  # b's validation is clean
    assert "clean_validation = true in [fixed] keeps validation clean" in sentence  # the key to change
