import shutil
import sys

import numpy as np
import pytest
from scipy.special import log_softmax

from harness.engine import methods
from harness.engine.activations import ACTIVATIONS
from harness.engine.config import TrainConfig, make_config
from harness.engine.losses import GCE_Q, LOSSES, YARDSTICKS, GeneralizedCrossEntropy, evaluate, softmax
from harness.engine.network import StackedMLP, glorot
from harness.engine.training import COMPLETE, train_model, train_stack
from tests.helpers import ROOT

CASES = {**LOSSES, "gce-q0.2": GeneralizedCrossEntropy(0.2), "gce-q1": GeneralizedCrossEntropy(1.0)}
"""Every built-in (gce at its default q) and GCE at a small q and at q = 1 (MAE / 2)."""


def _numeric_grad(net, x, y, loss, eps=1e-6):
    grad = np.zeros_like(net.params)
    for i in range(net.params.shape[1]):
        keep = net.params[0, i]
        net.params[0, i] = keep + eps
        up = net.loss_and_grad(x, y, loss)[0]
        net.params[0, i] = keep - eps
        down = net.loss_and_grad(x, y, loss)[0]
        net.params[0, i] = keep
        grad[0, i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("loss_name", sorted(CASES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradient_matches_central_differences(loss_name, activation):
    rng = np.random.default_rng(1)
    net = StackedMLP(glorot(rng, [5, 4, 3, 3], activation, "float64")[None, :], [5, 4, 3, 3], activation)
    x = rng.normal(size=(1, 6, 5))
    y = np.eye(3)[rng.integers(0, 3, size=6)][None]
    loss = CASES[loss_name]
    net.loss_and_grad(x, y, loss)
    analytic = net.grad.copy()
    numeric = _numeric_grad(net, x, y, loss)
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-6, rel


def test_training_losses_equal_their_evaluation_yardsticks():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(7, 4)) * 3
    labels = rng.integers(0, 4, size=7)
    y = np.eye(4)[labels]
    scores = evaluate(z, labels)
    assert set(YARDSTICKS) == set(LOSSES) - {"gce"} and "gce" not in scores  # GCE's value depends on q
    for name, loss in LOSSES.items():
        value = loss.value_and_grad(z[None].copy(), y[None], np.empty_like(z[None]))[0]
        wanted = scores[name] if name in YARDSTICKS else evaluate(z, labels, own=(name, loss))[name]
        assert value == pytest.approx(wanted, rel=1e-12)
    assert scores["accuracy"] == np.mean(z.argmax(1) == labels)


def test_cross_entropy_is_finite_when_probability_underflows():
    z = np.array([[[0.0, 2000.0]]])
    y = np.array([[[1.0, 0.0]]])
    value = LOSSES["cross_entropy"].value_and_grad(z, y, np.empty_like(z))
    assert value[0] == pytest.approx(2000.0)


def test_mse_gradient_vanishes_on_a_saturated_wrong_prediction():
    """The course's point: MSE on probabilities barely moves a confidently wrong output."""
    z = np.array([[[0.0, 30.0]]])
    y = np.array([[[1.0, 0.0]]])
    g_mse, g_ce = np.empty_like(z), np.empty_like(z)
    LOSSES["mse"].value_and_grad(z, y, g_mse)
    LOSSES["cross_entropy"].value_and_grad(z, y, g_ce)
    assert np.abs(g_mse).max() < 1e-10 < 0.9 < np.abs(g_ce).max()
    assert evaluate(z[0], np.array([0]))["saturated_share"] == 1.0


def test_softmax_rows_sum_to_one():
    p = softmax(np.random.default_rng(0).normal(size=(5, 3)) * 50)
    assert np.allclose(p.sum(1), 1.0)


def _stack(seed=3, t=3, b=6, c=4, scale=3.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(t, b, c)) * scale
    labels = rng.integers(0, c, size=(t, b))
    return z, labels, np.eye(c)[labels]


def _gce_formula(z, labels, q):
    """(1/B) sum_i (1 - p_i[y_i]^q) / q per model, from scipy's log-softmax: z (..., b, c), labels (..., b)."""
    p_label = np.exp(np.take_along_axis(log_softmax(z, axis=-1), labels[..., None], axis=-1)[..., 0])
    return ((1 - p_label**q) / q).mean(axis=-1)


@pytest.mark.parametrize("q", [0.05, 0.3, 0.7, 1.0])
def test_mae_and_gce_values_and_gradients_are_their_formulas(q):
    z, labels, y = _stack()
    b = z.shape[1]
    p = np.exp(log_softmax(z, axis=-1))
    p_label = np.take_along_axis(p, labels[..., None], axis=-1)
    out = np.empty_like(z)
    mae = LOSSES["mae"].value_and_grad(z.copy(), y, out)
    np.testing.assert_allclose(mae, np.abs(p - y).sum(axis=-1).mean(axis=-1), rtol=1e-12)  # the L1 norm itself
    np.testing.assert_allclose(out, 2 / b * p_label * (p - y), rtol=1e-12, atol=1e-15)
    gce = GeneralizedCrossEntropy(q).value_and_grad(z.copy(), y, out)
    np.testing.assert_allclose(gce, _gce_formula(z, labels, q), rtol=1e-12)
    np.testing.assert_allclose(out, p_label**q * (p - y) / b, rtol=1e-12, atol=1e-15)
    assert mae.shape == gce.shape == (3,)


def test_gce_is_half_mae_at_q_one_and_cross_entropy_as_q_vanishes():
    z, _, y = _stack(seed=4)
    scratch = np.empty_like(z)
    mae = LOSSES["mae"].value_and_grad(z.copy(), y, scratch)
    np.testing.assert_allclose(GeneralizedCrossEntropy(1.0).value_and_grad(z.copy(), y, scratch), mae / 2, rtol=1e-12)
    ce_grad, gce_grad = np.empty_like(z), np.empty_like(z)
    ce = LOSSES["cross_entropy"].value_and_grad(z.copy(), y, ce_grad)
    gce = GeneralizedCrossEntropy(1e-6).value_and_grad(z.copy(), y, gce_grad)
    np.testing.assert_allclose(gce, ce, rtol=1e-4)
    np.testing.assert_allclose(gce_grad, ce_grad, rtol=1e-4, atol=1e-12)
    assert not np.allclose(GeneralizedCrossEntropy(0.5).value_and_grad(z.copy(), y, scratch), ce, rtol=1e-2)


@pytest.mark.parametrize("q", [1e-3, 0.7])
def test_gce_and_mae_are_finite_when_the_label_probability_underflows(q):
    """p_y = e^-2000 is 0 in float64, but p_y^q = e^(-2000 q) is 0.135 at q = 1e-3: through log p_y."""
    z = np.array([[[0.0, 2000.0]]])
    y = np.array([[[1.0, 0.0]]])
    out = np.empty_like(z)
    value = GeneralizedCrossEntropy(q).value_and_grad(z, y, out)
    assert np.isfinite(value).all() and np.isfinite(out).all()
    assert value[0] == pytest.approx(-np.expm1(-2000 * q) / q, rel=1e-12)
    np.testing.assert_allclose(out[0, 0], np.exp(-2000 * q) * np.array([-1.0, 1.0]), rtol=1e-12, atol=1e-300)
    assert LOSSES["mae"].value_and_grad(z, y, out)[0] == 2.0 and np.isfinite(out).all()
    assert evaluate(z[0], np.array([0]), own=("gce", GeneralizedCrossEntropy(q)))["gce"] == pytest.approx(value[0])


def test_the_new_losses_pass_the_custom_loss_check_and_q_reaches_the_loss():
    for name, loss in CASES.items():
        methods.check_loss(name, loss)  # the finite-difference check a user's loss must pass
    assert methods.resolve_loss("gce", 0.3).q == 0.3 and methods.resolve_loss("gce").q == GCE_Q == TrainConfig().gce_q
    assert methods.resolve_loss("mae", 0.3) is LOSSES["mae"]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        GeneralizedCrossEntropy(0.0)


def test_models_of_one_stack_share_gce_q(split, config):
    from harness.common.errors import ConfigError

    with pytest.raises(ConfigError, match="must share gce_q"):
        train_stack([config(loss="gce", gce_q=0.3), config(loss="gce", gce_q=0.5)], split)


def test_a_gce_run_is_scored_at_its_own_q(split, config):
    result = train_model(config(loss="gce", gce_q=0.3, epochs=3), split)
    assert result.status == COMPLETE and len(result.history["val_gce"]) == 3
    for prefix, x, labels in (("val", split.x_val, split.y_val), ("test", split.x_test, split.y_test)):
        wanted = _gce_formula(result.network.logits(x), labels, 0.3)
        assert result.final[f"{prefix}_gce"] == pytest.approx(wanted, rel=1e-10)
        assert not result.final[f"{prefix}_gce"] == pytest.approx(_gce_formula(result.network.logits(x), labels, 0.7))
    assert result.history["val_gce"][-1] == pytest.approx(result.final["val_gce"], rel=1e-12)  # the last epoch's
    other_q = train_model(config(loss="gce", gce_q=0.9, epochs=3), split)
    assert other_q.history["train_loss"] != result.history["train_loss"]  # training itself uses the config's q


@pytest.mark.parametrize("loss", ["mae", "gce"])
def test_mae_and_gce_train_digits_to_completion(loss):
    from harness.engine.data import load_split

    c = make_config({"dataset": "digits", "hidden": [32], "epochs": 4, "optimizer": "adam", "lr": 0.01, "loss": loss})
    result = train_model(c, load_split(c))
    assert result.status == COMPLETE and result.epochs_run == 4
    assert all(np.isfinite(v).all() and len(v) == 4 for v in result.history.values())
    assert {"val_mae", "test_mae", f"val_{loss}", f"test_{loss}"} <= set(result.final)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0] / 2
    assert result.final["test_accuracy"] > 0.8  # ten classes: it learned


@pytest.fixture
def smoothing_module(tmp_path, monkeypatch):
    """examples/my_methods.py under a module name of its own, forgotten afterwards."""
    shutil.copy(ROOT / "examples" / "my_methods.py", tmp_path / "own_loss_methods.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "own_loss_methods:LabelSmoothedCrossEntropy"
    sys.modules.pop("own_loss_methods", None)
    methods._CHECKED.pop(("loss", "own_loss_methods:LabelSmoothedCrossEntropy"), None)


def test_a_custom_loss_run_records_its_own_validation_and_test_loss(split, config, smoothing_module):
    from harness.records.runs import lean_curves

    c = config(loss=smoothing_module, epochs=3)
    result = train_model(c, split)
    key = smoothing_module  # the config's loss as written, as lean_curves names its curve
    assert result.status == COMPLETE and len(result.history[f"val_{key}"]) == 3
    assert lean_curves(c, "val_accuracy") <= set(result.history)  # a lean search trial keeps its own loss
    for prefix, x, labels in (("val", split.x_val, split.y_val), ("test", split.x_test, split.y_test)):
        target = 0.9 * np.eye(split.n_classes)[labels] + 0.1 / split.n_classes
        wanted = -(target * log_softmax(result.network.logits(x), axis=1)).sum(axis=1).mean()
        assert result.final[f"{prefix}_{key}"] == pytest.approx(wanted, rel=1e-10)
    assert result.history[f"val_{key}"][-1] == result.final[f"val_{key}"]


def test_a_study_can_search_gce_q_and_minimise_val_mae():
    from harness.common.errors import ConfigError
    from harness.studies.parse import parse_study

    def study(q_range, metric="val_mae"):
        return {
            "name": "gce",
            "fixed": {"dataset": "iris", "loss": "gce"},
            "conditions": {"hidden": [[8], [16]]},
            "search": {"lr": {"low": 0.01, "high": 1.0}, "gce_q": q_range},
            "objective": {"metric": metric},
        }

    parsed = parse_study(study({"low": 0.1, "high": 1.0}), "gce.toml")
    assert [p.name for p in parsed.search] == ["lr", "gce_q"] and parsed.search[1].high == 1.0
    assert parsed.objective == "val_mae" and parsed.direction == "minimize" and parsed.tolerance == 0.02
    with pytest.raises(ConfigError, match="gce_q = 1.5 is not allowed"):  # each end of the range makes a valid run
        parse_study(study({"low": 0.1, "high": 1.5}), "gce.toml")
    with pytest.raises(ConfigError, match="objective.metric"):  # GCE's value depends on q: no shared yardstick
        parse_study(study({"low": 0.1, "high": 1.0}, metric="val_gce"), "gce.toml")
