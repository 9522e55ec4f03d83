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
- ``mae``: L = (1/B) sum_i ||p_i - y_i||_1 = (1/B) sum_i 2 (1 - p_i[y_i]), the absolute error on the
  probabilities (Ghosh, Kumar and Sastry 2017: bounded, hence robust to symmetric label noise).
  dL/dz = (2/B) p_y (p - y), with p_y = p_i[y_i] per row.
- ``gce``: L = (1/B) sum_i (1 - p_i[y_i]^q) / q, the generalized cross-entropy (Zhang and Sabuncu 2018),
  q in (0, 1] (the config's ``gce_q``): q -> 0 is cross-entropy, q = 1 is ``mae`` / 2.
  dL/dz = (1/B) p_y^q (p - y). p_y^q is exp(q log p_y) through a stable log-softmax, so value and
  gradient stay finite where p_y underflows to 0.

Every parameter-free loss is also a yardstick (``YARDSTICKS``): :func:`evaluate` scores any network under
all of them, and under the run's own training loss (``gce`` at its q, a user's loss) when given it.
Training works on stacks of models: arrays carry a leading model axis and values come per model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def _log_p_label(z, y, out):
    """Writes p - y into ``out`` and returns log p[y] per row, (T, b, 1): through a stable log-softmax,
    finite even where p[y] underflows to 0."""
    np.subtract(z, np.maximum.reduce(z, axis=2, keepdims=True), out=out)
    shifted_at_label = np.add.reduce(out * y, axis=2, keepdims=True)
    np.exp(out, out=out)
    total = np.add.reduce(out, axis=2, keepdims=True)
    out /= total
    out -= y
    return shifted_at_label - np.log(total)


class MAEProbabilities:
    name = "mae"

    def value_and_grad(
        self, z: NDArray[np.floating], y: NDArray[np.floating], out: NDArray[np.floating]
    ) -> NDArray[np.floating]:
        b = z.shape[1]
        log_p_label = _log_p_label(z, y, out)
        values = -2.0 * _per_model_sum(np.expm1(log_p_label)) / b  # 2 (1 - p_y), exact near p_y = 1
        out *= np.exp(log_p_label) * (2.0 / b)
        return values


GCE_Q = 0.7
"""GCE's q when none is given: Zhang and Sabuncu's choice, and ``TrainConfig.gce_q``'s default."""


class GeneralizedCrossEntropy:
    name = "gce"

    def __init__(self, q: float = GCE_Q) -> None:
        if not 0 < q <= 1:
            raise ValueError(f"GCE's q must be in (0, 1], not {q!r}")
        self.q = float(q)

    def value_and_grad(
        self, z: NDArray[np.floating], y: NDArray[np.floating], out: NDArray[np.floating]
    ) -> NDArray[np.floating]:
        b, q = z.shape[1], self.q
        log_p_label = _log_p_label(z, y, out)
        # (1 - p_y^q) / q = -expm1(q log p_y) / q: no cancellation as q -> 0, where it tends to -log p_y.
        values = -_per_model_sum(np.expm1(q * log_p_label)) / (q * b)
        out *= np.exp(q * log_p_label) * (1.0 / b)
        return values


LOSSES: dict[str, Any] = {
    loss.name: loss
    for loss in (CrossEntropy(), MSEProbabilities(), MSELogits(), MAEProbabilities(), GeneralizedCrossEntropy())
}
"""The built-in losses by name; ``gce`` at the default q (training builds its own at the config's
``gce_q``: ``methods.resolve_loss``)."""

YARDSTICKS = ("cross_entropy", "mse", "mse_logits", "mae")
"""The losses every run is scored under: the built-ins without a parameter (GCE's value depends on q)."""

SATURATION = 0.99
"""A row whose largest softmax probability exceeds this is 'saturated': the softmax Jacobian there is
near zero, so MSE on probabilities barely moves it even when the prediction is wrong."""


def accuracy(z: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    return float(np.count_nonzero(z.argmax(axis=1) == labels) / len(labels))


def evaluate(
    z: NDArray[np.floating], labels: NDArray[np.integer], own: tuple[str, Any] | None = None
) -> dict[str, float]:
    """Score logits under every yardstick loss, plus accuracy and the share of saturated softmax rows.

    ``own`` is a run's training loss as (key, loss object): scored too, under ``key``, unless it is a
    yardstick already (``gce`` at the run's q, a user's loss through its ``value_and_grad``).
    """
    n = z.shape[0]
    rows = np.arange(n)
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    total = p.sum(axis=1, keepdims=True)
    p /= total
    saturated = np.count_nonzero(p.max(axis=1) > SATURATION)
    log_p_label = shifted[rows, labels] - np.log(total[:, 0])
    cross_entropy = float(np.log(total).sum() - shifted[rows, labels].sum()) / n
    p[rows, labels] -= 1.0  # p - onehot
    diff_z = z.copy()
    diff_z[rows, labels] -= 1.0
    scores = {
        "cross_entropy": cross_entropy,
        "mse": 0.5 * float(np.vdot(p, p)) / n,
        "mse_logits": 0.5 * float(np.vdot(diff_z, diff_z)) / n,
        "mae": -2.0 * float(np.expm1(log_p_label).sum()) / n,
        "accuracy": accuracy(z, labels),
        "saturated_share": saturated / n,
    }
    if own is not None and own[0] not in scores:
        onehot = np.zeros((1, *z.shape), dtype=z.dtype)
        onehot[0, rows, labels] = 1.0
        scores[own[0]] = float(own[1].value_and_grad(z[None].copy(), onehot, np.empty_like(onehot))[0])
    return scores
