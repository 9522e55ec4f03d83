"""A training result in Optuna's terms: a search trial's or a confirmation seed's outcome, which
members can train as one stack, and how a re-run differs from its first run (pure functions).
"""

import math

from ..engine.training import COMPLETE, DIVERGED, STOPPED, epochs_to_target, stack_key

STATES = {COMPLETE: "complete", STOPPED: "pruned", DIVERGED: "diverged"}


def search_outcome(result, objective, direction):
    """(state, value, attrs) of a search trial: its objective's last value when it completed, else the
    worst possible value; a pruned trial's value is what Optuna's pruner saw."""
    state = STATES[result.status]
    worst = -math.inf if direction == "maximize" else math.inf
    value = result.history[objective][-1] if state == "complete" else worst
    attrs = {"epochs_run": result.epochs_run}
    if state == "pruned":
        attrs["pruned_epoch"] = result.epochs_run
    if state == "diverged":
        attrs["diverged_epoch"] = result.diverged_epoch
    return state, value, attrs


def confirm_outcome(result, seed, best_number, objective, target):
    """(state, value, attrs) of a confirmation seed: its test accuracy, and what the summary needs."""
    attrs = {
        "seed": seed,
        "best_search_trial": best_number,
        "epochs_run": result.epochs_run,
        "epochs_to_target": epochs_to_target(result.history, target),
    }
    attrs.update({k: v for k, v in result.final.items() if k.startswith("test_")})
    if result.history.get(objective):
        attrs["val_objective"] = result.history[objective][-1]
    return STATES[result.status], result.final.get("test_accuracy", -math.inf), attrs


def stackable(members):
    """Members grouped so that each group can train as one stack (searched batch sizes split them, and a
    custom loss's searched settings)."""
    groups = {}
    for member in members:
        groups.setdefault(repr(stack_key(member.config)), []).append(member)
    return list(groups.values())


def rerun_difference(told, outcome):
    """How a re-run's outcome differs from what Optuna was told the first time ('' when it does not).
    A pruned trial's Optuna value is its last report, not an outcome: its state and length are compared."""
    state, value, attrs = outcome
    if state != told["state"]:
        return f"state {told['state']} -> {state}"
    if attrs.get("epochs_run") != told["attrs"].get("epochs_run"):
        return f"epochs_run {told['attrs'].get('epochs_run')} -> {attrs.get('epochs_run')}"
    if state != "pruned" and not (value == told["value"] or (math.isinf(value) and told["value"] == value)):
        return f"value {told['value']!r} -> {value!r}"
    return ""
