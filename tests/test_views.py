"""The study's saved view of the MLflow UI's runs table: the format the UI itself writes, and columns
that name what the parents carry."""

import base64
import json
import zlib

from harness.records.parents import summary_metrics
from harness.records.views import VIEW_TAG, experiment_defaults, read_view, result_columns, results_view
from harness.studies.parse import parse_study

# Written by MLflow 3.17.2's UI itself ("Views" > "Save as new view" after ticking test_accuracy_mean).
SAVED_BY_THE_UI = (
    '{"name":"harness results","createdAt":1796522908374,"updatedAt":1796522908374,"state":"deflate;eJxdUl1PAjEQ'
    "/Cumz8TgK28HihJBE/ArMeao7cJt0mtJd6uchP/u9k4BfezMzu7sbHeKQEdTjdExRDVQqqdCtBCHzS008tbMEd8TA50T68glYw3HooK"
    "MGqy0I+ipln/I9EAV06kUOVyBaYyDQ/vCMH5kvdWsCZh+mde3nqqDBfcEkTD4o8K5s3nyJBoCB4bBjoJLtSCD11N7y0VI0cBSCk/RWW"
    "5K/9HLbnyGaxDYCCYEl9qYFLVpyhq0XypxZdpp93nfzmYHPKPlSjzs9j0Vxd8NWgs+TxPT48l88VBe9Mv5491CZnwgfM70Fmv8AnsIT"
    "GRTJO6UBxSpMEbilRDm0MZ8IkkE1zGkDdgn7RLQxI8qSV18cEzCV2jhqt5w8xdeZ81Q7umTcz9PutputLe5ed5h7cK7dlP00EpHwa9w"
    'LZTaFluk7jMQw6Y9q4dFHQJXHkhm9I+necnFszbRTqL2+2+koNrH"}'
)

STUDY = {
    "name": "s",
    "fixed": {"dataset": "iris", "hidden": [8]},
    "conditions": {"loss": ["mse", "cross_entropy"], "optimizer": {"sgd": {"optimizer": "sgd", "momentum": 0.9}}},
    "search": {"lr": {"low": 0.01, "high": 1.0, "log": True}, "epochs": {"low": 3, "high": 8}},
}


def test_the_view_reads_as_the_ui_writes_it():
    """The tag holds JSON around zlib-compressed, base64 state; ``read_view`` is checked on a value the
    UI wrote, so a format of our own would fail here."""
    ui_state = read_view(SAVED_BY_THE_UI)
    assert "metrics.`test_accuracy_mean`" in ui_state["selectedColumns"]
    ours = json.loads(results_view(parse_study(STUDY, "s.toml"), now_ms=1))
    assert set(ours) == set(json.loads(SAVED_BY_THE_UI)) and ours["createdAt"] == 1
    packed = ours["state"].removeprefix("deflate;")
    state = json.loads(zlib.decompress(base64.b64decode(packed)))  # as the UI unpacks it
    ours_only = ("selectedColumns", "columnOrder", "columnWidths")
    assert set(state) <= set(ui_state)
    assert {k: v for k, v in state.items() if k not in ours_only} == {
        k: v for k, v in ui_state.items() if k in state and k not in ours_only
    }


def test_the_columns_are_the_results_then_the_settings():
    study = parse_study(STUDY, "s.toml")
    columns = result_columns(study)
    assert columns[0] == "metrics.`test_accuracy_mean`"  # first: the UI shows it with its side panel open
    assert read_view(experiment_defaults(study)[VIEW_TAG])["selectedColumns"] == columns
    state = read_view(experiment_defaults(study)[VIEW_TAG])
    assert state["columnOrder"] == columns
    assert set(state["columnWidths"]) == set(columns)  # each header whole: the UI's default cut them short
    assert state["columnWidths"]["metrics.`test_accuracy_mean`"] >= 8 * len("test_accuracy_mean")
    params = [c[len("params.`") : -1] for c in columns if c.startswith("params.")]
    assert params == ["loss", "optimizer", "momentum", "best.lr", "best.epochs"]
    row = {
        "target_reached": "2/3",
        "test_accuracy_mean": 0.9,
        "test_accuracy_ci_low": 0.8,
        "test_accuracy_ci_high": 0.95,
        "best_val_accuracy": 0.9,
        "epochs_to_target_median": 4.0,
        "pruned_share": 0.0,
        "diverged_share": 0.0,
        "trials": 4,
        "seeds": 3,
    }
    written = summary_metrics(study, row)  # what a parent carries
    metrics = [c[len("metrics.`") : -1] for c in columns if c.startswith("metrics.")]
    assert set(metrics) <= set(written), set(metrics) - set(written)
