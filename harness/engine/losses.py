"""Training losses, each a value with its matching gradient with respect to the logits.

Normalisation, written down once (B = rows in the batch, z = logits, p = softmax(z), y = one-hot):

- ``cross_entropy``: L = (1/B) sum_i -log p_i[y_i]. Computed through a stable log-softmax.
  dL/dz = (p - y) / B. Same value as scikit-learn's ``log_loss`` on an MLP.
- ``mse``: L = (1/B) sum_i 1/2 ||p_i - y_i||^2, the squared error between the predicted class
  probabilities and the one-hot label. dL/dp = (p - y) / B, pushed through the softmax Jacobian:
  dL/dz = p * (g - <g, p>). When p saturates near 0 or 1 that Jacobian vanishes, which is why this
  loss learns slowly from confidently wrong predictions.
- ``mse_logits``: L = (1/B) sum_i 1/2 ||z_i - y_i||^2, the square loss on raw outputs used in the
  square-loss-versus-cross-entropy literature. dL/dz = (z - y) / B.

Every loss also serves as a yardstick: :func:`evaluate` scores any network under all of them.
Training works on stacks of models: arrays carry a leading model axis and values come per model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray


def softmax(z: NDArray[np.floating]) -> NDArray[np.floating]:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _per_model_sum(a):
    """Sum over everything but the leading model axis: (T, b, c) -> (T,)."""
    return np.add.reduce(a.reshape(a.shape[0], -1), axis=1)


class CrossEntropy:
    name = "cross_entropy"

    def value_and_grad(
        self, z: NDArray[np.floating], y: NDArray[np.floating], out: NDArray[np.floating]
    ) -> NDArray[np.floating]:
        """Per-model mean batch losses (T,); writes dL/dz into ``out``. z, y, out: (T, b, classes)."""
        b = z.shape[1]
        np.subtract(z, np.maximum.reduce(z, axis=2, keepdims=True), out=out)
        # -log p[y] = log(sum exp(shifted)) - shifted[y]: finite even where p[y] underflows to 0.
        shifted_at_label = _per_model_sum(out * y)
        np.exp(out, out=out)
        total = np.add.reduce(out, axis=2, keepdims=True)
        values = (_per_model_sum(np.log(total)) - shifted_at_label) / b
        out /= total
        out -= y
        out *= 1.0 / b
        return values


class MSEProbabilities:
    name = "mse"

    def value_and_grad(
        self, z: NDArray[np.floating], y: NDArray[np.floating], out: NDArray[np.floating]
    ) -> NDArray[np.floating]:
        b = z.shape[1]
        p = softmax(z)
        np.subtract(p, y, out=out)
        values = 0.5 * _per_model_sum(out * out) / b
        out *= 1.0 / b
        inner = np.add.reduce(out * p, axis=2, keepdims=True)
        out -= inner
        out *= p
        return values


class MSELogits:
    name = "mse_logits"

    def value_and_grad(
        self, z: NDArray[np.floating], y: NDArray[np.floating], out: NDArray[np.floating]
    ) -> NDArray[np.floating]:
        b = z.shape[1]
        np.subtract(z, y, out=out)
        values = 0.5 * _per_model_sum(out * out) / b
        out *= 1.0 / b
        return values


LOSSES = {loss.name: loss for loss in (CrossEntropy(), MSEProbabilities(), MSELogits())}

SATURATION = 0.99
"""A row whose largest softmax probability exceeds this is 'saturated': the softmax Jacobian there is
near zero, so MSE on probabilities barely moves it even when the prediction is wrong."""


def accuracy(z: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    return float(np.count_nonzero(z.argmax(axis=1) == labels) / len(labels))


def evaluate(z: NDArray[np.floating], labels: NDArray[np.integer]) -> dict[str, float]:
    """Score logits under every loss, plus accuracy and the share of saturated softmax rows."""
    n = z.shape[0]
    rows = np.arange(n)
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    total = p.sum(axis=1, keepdims=True)
    p /= total
    saturated = np.count_nonzero(p.max(axis=1) > SATURATION)
    cross_entropy = float(np.log(total).sum() - shifted[rows, labels].sum()) / n
    p[rows, labels] -= 1.0  # p - onehot
    diff_z = z.copy()
    diff_z[rows, labels] -= 1.0
    return {
        "cross_entropy": cross_entropy,
        "mse": 0.5 * float(np.vdot(p, p)) / n,
        "mse_logits": 0.5 * float(np.vdot(diff_z, diff_z)) / n,
        "accuracy": accuracy(z, labels),
        "saturated_share": saturated / n,
    }
