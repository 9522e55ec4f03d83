"""A run's probability quality as records: the figures as metrics, the test reliability diagram as a tag,
and every row's logits and label as an artifact, so that anyone can recompute each figure
(``engine.calibration`` says how) from the run alone."""

import io
import json

import numpy as np

from ..engine.calibration import BINS, assess, probabilities

PROBABILITIES_ARTIFACT = "probabilities.npz"
"""``val_logits``, ``val_labels``, ``test_logits``, ``test_labels`` (rows in the split's order, logits as
float64), ``test_probabilities`` (their softmax), ``classes`` and ``temperature``; loads without pickle."""
RELIABILITY_TAG = "harness.reliability"
RELIABILITY_COLUMN = "reliability"
"""The tag, and its column in the records table. The tag:
JSON {"bins": 15, "before": [[mean confidence, accuracy, rows], ...], "after": [...]}: the test split's
equal-mass bins before and after temperature scaling; what a condition's mean diagram is drawn from."""


def quality_records(result, split, bins=BINS):
    """(tags, artifacts) of a trained run's probabilities on validation and test; its figures are the run's
    final metrics already (``TrainResult.quality``, assessed again here only for a result without one)."""
    network = result.network
    val_logits = np.asarray(network.logits(split.x_val), dtype=np.float64)
    test_logits = np.asarray(network.logits(split.x_test), dtype=np.float64)
    found = result.quality or assess(val_logits, split.y_val, test_logits, split.y_test, bins)
    rounded = {
        "bins": found.bins,
        "before": [[round(c, 6), round(a, 6), n] for c, a, n in found.test_reliability],
        "after": [[round(c, 6), round(a, 6), n] for c, a, n in found.test_reliability_scaled],
    }
    buffer = io.BytesIO()
    np.savez(
        buffer,
        val_logits=val_logits,
        val_labels=split.y_val,
        test_logits=test_logits,
        test_labels=split.y_test,
        test_probabilities=probabilities(test_logits),
        classes=np.array(split.classes, dtype=str),
        temperature=np.float64(found.temperature),
    )
    tags = {RELIABILITY_TAG: json.dumps(rounded, separators=(",", ":"))}
    return tags, {PROBABILITIES_ARTIFACT: buffer.getvalue()}


def read_reliability(text):
    """A recorded diagram as {"bins", "before", "after"}; None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        found = json.loads(text)
        parts = [np.asarray(found[k], dtype=float).reshape(-1, 3) for k in ("before", "after")]
        return {"bins": int(found["bins"]), "before": parts[0], "after": parts[1]}
    except (ValueError, KeyError, TypeError):
        return None
