"""The one place that talks to Optuna: storages, one study per condition, budgets, stale trials.

Each condition has a *search* study (``<study>/<condition>``), whose trials tune the nuisance settings,
and a *confirm* study (``<study>/<condition>/confirm-after-<N>-trials``) holding one enqueued trial
per confirmation seed. Workers share them through the storage; the budget is counted there, so any
number of local processes (or machines, on an RDB storage) can work on one sweep and the totals stay
exact.

A worker that dies leaves its trials RUNNING. On an RDB storage Optuna's heartbeat notices it (each
worker records a heartbeat per running trial; a trial silent for the grace period is failed by the
next worker that looks, and Optuna's retry callback queues a copy with the same settings). The
journal file has no heartbeat, so there a trial whose local worker process is gone is failed and
queued again through the same callback. Either way the copy carries Optuna's ``failed_trial`` and
``retry_history`` system attributes.
"""

from __future__ import annotations

import copy
import math
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from .errors import HarnessError
from .outages import OutageError, is_database_outage, shared_patience
from .studies import LEGACY_SEARCH
from .urls import redact

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from .studies import Condition, SearchParam, Study

HOST = socket.gethostname()
PROCESS_TOKEN = uuid.uuid4().hex[:12]
"""Tells this process's trials from those an earlier worker with the same pid left (a test, pid reuse)."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TAKEN_AWAY = (optuna.exceptions.UpdateFinishedTrialError, ValueError)
"""Raised when a worker writes to a trial that another worker already failed as dead (its heartbeats
were late: a paused machine, a network cut). The trial runs again elsewhere; this worker lets it go."""
GIVEN_UP = ("failed", "interrupted", "unrecorded", "over_budget", "not_wanted")
"""States a worker gives a trial it fails on purpose (``finish``); any other failed trial was killed."""
STALE_WITHOUT_OWNER_SECONDS = 120
DEFAULT_HEARTBEAT_SECONDS = 10
MAX_RETRIES = 3
"""A trial whose worker died is run again at most this often (a trial that kills its worker stops)."""


def quiet_optuna() -> None:
    """Optuna's per-trial log lines and warnings about what the harness does on purpose, silenced while
    a sweep or a comparison runs (not at import: importing the harness changes nothing)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat arguments
    # Optuna expects heartbeats with ``optimize``; workers here ask/tell and beat themselves (``Heartbeat``)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def default_storage_path(study_name: str) -> Path:
    return Path.cwd() / "mlruns" / "optuna" / f"{study_name}.journal"


def storage_url(url: str | None, study_name: str) -> str:
    """Where a sweep's trials live: ``journal:PATH`` (the default, under mlruns/optuna/) or an RDB URL."""
    if not url or url.startswith("journal:") or url.endswith((".journal", ".log")):
        path = Path(
            url[len("journal:") :] if url and url.startswith("journal:") else url or default_storage_path(study_name)
        )
        return f"journal:{path.resolve()}"
    return url


def open_storage(
    url: str | None, study_name: str, heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS, check: bool = False
) -> tuple[BaseStorage, str]:
    """The Optuna storage behind ``url`` (see ``storage_url``), and that URL.

    RDB storages get Optuna's heartbeat: a trial not heard of for 3 heartbeats is failed and retried.
    ``check``: read a journal file through once first, mending a record torn by a killed writer and
    naming the line of a damaged one (the command that starts a sweep does this; workers need not).
    """
    quiet_optuna()
    url = storage_url(url, study_name)
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"{path.parent}: cannot create the Optuna storage there ({exc.strerror})") from None
        if path.is_dir():
            raise HarnessError(f"--storage {path}: is a directory; give a journal file path")
        if check:
            check_journal(path)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        try:
            # JournalFileBackend only calls acquire() and release()
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFlock(path))), url  # type: ignore[arg-type]
        except OSError as exc:
            raise HarnessError(f"{path}: cannot open the Optuna journal ({exc.strerror or exc})") from None
    from .tracking import require_driver

    if url.startswith("postgresql"):
        require_driver(url)
    try:
        storage = PatientRDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=heartbeat_seconds,
            grace_period=3 * heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
        )
    except OutageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad URL is user input
        raise HarnessError(
            f"--storage {redact(url)!r}: cannot open ({type(exc).__name__}: {redact(str(exc))[:300]})"
        ) from None
    return storage, url


class PatientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose every call rides out a database outage (a restart, a failover) for a
    bounded time (``outages.Patience``): a worker waits and goes on where it stopped, instead of failing
    the trial in hand with a chain of tracebacks."""

    def __init__(self, url, **kwargs):
        self.patience = shared_patience(f"the Optuna database {redact(url)}", is_database_outage)
        self.patience.call(super().__init__, url, **kwargs)

    def _fresh_session(self):
        """A session whose connection died stays unusable until rolled back: start a new one."""
        try:
            self.scoped_session.remove()
        except Exception:  # noqa: BLE001 - closing a dead session may fail too; the next call opens one
            pass

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("patience", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.patience = shared_patience(f"the Optuna database {redact(self.url)}", is_database_outage)


def _patient(name):
    method = getattr(optuna.storages.RDBStorage, name)

    def patient(self, *args, **kwargs):
        return self.patience.call(method, self, *args, before_retry=self._fresh_session, **kwargs)

    patient.__name__ = patient.__qualname__ = name
    patient.__doc__ = method.__doc__
    return patient


_NOT_DATABASE_CALLS = {
    "get_heartbeat_interval",
    "get_failed_trial_callback",
    "get_heartbeat_stale_trial_callback",
    "remove_session",
    "upgrade",
    "get_all_versions",
    "get_head_version",
}
for _name in [n for n in vars(optuna.storages.RDBStorage) if not n.startswith("_") and n not in _NOT_DATABASE_CALLS]:
    if callable(getattr(optuna.storages.RDBStorage, _name)):
        setattr(PatientRDBStorage, _name, _patient(_name))
for _name in ("_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param", "_get_stale_trial_ids"):
    setattr(PatientRDBStorage, _name, _patient(_name))  # what Optuna's cache in front of it calls directly


class JournalFlock:
    """The journal's write lock as a kernel lock (``flock``) on ``<journal>.flock``: a writer killed while
    holding it releases it at once. Optuna's own file locks are files that a killed writer leaves behind,
    and every later writer waited 30 s for them to go stale. ``JournalFileBackend`` only calls
    ``acquire`` and ``release``. (Local disks; ``flock`` is unreliable on NFS.)"""

    _fd: int | None

    def __init__(self, path: Path) -> None:
        self._path, self._fd = f"{path}.flock", None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def check_journal(path: Path) -> None:
    """A journal file every line of which Optuna can read; a last line torn by a writer that was killed
    mid-write is cut off (under the journal's write lock, so no live writer is mid-write)."""
    import json

    if not path.exists() or path.stat().st_size == 0:
        return
    if not os.access(path, os.W_OK):
        raise HarnessError(f"{path}: the Optuna journal cannot be written here (read-only)")
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        torn = fh.read(1) != b"\n"
    if torn:
        lock = JournalFlock(path)
        lock.acquire()
        try:
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                import sys

                print(
                    f"harness: {path}: removed an unfinished last record ({len(data) - end} bytes) that a "
                    "killed process left; the trials it was about are resumed",
                    file=sys.stderr,
                )
        finally:
            lock.release()
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                json.loads(line)
            except (ValueError, UnicodeDecodeError):
                raise HarnessError(
                    f"{path}: line {number} is not an Optuna journal record (the file is "
                    "damaged); restore it from a copy, or move it away to start the study's "
                    "search again"
                ) from None


def heartbeat_enabled(storage: BaseStorage) -> bool:
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


class Heartbeat:
    """Keeps this worker's trials alive on an RDB storage, from the moment it asks for them to the end.

    Optuna's own heartbeat thread serves the one trial inside ``optimize``; a worker here holds a
    stack of trials asked with ``ask`` (and loads data, starts runs, trains, records), so one thread
    beats for every trial it holds. A trial is beaten once at once when taken: Optuna never finds a
    trial stale that has no heartbeat at all. A no-op on storages without heartbeats.
    """

    _held: set[int]
    _thread: threading.Thread | None

    def __init__(self, storage: BaseStorage) -> None:
        self.storage, self.enabled = storage, heartbeat_enabled(storage)
        self._held, self._lock = set(), threading.Lock()
        self._stop, self._thread = threading.Event(), None

    def hold(self, trial: optuna.Trial) -> None:
        if not self.enabled:
            return
        # enabled: an RDB storage, which has heartbeats
        self.storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        with self._lock:
            self._held.add(trial._trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, daemon=True, name="optuna-heartbeat")
            self._thread.start()

    def release(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._held.discard(trial._trial_id)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self):
        while not self._stop.wait(self.storage.get_heartbeat_interval()):
            with self._lock:
                held = list(self._held)
            for trial_id in held:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                    pass


class StackPruning:
    """Pruning decisions for a stack of trials: one read of the study per epoch, not one per trial.

    ``Trial.should_prune`` reads the study's trials from the storage at every call; on PostgreSQL that
    cost 12 ms per call, 17 s of a 42 s quickstart. The trials of a stack decide at the same epoch
    against the same finished trials, so they share one read per epoch and ask the study's own
    pruner with it; each trial's value of this epoch is added from what it just reported.
    """

    _epoch: int | None
    _trials: dict[int, FrozenTrial]

    def __init__(self, optuna_study: optuna.Study) -> None:
        self.study, self._epoch, self._trials = optuna_study, None, {}
        self.taken_away: set[int] = set()  # numbers of trials another worker failed as dead meanwhile

    def report(self, trial: optuna.Trial, epoch: int, value: float, decide: bool = True) -> bool:
        """Report a trial's epoch; True when it should stop (pruned, or no longer this worker's)."""
        try:
            trial.report(value, epoch)
        except TAKEN_AWAY:
            self.taken_away.add(trial.number)
            return True
        return decide and self.should_prune(trial, epoch, value)

    def should_prune(self, trial: optuna.Trial, epoch: int, value: float) -> bool:
        if epoch != self._epoch:
            self._epoch = epoch
            self._trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        frozen = copy.copy(self._trials[trial.number])
        frozen.intermediate_values = {**frozen.intermediate_values, epoch: float(value)}
        # _Snapshot stands in for the study
        return self.study.pruner.prune(_Snapshot(self.study, list(self._trials.values())), frozen)  # type: ignore[arg-type]


class _Snapshot:
    """A study whose ``get_trials`` answers from one read; everything else is the study itself."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study, self._trials = study, trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return [t for t in self._trials if states is None or t.state in states]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


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


def suggest(trial: optuna.Trial, param: SearchParam) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(param.name, param.choices)
    # a range parameter (no choices) has low and high
    if param.is_int:
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    return trial.suggest_float(param.name, float(param.low), float(param.high), log=param.log)  # type: ignore[arg-type]


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


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
        trial.set_user_attr("worker_token", PROCESS_TOKEN)
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


_said_waiting: set[tuple[str, int]] = set()


def _ownerless_stale(study_name: str, trial: FrozenTrial) -> bool:
    """Whether a trial that never named its worker has waited out the bound; the wait is said once."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    left = STALE_WITHOUT_OWNER_SECONDS - (time.time() - started)
    if left <= 0:
        return True
    if (study_name, trial.number) not in _said_waiting:
        _said_waiting.add((study_name, trial.number))
        import sys

        print(
            f"harness sweep: {study_name} trial {trial.number} was taken by a worker that never named itself (killed "
            f"as it took it, or still starting); it is run again in {left:.0f} s unless its worker shows up",
            file=sys.stderr,
        )
    return False


class WorkerPresence:
    """Which workers of a journal are alive on this host: each holds a shared kernel lock on
    ``<journal>.workers`` for its life, so the command preparing a sweep can prove that none is (an
    exclusive lock is granted) and reclaim at once a trial whose worker was killed before it named
    itself. A dead process's lock is released by the kernel. (Journals are local files: one host.)"""

    def __init__(self, storage_url: str) -> None:
        self.path = f"{storage_url[len('journal:') :]}.workers" if storage_url.startswith("journal:") else None
        self._fd: int | None = None

    def none_alive(self) -> bool:
        import fcntl

        if self.path is None:
            return False
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing releases the lock
        return True

    def hold(self) -> None:
        import fcntl

        if self.path is not None and self._fd is None:
            self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _earlier_self(trial):
    """A trial marked with this process's pid but not its token: an earlier life of the pid."""
    return trial.user_attrs.get("worker_pid") == os.getpid() and trial.user_attrs.get("worker_token") != PROCESS_TOKEN


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


def budget_asked_before(study: Study, storage: BaseStorage) -> int:
    """The largest search budget an earlier sweep of this study asked for, 0 when none did.

    Every sweep makes a confirm study named after its budget (``optuna_name``), so the names alone
    tell, in stores of every version. A sweep never runs a smaller budget than this: the result of an
    extended study stands until a larger budget replaces it (a plain re-run after ``--trials 24`` must
    not bring back the 16-trial result)."""
    names = {condition.name for condition in study.conditions}
    pattern = re.compile(re.escape(study.name) + r"/([^/]+)/confirm-after-(\d+)-trials")
    budgets = [
        int(match[2])
        for name in optuna.get_all_study_names(storage)
        if (match := pattern.fullmatch(name)) and match[1] in names
    ]
    return max(budgets, default=0)


def existing_searches(study: Study, storage: BaseStorage) -> dict[str, optuna.Study]:
    """{condition: its search study} for the conditions whose search the storage already holds."""
    known = set(optuna.get_all_study_names(storage))
    return {
        c.name: optuna.load_study(study_name=study.optuna_name(c), storage=storage)
        for c in study.conditions
        if study.optuna_name(c) in known
    }


def check_unchanged(study: Study, searches: dict[str, optuna.Study], data_digests: dict[str, str]) -> None:
    """Refuse, before anything is created, a study whose search settings or data changed since its
    searches began: trials of two different searches (or data sets) would be mixed in one result."""
    digest = study.settings_digest()
    for name, search in searches.items():
        known = search.user_attrs.get("settings_digest")
        if known is not None and known != digest:
            changed = changed_setting(search.user_attrs.get("settings"), study.identity())
            raise HarnessError(
                f"{study.path}: study {study.name!r} already exists in the storage with other settings"
                + (f" ({changed})" if changed else "")
                + "; give the edited study a new name (or delete its records)"
            )
        seen = search.user_attrs.get("data_digest")
        if seen is not None and data_digests.get(name) not in (None, seen):
            raise HarnessError(
                f"{study.path}: condition {name}: its data changed since the study began (digest "
                f"{seen[:12]}, now {data_digests[name][:12]}): the study's trials were trained on other data; "
                "give the study a new name to train on this data, or restore the data it was made with"
            )


def changed_setting(before: Any, after: dict[str, Any], where: str = "") -> str:
    """The first setting that differs between two study definitions, as 'KEY: OLD -> NEW' ('' when
    the old definition was not recorded)."""
    if not isinstance(before, dict):
        return ""
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        path = f"{where}.{key}" if where else key
        if isinstance(old, dict) and isinstance(new, dict):
            return changed_setting(old, new, path)
        return f"{path}: {old!r} -> {new!r}"
    return ""


def prepare_studies(
    study: Study, storage: BaseStorage, data_digests: dict[str, str] | None = None
) -> dict[str, optuna.Study]:
    """Create (or check) every condition's search and confirm studies; run once before workers start.

    Creating studies from several processes at once races on a fresh database, so the command that
    starts the workers does it first. A study whose settings or data changed since it was created is
    refused before anything is created. Confirmation seeds the sweep wants and has not queued yet (a
    first sweep, a larger ``--confirm-seeds``) are queued here. Each search gets an id its runs carry,
    so runs of an earlier search of the same name (a journal deleted, a storage replaced) never count.
    """
    data_digests = data_digests or {}
    check_unchanged(study, existing_searches(study, storage), data_digests)
    created = {}
    for condition in study.conditions:
        name = study.optuna_name(condition)
        # direction: "maximize" or "minimize", checked when the study was parsed
        search = optuna.create_study(study_name=name, storage=storage, direction=study.direction, load_if_exists=True)  # type: ignore[arg-type]
        attrs = search.user_attrs
        if attrs.get("settings_digest") is None:
            search.set_user_attr("settings_digest", study.settings_digest())
            search.set_user_attr("settings", study.identity())
            search.set_user_attr("condition_settings", condition.settings)
        if attrs.get("search_id") is None:
            fresh = attrs.get("settings_digest") is None
            search.set_user_attr("search_id", uuid.uuid4().hex[:12] if fresh else LEGACY_SEARCH)
        if attrs.get("data_digest") is None and condition.name in data_digests:
            search.set_user_attr("data_digest", data_digests[condition.name])
        queue_seeds(study, condition, storage)
        created[condition.name] = search
    return created


def queue_seeds(study: Study, condition: Condition, storage: BaseStorage) -> None:
    """The confirmation seeds this sweep wants and has not queued yet, queued."""
    confirm = optuna.create_study(
        study_name=study.optuna_name(condition, "confirm"),
        storage=storage,
        direction="maximize",
        load_if_exists=True,
    )
    queued = {
        seed_of(t)
        for t in confirm.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        or (t.state == TrialState.FAIL and trial_state(t) == "failed")
    }
    for seed in study.confirm_seed_values():
        if seed not in queued:
            confirm.enqueue_trial({"seed": seed})


def search_ids(searches: dict[str, optuna.Study]) -> dict[str, str]:
    return {name: search.user_attrs["search_id"] for name, search in searches.items()}


def set_parent_run(search_study: optuna.Study, run_id: str) -> None:
    search_study.set_user_attr("mlflow_parent_run_id", run_id)


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


def retitle(ax, prefix):
    """One title, prefixed: Optuna's plots put theirs on the left or in the centre, never both."""
    title = next((ax.get_title(loc=loc) for loc in ("left", "center", "right") if ax.get_title(loc=loc)), "")
    for loc in ("left", "center", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(f"{prefix}: {title}" if title else prefix, loc="left")


def optuna_plots(study: Study, storage_address: str | None, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances per condition, as PNGs in ``folder``.
    The storage is only read: a journal file that does not exist is not created."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    url = storage_url(storage_address, study.name)
    if url.startswith("journal:") and not Path(url[len("journal:") :]).is_file():
        return []
    try:
        storage, _ = open_storage(url, study.name)
    except HarnessError:
        return []
    warnings.filterwarnings("ignore", message="Target and region quantiles")  # few trials: equal shares
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "trial omitted: value is inf" for diverged ones
    made: list[Path] = []
    for condition in study.conditions:
        try:
            optuna_study = optuna.load_study(study_name=study.optuna_name(condition), storage=storage)
        except KeyError:
            continue
        safe = condition.name.replace("/", "_")
        for name, plot in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances)):
            try:
                ax = plot(optuna_study)
            except (ValueError, RuntimeError):
                continue  # too few finished trials for this plot
            retitle(ax, condition.name)
            path = folder / f"optuna_{name}_{safe}.png"
            # a plot's axes belong to a Figure, not a SubFigure
            ax.figure.savefig(path, bbox_inches="tight")  # type: ignore[union-attr]
            plt.close(ax.figure)  # type: ignore[arg-type]
            made.append(path)
    return made
