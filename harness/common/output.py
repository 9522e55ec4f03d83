"""Machine-readable output: exactly one JSON document on stdout that any strict parser accepts."""

import json
import math
import sys


def plain(value):
    """``value`` with NaN and infinities as null (JSON has neither) and numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def emit_json(value, stream=None):
    print(json.dumps(plain(value), allow_nan=False), file=stream or sys.stdout)
