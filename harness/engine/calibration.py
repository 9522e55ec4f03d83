"""How far a network's class probabilities can be taken at face value, before and after temperature scaling.

Accuracy says how often the top class is right; these say whether "75%" is right 75% of the time (Guo et
al. 2017, "On Calibration of Modern Neural Networks"). On logits z of n rows with labels y, p = softmax(z):

- negative log-likelihood: mean -log p[y] (the ``cross_entropy`` yardstick);
- Brier score: mean sum_k (p_k - [y = k])^2 (twice the ``mse`` yardstick);
- top-label ECE: rows sorted by their top probability (stable sort), cut into ``BINS`` parts whose sizes
  differ by at most one (``numpy.array_split``: equal mass, not equal width), then sum over parts of
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


def equal_mass_bins(scores: NDArray[np.floating], bins: int = BINS) -> list[NDArray[np.intp]]:
    """Row indices of each bin: sorted by score (stable), cut into min(bins, n) near-equal parts."""
    order = np.argsort(scores, kind="stable")
    return [part for part in np.array_split(order, min(bins, len(order))) if len(part)]


def reliability(
    p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS
) -> list[tuple[float, float, int]]:
    """(mean top probability, accuracy, rows) per equal-mass bin of the top probability: the diagram's points."""
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == labels
    return [(float(confidence[b].mean()), float(correct[b].mean()), len(b)) for b in equal_mass_bins(confidence, bins)]


def expected_calibration_error(p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS) -> float:
    n = len(labels)
    return float(
        sum(rows / n * abs(accuracy - confidence) for confidence, accuracy, rows in reliability(p, labels, bins))
    )


def classwise_ece(p: NDArray[np.floating], labels: NDArray[np.integer], bins: int = BINS) -> float:
    n, classes = p.shape
    total = 0.0
    for k in range(classes):
        is_k = labels == k
        for b in equal_mass_bins(p[:, k], bins):
            total += len(b) / n * abs(float(is_k[b].mean()) - float(p[b, k].mean()))
    return total / classes


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
