"""Pruning: the study's pruner, asked once per epoch for a whole stack of trials."""

from __future__ import annotations

import copy
import math
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.trial import FrozenTrial

    from ..studies.study import Study


TAKEN_AWAY = (optuna.exceptions.UpdateFinishedTrialError, ValueError)
"""Raised when a worker writes to a trial that another worker already failed as dead (its heartbeats
were late: a paused machine, a network cut). The trial runs again elsewhere; this worker lets it go."""


class StackPruning:
    """Pruning decisions for a stack of trials: one read of the study per epoch, not one per trial.

    ``Trial.should_prune`` reads the study's trials from the storage at every call; on PostgreSQL that
    cost 12 ms per call, 17 s of a 42 s quickstart. The trials of a stack decide at the same epoch
    against the same finished trials, so they share one read per epoch and ask the study's own
    pruner with it; each trial's value of this epoch is added from what it just reported.

    With ``among_stack`` (``[pruner] among_stack = true``), the median (percentile) rule also compares the
    members of the stack with each other. Optuna's pruner compares a trial only with *finished* trials,
    and nothing of a condition's first stack has finished while it trains: it trains all its members to
    the end. Given the epoch's values of the
    live members (``epoch_values``), each member's references are the finished trials (the stack's
    own members that finished an earlier epoch too, before Optuna is told) *and* the other members that
    trained this epoch, each worth its value at this epoch, as a finished trial is worth its value at
    this step: a member is pruned when its best value so far is worse than their median, once there
    are ``startup_trials`` references. All members decide against the same epoch's values, so the order
    they report in changes nothing, and a member left alone is never judged by itself. Hyperband keeps
    Optuna's own rule (its rungs are read from the storage).
    """

    _epoch: int | None
    _trials: dict[int, FrozenTrial]

    def __init__(self, optuna_study: optuna.Study, among_stack: bool = False) -> None:
        self.study, self._epoch, self._trials = optuna_study, None, {}
        self.taken_away: set[int] = set()  # numbers of trials another worker failed as dead meanwhile
        self.among_stack = among_stack and isinstance(optuna_study.pruner, optuna.pruners.PercentilePruner)
        self._peers_epoch: int | None = None
        self._peers: dict[int, FrozenTrial] = {}  # {trial number: the member at this epoch, as a reference}
        self._curves: dict[int, dict[int, float]] = {}  # {trial number: {epoch: value}} of the stack's members
        self._finished: list[tuple[int, FrozenTrial]] = []  # (epoch, member) of members that trained to the end

    def epoch_values(self, epoch: int, values: dict[int, float]) -> None:
        """The objective of every member that trained ``epoch`` ({trial number: value}; a member that
        diverged in it is not there: never a reference), before any of them decides."""
        if self.among_stack:
            self._peers_epoch = epoch
            self._peers = {number: _reference(epoch, value) for number, value in values.items()}

    def report(self, trial: optuna.Trial, epoch: int, value: float, decide: bool = True, last: bool = False) -> bool:
        """Report a trial's epoch (``last``: the last of its budget); True when it should stop (pruned, or
        no longer this worker's)."""
        try:
            trial.report(value, epoch)
        except TAKEN_AWAY:
            self.taken_away.add(trial.number)
            return True
        stop = decide and self.should_prune(trial, epoch, value)
        if self.among_stack:
            curve = self._curves.setdefault(trial.number, {})
            curve[epoch] = float(value)
            if last and not stop:  # a finished trial for the members still training, from the next epoch
                finished = optuna.trial.create_trial(
                    state=TrialState.COMPLETE, value=value, intermediate_values=dict(curve)
                )
                self._finished.append((epoch, finished))
        return stop

    def should_prune(self, trial: optuna.Trial, epoch: int, value: float) -> bool:
        if epoch != self._epoch:
            self._epoch = epoch
            self._trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        frozen = copy.copy(self._trials[trial.number])
        frozen.intermediate_values = {**frozen.intermediate_values, epoch: float(value)}
        references = [t for t in self._trials.values() if not diverged(t)]
        references += [finished for ended, finished in self._finished if ended < epoch]
        if epoch == self._peers_epoch:
            references += [peer for number, peer in self._peers.items() if number != trial.number]
        # _Snapshot stands in for the study
        return self.study.pruner.prune(_Snapshot(self.study, references), frozen)  # type: ignore[arg-type]


def diverged(trial: FrozenTrial) -> bool:
    """A finished trial whose value is not finite: a diverged run, told to Optuna as the worst value so
    the sampler learns from it. Its epochs before it diverged are no evidence of a good curve (one that
    exploded in epoch 5 had 0.967 at epoch 2, and the median rule then pruned every later trial of its
    condition at epoch 2, leaving it no result): like a trial Optuna fails for a NaN value, it is never
    a pruning reference."""
    return trial.state == TrialState.COMPLETE and (trial.value is None or not math.isfinite(trial.value))


def _reference(epoch: int, value: float) -> FrozenTrial:
    """A live member as the pruner sees a finished trial: its value at this epoch."""
    return optuna.trial.create_trial(state=TrialState.COMPLETE, value=value, intermediate_values={epoch: value})


class _Snapshot:
    """A study whose ``get_trials`` answers from one read; everything else is the study itself."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study, self._trials = study, trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self._trials if states is None or t.state in states]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def make_pruner(study: Study) -> BasePruner:
    if study.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=study.pruner_startup_trials, n_warmup_steps=study.pruner_warmup_epochs
        )
    if study.pruner == "hyperband":
        epochs = next((p for p in study.search if p.name == "epochs"), None)
        top = (max(epochs.choices) if epochs.choices else epochs.high) if epochs else study.fixed.get("epochs", 30)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=int(top), reduction_factor=3)
    return optuna.pruners.NopPruner()
