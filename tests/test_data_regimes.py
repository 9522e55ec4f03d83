"""Data regimes: class imbalance and label noise, applied to the split from their own streams of data_seed."""

import json
import math
import re

import numpy as np
import pytest
from scipy.stats import chisquare

from harness.common.errors import ConfigError
from harness.engine.config import make_config
from harness.engine.data import (
    imbalanced_rows,
    kept_per_class,
    load_split,
    noise_bound,
    noisy_labels,
    regime_rng,
)
from tests.helpers import ROOT


def split_of(**values):
    return load_split(make_config({"dataset": "digits", **values}))


@pytest.fixture(scope="module")
def clean():
    return split_of()


@pytest.fixture(scope="module")
def noisy():
    return split_of(label_noise=0.3)


def test_symmetric_noise_flips_about_rate_times_n_rows_never_to_the_same_class(clean, noisy):
    n, rate = len(clean.y_train), 0.3
    assert n == 1078  # no imbalance: the same training rows, in the same order
    np.testing.assert_array_equal(noisy.x_train, clean.x_train)
    flipped = noisy.y_train != clean.y_train
    assert abs(flipped.sum() - rate * n) < 4 * math.sqrt(n * rate * (1 - rate))
    assert noisy.noisy_train == flipped.sum() > 0
    offsets = (noisy.y_train[flipped] - clean.y_train[flipped]) % 10
    assert offsets.min() >= 1  # a noisy label is never the true one
    assert chisquare(np.bincount(offsets, minlength=10)[1:]).pvalue > 1e-4  # any other class alike


def test_symmetric_noise_is_uniform_over_the_other_classes_of_each_class():
    y = np.repeat(np.arange(4), 3000)
    noisy = noisy_labels(y, 0.5, "symmetric", 4, np.random.default_rng(0))
    for k in range(4):
        moved = noisy[(y == k) & (noisy != y)]
        counts = np.bincount(moved, minlength=4)
        assert counts[k] == 0
        assert chisquare(np.delete(counts, k)).pvalue > 1e-4


def test_a_wrong_draw_is_caught_by_the_uniformity_test():
    """The check above can fail: a draw that favours the next class is far from uniform."""
    y = np.repeat(np.arange(4), 3000)
    rng = np.random.default_rng(0)
    biased = np.where(rng.random(len(y)) < 0.5, (y + rng.choice([1, 1, 2, 3], size=len(y))) % 4, y)
    counts = np.bincount(biased[(y == 0) & (biased != y)], minlength=4)
    assert chisquare(counts[1:]).pvalue < 1e-4


def test_pairwise_noise_moves_class_k_to_k_plus_1_only(clean):
    noisy = split_of(label_noise=0.3, noise_kind="pairwise")
    flipped = noisy.y_train != clean.y_train
    np.testing.assert_array_equal(noisy.y_train[flipped], (clean.y_train[flipped] + 1) % 10)
    assert noisy.noisy_train == flipped.sum() > 0 and 9 in clean.y_train[flipped]  # the last wraps to 0
    val_flipped = noisy.y_val != clean.y_val
    np.testing.assert_array_equal(noisy.y_val[val_flipped], (clean.y_val[val_flipped] + 1) % 10)
    y = np.arange(5)
    np.testing.assert_array_equal(noisy_labels(y, 0.99, "pairwise", 5, np.random.default_rng(1)), [1, 2, 3, 4, 0])


def test_a_noisy_row_is_drawn_independently_at_the_rate():
    y = np.zeros(20000, dtype=np.int64)
    changed = noisy_labels(y, 0.1, "symmetric", 3, np.random.default_rng(2)) != y
    assert abs(changed.sum() - 2000) < 4 * math.sqrt(20000 * 0.1 * 0.9)
    np.testing.assert_array_equal(noisy_labels(y, 0.0, "pairwise", 3, np.random.default_rng(2)), y)


def test_test_rows_stay_clean(clean):
    for values in ({"label_noise": 0.3}, {"label_noise": 0.3, "noise_kind": "pairwise"}):
        regime = split_of(**values)
        np.testing.assert_array_equal(regime.y_test, clean.y_test)
        np.testing.assert_array_equal(regime.x_test, clean.x_test)
    fewer = split_of(imbalance=10.0, label_noise=0.3)  # scaled by the kept rows' scaler: the same raw rows
    np.testing.assert_array_equal(fewer.y_test, clean.y_test)
    raw = [s.x_test * s.scaler_scale + s.scaler_mean for s in (fewer, clean)]
    np.testing.assert_allclose(*raw, atol=1e-9)
    assert not np.allclose(fewer.x_test, clean.x_test)


def test_validation_is_noisy_unless_clean_validation(clean, noisy):
    kept = split_of(label_noise=0.3, clean_validation=True)
    np.testing.assert_array_equal(kept.y_val, clean.y_val)
    np.testing.assert_array_equal(kept.x_val, clean.x_val)
    assert kept.noisy_val == 0
    np.testing.assert_array_equal(kept.y_train, noisy.y_train)  # the same training rows flip either way
    assert kept.noisy_train == noisy.noisy_train
    changed = noisy.y_val != clean.y_val
    assert noisy.noisy_val == changed.sum()
    assert abs(changed.sum() - 0.3 * len(clean.y_val)) < 4 * math.sqrt(len(clean.y_val) * 0.3 * 0.7)
    train_changed = noisy.y_train != clean.y_train  # validation draws from a stream of its own, not training's
    assert np.mean(changed == train_changed[: len(changed)]) < 0.8  # independent: about 0.58; one stream: 1


def test_imbalance_keeps_the_rounded_down_exponential_profile(clean):
    ratio = 5.0
    split = split_of(imbalance=ratio)
    before = np.bincount(clean.y_train, minlength=10)
    expected = [max(1, math.floor(n * ratio ** (-k / 9) + 1e-9)) for k, n in enumerate(before)]
    assert list(np.bincount(split.y_train, minlength=10)) == expected == split.train_class_counts
    assert expected[0] == before[0] and expected[9] == math.floor(before[9] / ratio)
    assert expected[1] < before[1] * ratio ** (-1 / 9)  # rounded down, not to the nearest
    np.testing.assert_array_equal(split.y_val, clean.y_val)
    np.testing.assert_array_equal(split.y_test, clean.y_test)
    assert split.noisy_train == split.noisy_val == 0


def test_imbalance_on_iris_exactly_and_at_least_one_row():
    assert kept_per_class([30, 30, 30], 5.0) == [30, 13, 6]  # 30 * 5**-0.5 = 13.4 rounds down
    assert kept_per_class([30, 30, 30], 1000.0) == [30, 1, 1]  # 0.95 and 0.03 rows: one each
    assert kept_per_class([20, 20], 5.0) == [20, 4]  # 20 / 5, however the float of 5**-1 falls
    assert load_split(make_config({"dataset": "iris", "imbalance": 5.0})).train_class_counts == [30, 13, 6]


def test_imbalance_keeps_training_rows_in_their_order_and_scales_on_them(clean):
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    rows = imbalanced_rows(y, 4.0, np.random.default_rng(0))
    assert list(np.bincount(y[rows])) == [4, 2, 1] and list(rows) == sorted(rows)
    split = split_of(imbalance=10.0)
    np.testing.assert_allclose(split.x_train.mean(0), 0, atol=1e-12)  # the scaler fitted on the kept rows
    before = np.bincount(clean.y_train, minlength=10)
    raw = clean.x_train * clean.scaler_scale + clean.scaler_mean
    kept = split.x_train * split.scaler_scale + split.scaler_mean
    positions = [int(np.flatnonzero(np.all(np.isclose(raw, row, atol=1e-9), axis=1))[0]) for row in kept[:200]]
    assert positions == sorted(positions)  # every kept row is a training row, in its original order
    assert len(split.y_train) < before.sum()


def test_recorded_counts_match_the_arrays():
    split = split_of(label_noise=0.4, imbalance=3.0, noise_kind="pairwise")
    assert split.train_class_counts == list(np.bincount(split.y_train, minlength=10))
    assert sum(split.train_class_counts) == len(split.y_train) == len(split.x_train)
    plain = split_of(imbalance=3.0)
    assert split.noisy_train == (split.y_train != plain.y_train).sum() > 0
    assert split.noisy_val == (split.y_val != plain.y_val).sum() > 0
    assert split.digest != plain.digest  # the noisy labels are what the digest covers


def test_a_clean_balanced_split_is_the_one_made_before_regimes(clean):
    assert clean.noisy_train == clean.noisy_val == 0
    assert clean.train_class_counts == list(np.bincount(clean.y_train, minlength=10))
    assert split_of(noise_kind="pairwise", clean_validation=True).digest == clean.digest  # idle without noise


@pytest.mark.parametrize(
    "values,bound",
    [
        ({"dataset": "iris", "label_noise": 0.67}, "0.6667"),
        ({"dataset": "iris", "label_noise": 0.5, "noise_kind": "pairwise"}, "0.5"),
        ({"dataset": "breast_cancer", "label_noise": 0.5}, "0.5"),
    ],
)
def test_too_much_noise_is_refused_in_one_line(values, bound):
    with pytest.raises(ConfigError) as caught:
        load_split(make_config(values))
    message = str(caught.value)
    assert "\n" not in message and f"dataset {values['dataset']!r}" in message
    assert f"label_noise = {values['label_noise']:g} is not allowed" in message and f"< {bound} " in message


def test_just_below_the_bound_is_allowed():
    assert noise_bound("symmetric", 3) == pytest.approx(2 / 3) and noise_bound("pairwise", 10) == 0.5
    assert load_split(make_config({"dataset": "iris", "label_noise": 0.66})).noisy_train > 0
    assert load_split(make_config({"dataset": "iris", "label_noise": 0.49, "noise_kind": "pairwise"})).noisy_train > 0


def test_the_regimes_draw_from_their_own_streams():
    draws = [regime_rng(0, s).random(4) for s in ("imbalance", "train_noise", "val_noise")]
    draws.append(np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0]).random(4))  # a run's init stream
    assert len({tuple(d) for d in draws}) == 4
    np.testing.assert_array_equal(regime_rng(7, "train_noise").random(4), regime_rng(7, "train_noise").random(4))


def test_the_same_config_reproduces_exactly_and_data_seed_changes_the_noisy_set():
    from harness.engine.training import train_model

    values = {"dataset": "digits", "label_noise": 0.3, "imbalance": 5.0, "hidden": [16], "epochs": 3}
    config = make_config(values)
    rebuilt = make_config(json.loads(config.to_json()), "config.json")  # what `harness reproduce` reads
    a, b = load_split(config), load_split(rebuilt)
    assert a.digest == b.digest
    np.testing.assert_array_equal(a.y_train, b.y_train)
    first, second = train_model(config, a), train_model(rebuilt, b)
    assert first.status == second.status == "complete"
    assert first.history == second.history and len(first.history["train_loss"]) == 3

    other = load_split(make_config({**values, "data_seed": 1}))
    clean_other = load_split(make_config({"dataset": "digits", "imbalance": 5.0, "data_seed": 1}))
    clean_a = load_split(make_config({"dataset": "digits", "imbalance": 5.0}))
    assert other.digest != a.digest and a.noisy_train > 0 and other.noisy_train > 0
    flipped, flipped_other = a.y_train != clean_a.y_train, other.y_train != clean_other.y_train
    assert not np.array_equal(np.flatnonzero(flipped), np.flatnonzero(flipped_other))
    same_split = load_split(make_config({**values, "seed": 1}))  # a run's seed draws no labels
    np.testing.assert_array_equal(same_split.y_train, a.y_train)


@pytest.mark.e2e
def test_train_with_label_noise_end_to_end(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'noise.db'}"
    code = main(
        ["train", "--dataset", "iris", "--label-noise", "0.2", "--epochs", "2", "--tracking-uri", uri, "--json"]
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["status"] == "complete"
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    params = run.data.params
    assert params["label_noise"] == "0.2" and params["noise_kind"] == "symmetric"
    assert params["clean_validation"] == "False" and "imbalance" not in params
    split = load_split(make_config({"dataset": "iris", "label_noise": 0.2}))
    assert run.data.tags["harness.dataset_digest"] == split.digest


def test_the_documented_study_puts_label_noise_in_its_conditions(tmp_path):
    from harness.studies.parse import read_study

    page = (ROOT / "docs" / "studies.md").read_text()
    section = page.split("## Data regimes: label noise and imbalance", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S)[1]
    (tmp_path / "noise.toml").write_text(example)
    study = read_study(tmp_path / "noise.toml")
    levels = sorted({c.settings.get("label_noise") for c in study.conditions})
    assert levels == [0.0, 0.2, 0.4]


def test_a_study_refuses_a_too_noisy_condition_before_anything_is_created(tmp_path):
    from harness.common.errors import HarnessError
    from harness.studies.parse import read_study
    from harness.sweep.preparation import preflight

    path = tmp_path / "noisy.toml"
    path.write_text(
        'name = "noisy"\n[fixed]\ndataset = "iris"\nnoise_kind = "pairwise"\n'
        "[conditions]\nlabel_noise = [0.1, 0.5]\n"
        "[search]\nlr = { low = 0.01, high = 1.0, log = true }\n[budget]\ntrials = 2\n"
    )
    with pytest.raises(HarnessError) as caught:
        preflight(read_study(path))
    message = str(caught.value)
    assert "\n" not in message and "noisy.toml: condition" in message and "label_noise = 0.5 is not allowed" in message
    assert not (tmp_path / "mlruns").exists()
