"""Which runs are the study's result: the standing budget's confirmation, the current search's runs."""

import dataclasses

from harness.records.table import belongs, current, records_frame, standing_budget
from harness.studies.parse import parse_study
from harness.studies.study import LEGACY_SEARCH

STUDY = parse_study(
    {
        "name": "s",
        "fixed": {"dataset": "iris"},
        "conditions": {"loss": ["mse", "cross_entropy"]},
        "search": {"lr": {"low": 0.01, "high": 1.0}},
        "budget": {"trials": 6},
        "confirm": {"seeds": 2},
    },
    "s.toml",
)


def settled(budget, conditions=("mse", "cross_entropy"), seeds=(1, 2)):
    return [(f"s/{c}/confirm-after-{budget}-trials", seed) for c in conditions for seed in seeds]


def test_the_study_budget_stands_once_every_condition_settled_its_seeds():
    assert standing_budget(STUDY, settled(4) + settled(6)) == 6


def test_an_unfinished_extension_does_not_hide_the_result_it_extends():
    assert standing_budget(STUDY, settled(4) + settled(6, conditions=("mse",))) == 4
    assert standing_budget(STUDY, settled(4) + settled(6, seeds=(1,))) == 4


def test_a_larger_budget_than_the_study_asks_is_never_read_as_its_result():
    assert standing_budget(STUDY, settled(6) + settled(8)) == 6


def test_nothing_settled_stands_at_the_study_budget():
    assert standing_budget(STUDY, []) == 6
    assert standing_budget(STUDY, settled(4, seeds=(1,))) == 6


def run(run_id, kind, study_name, search_id=None, condition="mse", **tags):
    return {
        "run_id": run_id,
        "run_name": run_id,
        "status": "FINISHED",
        "start_time": 0,
        "tags": {
            "harness.kind": kind,
            "condition": condition,
            "optuna_study": study_name,
            "state": "complete",
            **({"search_id": search_id} if search_id else {}),
            **tags,
        },
        "params": {},
        "metrics": {},
    }


def test_runs_of_another_search_of_the_same_name_never_count():
    study = dataclasses.replace(STUDY, search_ids={"mse": "new", "cross_entropy": "new"})
    runs = [
        run("old", "search", "s/mse", "gone", trial="0"),
        run("untagged", "search", "s/mse", trial="1"),
        run("mine", "search", "s/mse", "new", trial="0"),
    ]
    search, _ = current(study, records_frame(runs))
    assert list(search["run_id"]) == ["mine"]


def test_a_search_begun_before_runs_had_ids_keeps_its_untagged_runs():
    assert belongs(dataclasses.replace(STUDY, search_ids={"mse": LEGACY_SEARCH}), "mse", None)
    assert not belongs(dataclasses.replace(STUDY, search_ids={"mse": LEGACY_SEARCH}), "mse", "abc")
    assert belongs(STUDY, "mse", "anything")  # a study recorded before searches had ids: all count


def test_runs_recorded_with_the_old_tag_names_read_as_todays():
    """Stores made before every tag of the harness's had the ``harness.`` prefix stay readable."""
    from harness.records.tags import OLD_NAMES, current_names

    old = {"harness.kind": "confirm", "state": "complete", "condition": "mse", "trial": "4", "best_search_trial": "3"}
    old.update(
        {"optuna_study": "s/mse/confirm-after-6-trials", "classes": "3", "test_rows": "30", "version.numpy": "2"}
    )
    new = current_names(old)
    assert new["harness.state"] == "complete" and new["harness.optuna_trial"] == "4" and "state" not in new
    assert new["harness.version.numpy"] == "2" and set(OLD_NAMES.values()) >= {"harness.condition", "harness.state"}
    assert current_names({"state": "running", "harness.state": "complete"}) == {"harness.state": "complete"}
    run = {
        "run_id": "r",
        "run_name": "n",
        "status": "FINISHED",
        "start_time": 1,
        "params": {"seed": "1"},
        "metrics": {},
    }
    rows = [records_frame([{**run, "tags": tags}]).iloc[0].to_dict() for tags in (old, new)]
    assert str(rows[0]) == str(rows[1]) and rows[0]["trial"] == 4 and rows[0]["best_search_trial"] == 3
    assert rows[0]["classes"] == 3 and rows[0]["state"] == "complete" and rows[0]["condition"] == "mse"
