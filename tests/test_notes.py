"""Descriptions written for MLflow's UI (Markdown) read as written: no value of the harness's becomes a link,
emphasis, a list or HTML."""

import html
import re

import pandas as pd

from harness.records.notes import escape
from harness.records.parents import describe, model_note
from harness.studies.parse import parse_study

SPECIAL = re.compile(r"(?<!\\)[\[\]()*_`<#|~]")
"""A markup character not escaped (a backslash escapes the character after it)."""

STUDY = parse_study(
    {
        "name": "s_1",
        "fixed": {"dataset": "iris"},
        "conditions": {"loss": ["mse", "cross_entropy"]},
        "search": {"lr": {"low": 0.001, "high": 10.0, "log": True}},
        "budget": {"trials": 6},
        "confirm": {"seeds": 2},
    },
    "s.toml",
)


def unescape(text):
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def test_escaped_text_holds_no_markup_and_reads_as_written():
    text = "lr in [0.001, 10] (log)\n- a *list* _item_ <b>x</b> & `code` # | ~ {} !\n1. numbered\n=== rule"
    escaped = escape(text)
    assert unescape(escaped) == text
    assert not SPECIAL.search(escaped.replace("\\\\", "")), escaped
    assert all(not re.match(r"\s*([-=+]|\d+\.)", line) for line in escaped.splitlines()), escaped


def test_the_parents_description_keeps_the_search_range_and_its_log_scale():
    row = {
        "condition": "loss=mse",
        "trials": 6,
        "seeds": 2,
        "best_lr": 0.05,
        "test_accuracy_mean": 0.9,
        "test_accuracy_ci_low": float("nan"),
        "test_accuracy_ci_high": float("nan"),
    }
    note = describe(STUDY, STUDY.conditions[0], pd.Series(row))
    assert r"lr in \[0.001, 10\] \(log\)" in note  # was a Markdown link: "(log)" did not show
    assert note.startswith("**") and not SPECIAL.search(note.replace("**", "", 2).replace("\\\\", ""))
    assert "study s_1:" in unescape(note) and r"s\_1" in note


def test_the_note_of_a_seed_without_a_model_escapes_its_words_but_keeps_its_commands():
    note = model_note("a" * 32, "b" * 32)["mlflow.note.content"]
    assert f"`harness predict {'a' * 32} ROWS.csv`" in note and r"confirm.models = \"first\"" not in note
    assert not SPECIAL.search(re.sub(r"`[^`]*`", "", note).replace("\\\\", ""))
