"""Optuna's trials held against MLflow's runs: every case a kill, a full disk or a lost store leaves."""

import pytest

from harness.studies.parse import parse_study
from harness.sweep.reconcile import decide

STUDY = parse_study(
    {
        "name": "s",
        "fixed": {"dataset": "iris"},
        "conditions": {"loss": ["mse"]},
        "search": {"lr": {"low": 0.01, "high": 1.0}},
        "budget": {"trials": 2},
        "confirm": {"seeds": 2},
    },
    "s.toml",
)
SEARCH, CONFIRM = "s/mse", "s/mse/confirm-after-2-trials"
NOW = 1_000_000.0


def trial(number, state, phase="search", completed=NOW - 100, seed=None, gone=True, **attrs):
    return {
        "condition": "mse",
        "phase": phase,
        "optuna_study": SEARCH if phase == "search" else CONFIRM,
        "number": number,
        "optuna_state": "COMPLETE",
        "value": 0.9,
        "params": {"lr": 0.1},
        "seed": seed,
        "attrs": attrs,
        "state": state,
        "retry_of": None,
        "worker_gone": gone,
        "completed_at": completed,
    }


def run(number, status, state, phase="search", study=None, run_id=None, **tags):
    return {
        "run_id": run_id or f"{phase}-{number}-{status}",
        "status": status,
        "run_name": "r",
        "tags": {
            "harness.kind": phase,
            "harness.optuna_study": study or (SEARCH if phase == "search" else CONFIRM),
            "harness.optuna_trial": str(number),
            "harness.state": state,
            **tags,
        },
        "params": {},
        "metrics": {},
    }


def test_agreeing_records_need_nothing():
    trials = [trial(0, "complete"), trial(1, "pruned"), trial(0, "complete", "confirm", seed=1, best_search_trial=0)]
    runs = [run(0, "FINISHED", "complete"), run(1, "FINISHED", "pruned"), run(0, "FINISHED", "complete", "confirm")]
    actions = decide(STUDY, trials, runs, NOW)
    assert not actions and actions.waiting == 0


def test_a_dead_workers_run_ends_killed_and_its_retry_is_left_alone():
    actions = decide(
        STUDY,
        [trial(0, "killed"), trial(1, "running")],
        [run(0, "RUNNING", "running"), run(1, "RUNNING", "running")],
        NOW,
    )
    assert actions.end == [("search-0-RUNNING", "FAILED", {"harness.state": "killed"})] and not actions.rerun


def test_a_run_holding_its_results_whose_end_was_lost_is_recovered():
    actions = decide(STUDY, [trial(0, "complete")], [run(0, "RUNNING", "complete")], NOW)
    assert actions.end == [("search-0-RUNNING", "FINISHED", {"harness.recovered": "true"})] and not actions.rerun


def test_a_told_trial_whose_run_holds_nothing_is_orphaned_and_trained_again():
    actions = decide(STUDY, [trial(0, "complete")], [run(0, "RUNNING", "running")], NOW)
    assert actions.end == [("search-0-RUNNING", "FAILED", {"harness.state": "orphaned"})]
    assert [t["number"] for t in actions.rerun] == [0]


def test_a_live_workers_recorder_gets_time_to_finish():
    just_now = trial(0, "complete", completed=NOW - 1, gone=False)
    actions = decide(STUDY, [just_now], [run(0, "RUNNING", "running")], NOW)
    assert not actions and actions.waiting == 1
    assert decide(STUDY, [just_now], [run(0, "RUNNING", "running")], NOW + 60).end  # ... not for ever


def test_a_finished_trial_without_any_run_is_trained_again_and_confirmations_take_their_best_settings():
    trials = [
        trial(0, "complete"),
        trial(1, "diverged"),
        trial(0, "complete", "confirm", seed=1, best_search_trial=0),
        trial(1, "complete", "confirm", seed=2, best_search_trial=0),
    ]
    actions = decide(STUDY, trials, [run(1, "FINISHED", "diverged")], NOW)
    assert [(t["phase"], t["number"]) for t in actions.rerun] == [("search", 0), ("confirm", 0), ("confirm", 1)]
    assert actions.rerun[1]["best_params"] == {"lr": 0.1}


@pytest.mark.parametrize("state", ["killed", "failed", "unrecorded", "interrupted"])
def test_a_run_that_ended_without_results_is_not_a_result(state):
    actions = decide(STUDY, [trial(0, "complete")], [run(0, "FAILED", state)], NOW)
    assert [t["number"] for t in actions.rerun] == [0]


def test_an_unwanted_seed_or_a_skipped_trial_is_not_trained_again():
    trials = [
        trial(0, "complete", "confirm", seed=9, best_search_trial=0),
        trial(1, "skipped", "confirm", seed=1),
        trial(0, "complete"),
    ]
    actions = decide(STUDY, trials, [run(0, "FINISHED", "complete")], NOW)
    assert not actions.rerun


def test_confirmations_of_another_budget_are_marked_superseded_and_back():
    old = run(0, "FINISHED", "complete", "confirm", study="s/mse/confirm-after-1-trials", run_id="old")
    back = run(0, "FINISHED", "complete", "confirm", run_id="back", **{"harness.superseded": "true"})
    actions = decide(STUDY, [], [old, back], NOW)
    assert sorted(actions.tag) == [("back", {"harness.superseded": "false"}), ("old", {"harness.superseded": "true"})]


def test_a_finished_run_whose_trial_optuna_failed_does_not_count():
    """A torn journal lost the trial's end: Optuna failed and re-queued it; its old run must not count twice."""
    actions = decide(STUDY, [trial(0, "killed")], [run(0, "FINISHED", "complete")], NOW)
    assert actions.end == [("search-0-FINISHED", "FAILED", {"harness.state": "killed"})]
