"""How far a network's class probabilities can be taken at face value, before and after temperature scaling.

Accuracy says how often the top class is right; these say whether "75%" is right 75% of the time (Guo et
al. 2017, "On Calibration of Modern Neural Networks"). On logits z of n rows with labels y, p = softmax(z):

- negative log-likelihood: mean -log p[y] (the ``cross_entropy`` yardstick);
- Brier score: mean sum_k (p_k - [y = k])^2 (twice the ``mse`` yardstick);
- top-label ECE: rows sorted by their top probability (stable sort), cut into ``BINS`` parts whose sizes
  differ by at most one (as ``numpy.array_split``: equal mass, not equal width), then sum over parts of
  (rows in part / n) * |accuracy in part - mean top probability in part|;
- class-wise ECE (Kull et al. 2019): for each class k the same over p_k and the indicator [y = k], averaged
  over the classes;
- mean confidence: the mean top probability, to set beside the accuracy (above it: overconfident).

Temperature scaling divides the logits by one T > 0 fitted on validation (the T minimising the validation
NLL, searched over log T in [log 0.01, log 100]); it never changes the predicted class, so accuracy stays.
The ``ts_`` figures are the same measures on softmax(z / T). On validation they are in-sample (T was fitted
there); the test figures are the honest ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

BINS = 15
"""Equal-mass bins of the ECEs and the reliability diagram (Guo et al. use 15, of equal width)."""
TEMPERATURE_RANGE = (0.01, 100.0)
FIGURES = ("cross_entropy", "brier", "ece", "classwise_ece", "confidence")
"""Per split, before (``test_ece``) and after temperature scaling (``test_ts_ece``)."""


def probabilities(logits: NDArray[np.floating], temperature: float = 1.0) -> NDArray[np.float64]:
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(
    logits: NDArray[np.floating], labels: NDArray[np.integer], temperature: float = 1.0
) -> float:
    """Through a stable log-softmax: finite where p[y] underflows to 0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    shifted = z - z.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_total - shifted[np.arange(len(labels)), labels]))


def brier(p: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    diff = p.copy()
    diff[np.arange(len(labels)), labels] -= 1.0
    return float(np.mean(np.sum(diff * diff, axis=1)))


def bin_starts(n: int, bins: int = BINS) -> NDArray[np.intp]:
    """First row of each of min(bins, n) near-equal parts of n sorted rows (``numpy.array_split``'s sizes)."""
    parts = min(bins, n)
    sizes = np.full(parts, n // parts) + (np.arange(parts) < n % parts)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)


def _bin_sums(scores: NDArray[np.floating], hits: NDArray[np.floating], bins: int):
    """Per column: (sum of scores, sum of hits, rows) in each equal-mass bin of that column's sorted scores."""
    order = np.argsort(scores, axis=0, kind="stable")
    starts = bin_starts(len(scores), bins)
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    sorted_hits = np.take_along_axis(hits, order, axis=0)
    rows = np.diff(np.append(starts, len(scores)))
    return np.add.reduceat(sorted_scores, starts, axis=0), np.add.reduceat(sorted_hits, starts, axis=0), rows


def reliability(
    p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS
) -> list[tuple[float, float, int]]:
    """(mean top probability, accuracy, rows) per equal-mass bin of the top probability: the diagram's points."""
    confidence = p.max(axis=1)[:, None]
    correct = (p.argmax(axis=1) == labels).astype(np.float64)[:, None]
    scores, hits, rows = _bin_sums(confidence, correct, bins)
    return [(float(c / r), float(a / r), int(r)) for c, a, r in zip(scores[:, 0], hits[:, 0], rows)]


def expected_calibration_error(p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS) -> float:
    n = len(labels)
    parts = reliability(p, labels, bins)
    return float(sum(rows / n * abs(accuracy - confidence) for confidence, accuracy, rows in parts))


def classwise_ece(p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS) -> float:
    """Mean over classes k of sum over bins of |rows with y = k - sum of p_k| / n (= share x |freq - mean p_k|)."""
    n, classes = p.shape
    onehot = np.zeros_like(p, dtype=np.float64)
    onehot[np.arange(n), labels] = 1.0
    scores, hits, _ = _bin_sums(np.asarray(p, dtype=np.float64), onehot, bins)
    return float(np.abs(hits - scores).sum() / n / classes)


def fit_temperature(logits: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), bounded to ``TEMPERATURE_RANGE``."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(math.exp(found.x))


def figures(logits: NDArray[np.floating], labels: NDArray[np.integer], temperature: float = 1.0, bins: int = BINS):
    """{figure: value} of ``FIGURES`` for softmax(logits / temperature)."""
    p = probabilities(logits, temperature)
    return {
        "cross_entropy": negative_log_likelihood(logits, labels, temperature),
        "brier": brier(p, labels),
        "ece": expected_calibration_error(p, labels, bins),
        "classwise_ece": classwise_ece(p, labels, bins),
        "confidence": float(p.max(axis=1).mean()),
    }


@dataclass
class Quality:
    """A run's probability quality: its metrics (``test_ece``, ``test_ts_ece``, ``temperature``, ...) and the
    test split's reliability diagram before and after scaling."""

    metrics: dict[str, float]
    temperature: float
    bins: int
    test_reliability: list = field(default_factory=list)
    test_reliability_scaled: list = field(default_factory=list)


def assess(
    val_logits: NDArray[np.floating],
    val_labels: NDArray[np.integer],
    test_logits: NDArray[np.floating],
    test_labels: NDArray[np.integer],
    bins: int = BINS,
) -> Quality:
    """Every figure on validation and test, before and after the temperature fitted on validation."""
    temperature = fit_temperature(val_logits, val_labels)
    metrics = {"temperature": temperature}
    for split, logits, labels in (("val", val_logits, val_labels), ("test", test_logits, test_labels)):
        before = figures(logits, labels, 1.0, bins)
        del before["cross_entropy"]  # the run's ``cross_entropy`` yardstick already is this NLL
        metrics.update({f"{split}_{k}": v for k, v in before.items()})
        metrics.update({f"{split}_ts_{k}": v for k, v in figures(logits, labels, temperature, bins).items()})
    return Quality(
        metrics,
        temperature,
        bins,
        reliability(probabilities(test_logits), test_labels, bins),
        reliability(probabilities(test_logits, temperature), test_labels, bins),
    )
