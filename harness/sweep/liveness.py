"""Which workers are alive: Optuna's heartbeats on an RDB storage, the process and a kernel lock per
worker on a journal, and a bounded wait for a trial whose worker never named itself.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial


HOST = socket.gethostname()

_token = [uuid.uuid4().hex[:12]]


def worker_token() -> str:
    """Tells this worker's trials from those an earlier worker with the same pid left (pid reuse, or an
    earlier sweep of this same process: a notebook, the tests)."""
    return _token[0]


def new_worker() -> None:
    """A worker starts in this process: the trials an earlier sweep of the process left running are an
    earlier life's (reclaimed at once), not held by a live worker (waited for, for ever)."""
    _token[0] = uuid.uuid4().hex[:12]


STALE_WITHOUT_OWNER_SECONDS = 120

DEFAULT_HEARTBEAT_SECONDS = 10


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


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


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
    return trial.user_attrs.get("worker_pid") == os.getpid() and trial.user_attrs.get("worker_token") != worker_token()
