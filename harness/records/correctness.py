"""Which test rows a confirmation run classified correctly, as one tag: with a fixed split every seed is
scored on the same rows, so comparing two conditions needs their row-by-row agreement (the test rows'
paired sampling term of ``analysis.stats.contrast_test``), not only their accuracies."""

import base64
import binascii

import numpy as np
import numpy.typing as npt

CORRECT_TAG = "harness.test_correct"
CORRECT_COLUMN = "test_correct"
"""The tag, and its column in the records table. The tag: base64 of ``numpy.packbits`` of the per-row
correctness, rows in the test split's order."""

MAX_TAG_CHARS = 8000
"""MLflow's limit on a tag's value: a test split of up to 48,000 rows fits; a larger one records no tag
(its comparisons then bound the rows' term from the accuracies)."""


def correctness_tags(predicted: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, str]:
    correct = np.asarray(predicted) == np.asarray(labels)
    text = base64.b64encode(np.packbits(correct).tobytes()).decode()
    return {CORRECT_TAG: text} if len(text) <= MAX_TAG_CHARS else {}


def read_correctness(text: object, rows: object) -> np.ndarray | None:
    """The recorded per-row correctness as booleans; None when absent, malformed or not ``rows`` long."""
    if not isinstance(text, str) or not text or not isinstance(rows, int | np.integer) or rows < 1:
        return None
    try:
        packed = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        return None
    if len(packed) != (int(rows) + 7) // 8:
        return None
    return np.unpackbits(packed)[: int(rows)].astype(bool)
