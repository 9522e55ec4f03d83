"""Descriptions in MLflow are Markdown (a run's ``mlflow.note.content``, an experiment's, a model's): the
harness's words go in escaped, so ``lr in [0.001, 10] (log)`` reads as written, not as a link that hides
"(log)"."""

import re

NOTE_TAG = "mlflow.note.content"
"""A run's or an experiment's description, as the UI shows it (Markdown)."""

_INLINE = re.compile(r"([\\`*_{}\[\]()#+!|~>])")
_LINE_START = re.compile(r"(?m)^(\s*)([-=])")
_NUMBERED = re.compile(r"(?m)^(\s*\d+)\.")


def escape(text):
    """``text`` as Markdown that renders as itself: inline markup characters backslash-escaped, HTML's
    ``&`` and ``<`` as entities, and a line that would start a list, a rule or a heading kept plain."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;")
    text = _INLINE.sub(r"\\\1", text)
    text = _LINE_START.sub(r"\1\\\2", text)
    return _NUMBERED.sub(r"\1\\.", text)
