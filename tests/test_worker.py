"""A training result in Optuna's terms, without any storage: the worker's pure steps."""

import math

from harness.engine.training import COMPLETE, DIVERGED, STOPPED, TrainResult
from harness.sweep.outcomes import confirm_outcome, rerun_difference, search_outcome, stackable
from harness.sweep.worker import Member


def result(status, epochs, accuracy=0.9, **final):
    history = {
        "val_accuracy": [accuracy * (e + 1) / epochs for e in range(epochs)],
        "val_cross_entropy": [1.0 / (e + 1) for e in range(epochs)],
    }
    return TrainResult(status, epochs, history, diverged_epoch=epochs + 1 if status == DIVERGED else None, final=final)


def test_a_complete_search_trial_is_worth_its_last_objective_value():
    assert search_outcome(result(COMPLETE, 5), "val_accuracy", "maximize") == ("complete", 0.9, {"epochs_run": 5})
    state, value, _ = search_outcome(result(COMPLETE, 4), "val_cross_entropy", "minimize")
    assert (state, value) == ("complete", 0.25)


def test_pruned_and_diverged_trials_are_worth_the_worst_value_and_say_where_they_stopped():
    assert search_outcome(result(STOPPED, 3), "val_accuracy", "maximize") == (
        "pruned",
        -math.inf,
        {"epochs_run": 3, "pruned_epoch": 3},
    )
    assert search_outcome(result(DIVERGED, 2), "val_cross_entropy", "minimize") == (
        "diverged",
        math.inf,
        {"epochs_run": 2, "diverged_epoch": 3},
    )


def test_a_confirmation_is_worth_its_test_accuracy_and_knows_when_it_reached_the_target():
    state, value, attrs = confirm_outcome(
        result(COMPLETE, 5, test_accuracy=0.8, test_mse=0.1), 7, 3, "val_accuracy", 0.5
    )
    assert (state, value) == ("complete", 0.8)
    assert attrs == {
        "seed": 7,
        "best_search_trial": 3,
        "epochs_run": 5,
        "epochs_to_target": 3,
        "test_accuracy": 0.8,
        "test_mse": 0.1,
        "val_objective": 0.9,
    }
    assert confirm_outcome(result(COMPLETE, 5), 1, 0, "val_accuracy", 0.99)[2]["epochs_to_target"] is None
    assert confirm_outcome(result(DIVERGED, 0), 1, 0, "val_accuracy", 0.5)[:2] == ("diverged", -math.inf)


def test_a_rerun_is_judged_by_what_optuna_holds():
    told = {"state": "complete", "value": 0.9, "attrs": {"epochs_run": 5}}
    assert rerun_difference(told, ("complete", 0.9, {"epochs_run": 5})) == ""
    assert "value 0.9 -> 0.8" in rerun_difference(told, ("complete", 0.8, {"epochs_run": 5}))
    assert "state complete -> diverged" in rerun_difference(told, ("diverged", -math.inf, {"epochs_run": 2}))
    pruned = {"state": "pruned", "value": 0.42, "attrs": {"epochs_run": 3}}  # Optuna keeps its last report
    assert rerun_difference(pruned, ("pruned", -math.inf, {"epochs_run": 3})) == ""
    assert "epochs_run 3 -> 4" in rerun_difference(pruned, ("pruned", -math.inf, {"epochs_run": 4}))


def test_members_that_cannot_share_a_stack_are_split(config):
    members = [
        Member(None, config(lr=lr, batch_size=batch), "search", None) for lr, batch in ((0.1, 4), (0.2, 8), (0.3, 4))
    ]
    groups = stackable(members)
    assert [[m.config.lr for m in group] for group in groups] == [[0.1, 0.3], [0.2]]
