"""One condition's Optuna studies as a worker sees them: the *search* study (``<study>/<condition>``),
whose trials tune the nuisance settings, and the *confirm* study
(``<study>/<condition>/confirm-after-<N>-trials``) with one queued trial per confirmation seed. The
budget is counted in the storage, so any number of workers share it exactly. A worker that dies
leaves its trials RUNNING; they are failed and queued again (Optuna's retry callback), so a copy
carries Optuna's ``failed_trial`` and ``retry_history`` system attributes.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from ..studies.study import CONFIRM_NAME
from .liveness import (
    HOST,
    Heartbeat,
    _earlier_self,
    _ownerless_stale,
    heartbeat_enabled,
    pid_alive,
    worker_token,
)
from .pruning import TAKEN_AWAY, make_pruner
from .storages import MAX_RETRIES

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from ..studies.study import Condition, SearchParam, Study


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


GIVEN_UP = ("failed", "interrupted", "unrecorded", "over_budget", "not_wanted")
"""States a worker gives a trial it fails on purpose (``finish``); any other failed trial was killed."""


def make_sampler(study: Study, seed_offset: int) -> BaseSampler:
    seed = (study.sampler_seed * 1_000_003 + seed_offset) % (2**31)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=study.sampler_seed, scramble=True)
    if study.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: p.choices for p in study.search}, seed=seed)
    # constant_liar: trials asked together (one stack, or parallel workers) do not pile onto one point
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def suggest(trial: optuna.Trial, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(param.name, param.choices)
    # a range parameter (no choices) has low and high
    if param.is_int:
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    return trial.suggest_float(param.name, float(param.low), float(param.high), log=param.log)  # type: ignore[arg-type]


class ConditionStudies:
    """The search and confirm studies of one condition, as one worker sees them."""

    def __init__(
        self,
        study: Study,
        condition: Condition,
        storage: BaseStorage,
        seed_offset: int = 0,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.study, self.condition, self.budget = study, condition, study.trials
        self.heartbeat = heartbeat or Heartbeat(storage)
        self.search = optuna.load_study(
            study_name=study.optuna_name(condition), storage=storage, pruner=make_pruner(study)
        )
        # Seeded per worker and per resume, so two workers (or a resumed sweep) never replay the
        # same sequence of random start points; one worker from scratch is reproducible.
        self.search.sampler = make_sampler(study, seed_offset + len(self.search.get_trials(deepcopy=False)))
        self.confirm = optuna.load_study(study_name=study.optuna_name(condition, "confirm"), storage=storage)
        self.seeds = set(study.confirm_seed_values())
        self.storage = storage

    # --- counting -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        trials = self.search.get_trials(deepcopy=False)
        states = [t.state for t in trials]
        diverged = sum(1 for t in trials if t.user_attrs.get("state") == "diverged")
        return {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "running": states.count(TrialState.RUNNING),
            "failed": states.count(TrialState.FAIL),
            "waiting": states.count(TrialState.WAITING),
            "diverged": diverged,
        }

    def search_remaining(self) -> int:
        c = self.counts()
        if self.timed_out():
            return 0
        return self.budget - c["complete"] - c["pruned"] - c["running"]

    def search_finished(self) -> bool:
        c = self.counts()
        return c["running"] == 0 and (
            c["complete"] + c["pruned"] >= self.budget or (self.timed_out() and c["complete"] + c["pruned"] > 0)
        )

    def timed_out(self) -> bool:
        if not self.study.timeout_seconds:
            return False
        starts = [t.datetime_start for t in self.search.get_trials(deepcopy=False) if t.datetime_start]
        return bool(starts) and (time.time() - min(starts).timestamp()) > self.study.timeout_seconds

    def confirm_waiting(self) -> int:
        """Queued confirmation seeds this sweep wants (a smaller ``--confirm-seeds`` skips the others)."""
        return sum(
            1
            for t in self.confirm.get_trials(deepcopy=False)
            if t.state == TrialState.WAITING and seed_of(t) in self.seeds
        )

    def confirm_finished(self) -> bool:
        """Every wanted seed confirmed (or given up on after a training error), none still running."""
        done, running = set(), False
        for t in self.confirm.get_trials(deepcopy=False):
            seed = seed_of(t)
            if seed not in self.seeds:
                continue
            if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and trial_state(t) == "failed"):
                done.add(seed)
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                running = True
        return not running and done >= self.seeds

    def earlier_confirmations(self, best_number: int) -> dict[int, tuple[str, FrozenTrial]]:
        """{seed: (confirm study, trial)} of this search's confirmations at a smaller budget that retrained
        search trial ``best_number`` and hold a result: a budget extended without changing the best needs
        no new training (``Worker.reuse_confirmations``)."""
        found: dict[int, tuple[str, FrozenTrial]] = {}
        search = self.study.optuna_name(self.condition)
        for name in sorted(optuna.get_all_study_names(self.storage)):
            match = CONFIRM_NAME.fullmatch(name)
            if not match or match["search"] != search or int(match["budget"]) >= self.budget:
                continue
            for t in optuna.load_study(study_name=name, storage=self.storage).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,)
            ):
                attrs = t.user_attrs
                seed = seed_of(t)
                same = attrs.get("best_search_trial") == best_number and attrs.get("state") in ("complete", "diverged")
                if same and attrs.get("mlflow_run_id") and seed is not None:
                    found.setdefault(seed, (name, t))
        return found

    def best_trial(self) -> FrozenTrial | None:
        """The best finished search trial with a finite value, or None (all diverged or failed)."""
        trials = [
            t
            for t in self.search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)
        ]
        if not trials:
            return None
        pick = max if self.study.direction == "maximize" else min
        # values are not None (filtered above)
        return pick(trials, key=lambda t: t.value)  # type: ignore[arg-type, return-value]

    def repeated_failure(self, invocation: str) -> tuple[int, str | None]:
        """(count, error) of the most frequent training error of this command's trials of the condition."""
        errors: dict[str, int] = {}
        for optuna_study in (self.search, self.confirm):
            for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
                if t.user_attrs.get("state") == "failed" and t.user_attrs.get("invocation") == invocation:
                    error = t.user_attrs.get("error", "")
                    errors[error] = errors.get(error, 0) + 1
        if not errors:
            return 0, None
        error = max(errors, key=errors.get)  # type: ignore[arg-type]  # every key is in errors
        return errors[error], error

    # --- trials ---------------------------------------------------------------------------------
    def ask_search(self) -> tuple[optuna.Trial, dict[str, Any]] | tuple[None, None]:
        """A new search trial with its settings, or None if another worker took the last slot."""
        trial = self.search.ask()
        self._claim(trial)
        ahead = [
            t
            for t in self.search.get_trials(deepcopy=False)
            if t.state in FINISHED or (t.state == TrialState.RUNNING and t.number < trial.number)
        ]
        if len(ahead) >= self.budget:
            trial.set_user_attr("state", "over_budget")
            self.search.tell(trial, state=TrialState.FAIL)
            self.heartbeat.release(trial)
            return None, None
        params = {p.name: suggest(trial, p) for p in self.study.search}
        return trial, params

    def ask_confirm(self) -> tuple[optuna.Trial, int] | tuple[None, None]:
        """The next queued confirmation seed this sweep wants, as (trial, seed), or (None, None)."""
        for _ in range(len(self.confirm.get_trials(deepcopy=False)) + 1):
            trial = self.confirm.ask()
            self._claim(trial)
            seed = seed_of(_frozen(self.confirm, trial.number))
            if seed is None or seed not in self.seeds:  # past the queue, or a seed this sweep does not want
                trial.set_user_attr("state", "over_budget" if seed is None else "not_wanted")
                self.confirm.tell(trial, state=TrialState.FAIL)
                self.heartbeat.release(trial)
                if seed is None:
                    return None, None
                continue
            return trial, trial.suggest_int("seed", 0, 2**32 - 1)
        return None, None

    def _claim(self, trial):
        self.heartbeat.hold(trial)
        trial.set_user_attr("worker_host", HOST)
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("worker_token", worker_token())
        inherited = trial.user_attrs  # a retry copy carries its original's outcome and run: not its own
        if inherited.get("state") is not None:
            trial.set_user_attr("state", "running")
        for key in ("mlflow_run_id", "error"):
            if inherited.get(key) is not None:
                trial.set_user_attr(key, None)

    def finish(
        self,
        which: str,
        trial: optuna.Trial,
        state: str,
        value: float | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> bool:
        """Tell Optuna how a trial ended; False when it was no longer ours (see ``taken_away``)."""
        optuna_study = self.search if which == "search" else self.confirm
        try:
            for key, val in (attrs or {}).items():
                trial.set_user_attr(key, val)
            trial.set_user_attr("state", state)
            if state == "pruned":
                optuna_study.tell(trial, state=TrialState.PRUNED)
            elif state in ("failed", "interrupted"):
                optuna_study.tell(trial, state=TrialState.FAIL)
                if state == "interrupted":  # re-run the same settings later: nothing is lost
                    optuna.storages.RetryHeartbeatStaleTrialCallback()(
                        optuna_study, _frozen(optuna_study, trial.number)
                    )
            else:
                optuna_study.tell(trial, value)
        except TAKEN_AWAY:
            if _frozen(optuna_study, trial.number).state == TrialState.RUNNING:
                raise
            return False
        finally:
            self.heartbeat.release(trial)
        return True

    def reap_stale(self, ownerless_dead: bool = False) -> None:
        """Fail the trials of dead workers and queue each again.

        RDB storages: Optuna's heartbeat decides. The journal file: a trial whose worker ran on this
        host and whose process is gone. Both: a trial that never named its worker (killed between
        Optuna's ask and its claim) at once when ``ownerless_dead`` (no worker of this journal is alive,
        ``WorkerPresence``), else after 120 s, a wait said once on stderr.
        """
        heartbeat = heartbeat_enabled(self.search._storage)
        for optuna_study in (self.search, self.confirm):
            if heartbeat:
                optuna.storages.fail_stale_trials(optuna_study)
            for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                host, pid = t.user_attrs.get("worker_host"), t.user_attrs.get("worker_pid")
                if host is None:
                    if not ownerless_dead and not _ownerless_stale(optuna_study.study_name, t):
                        continue
                elif heartbeat or host != HOST or (pid_alive(pid) and not _earlier_self(t)):
                    continue
                try:
                    optuna_study.tell(t.number, state=TrialState.FAIL)
                except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                    continue  # another worker reaped it first
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(
                    optuna_study, _frozen(optuna_study, t.number)
                )


def seed_of(trial: FrozenTrial) -> int | None:
    """The confirmation seed a confirm-study trial is for (queued, or a retry copy), or None."""
    seed = {**trial.system_attrs.get("fixed_params", {}), **trial.params}.get("seed")
    return None if seed is None else int(seed)


def trial_state(trial: FrozenTrial) -> str:
    """The harness's word for a trial: its worker's ("complete", "diverged", ...), else Optuna's."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return trial.state.name.lower()  # a queued retry copy carries the user attributes of the original
    if trial.state == TrialState.FAIL and trial.user_attrs.get("state", "running") not in GIVEN_UP:
        return "killed"  # failed by a reaper or a heartbeat: its worker never finished it (or Optuna lost the end)
    return trial.user_attrs.get("state", trial.state.name.lower())


def retried_from(trial: FrozenTrial) -> int | None:
    """The number of the trial this one re-runs (the latest in Optuna's retry history), or None."""
    history = trial.system_attrs.get("retry_history")
    return history[-1] if history else None


def _frozen(optuna_study, number):
    return next(t for t in optuna_study.get_trials(deepcopy=False) if t.number == number)


def trial_rows(study: Study, storage: BaseStorage, conditions: list[Condition] | None = None) -> list[dict[str, Any]]:
    """Every trial of the sweep's current search and confirm studies as plain dicts (the records of
    Optuna's side, which ``reconcile`` holds against MLflow's)."""
    rows: list[dict[str, Any]] = []
    for condition in conditions or study.conditions:
        for phase in ("search", "confirm"):
            name = study.optuna_name(condition, phase)
            try:
                optuna_study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            for t in optuna_study.get_trials(deepcopy=False):
                rows.append(
                    {
                        "condition": condition.name,
                        "phase": phase,
                        "optuna_study": name,
                        "number": t.number,
                        "optuna_state": t.state.name,
                        "value": t.value,
                        "params": dict(t.params),
                        "seed": seed_of(t) if phase == "confirm" else None,
                        "attrs": dict(t.user_attrs),
                        "state": trial_state(t),
                        "retry_of": retried_from(t),
                        "worker_gone": t.user_attrs.get("worker_host") == HOST
                        and (not pid_alive(t.user_attrs.get("worker_pid")) or _earlier_self(t)),
                        "completed_at": t.datetime_complete.timestamp() if t.datetime_complete else None,
                    }
                )
    return rows
