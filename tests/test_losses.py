import numpy as np
import pytest

from harness.engine.activations import ACTIVATIONS
from harness.engine.losses import LOSSES, evaluate, softmax
from harness.engine.network import StackedMLP, glorot


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


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradient_matches_central_differences(loss_name, activation):
    rng = np.random.default_rng(1)
    net = StackedMLP(glorot(rng, [5, 4, 3, 3], activation, "float64")[None, :], [5, 4, 3, 3], activation)
    x = rng.normal(size=(1, 6, 5))
    y = np.eye(3)[rng.integers(0, 3, size=6)][None]
    loss = LOSSES[loss_name]
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
    for name, loss in LOSSES.items():
        value = loss.value_and_grad(z[None].copy(), y[None], np.empty_like(z[None]))[0]
        assert value == pytest.approx(scores[name], rel=1e-12)
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
