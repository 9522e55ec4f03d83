"""Output: exactly one JSON document on stdout that any strict parser accepts; whole lines on stderr."""

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


def say(line, stream=None):
    """One line on stderr in one write: ``print`` writes the text and its newline apart (stderr writes
    through), so two workers sharing the stream ran their lines together ("...300 sharness: ...")."""
    stream = stream or sys.stderr
    stream.write(f"{line}\n")
    stream.flush()


def add_quiet_flag(parser):
    """``-q/--quiet``: the same command without its progress and tables; errors and warnings still go to
    stderr, what ``--json`` (or ``--format``) asked for still goes to stdout, and the exit status is unchanged."""
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no tables (errors still on stderr; --json output and the exit status unchanged)",
    )
