"""Optuna's storages: a journal file under a kernel lock (the default), or an RDB database whose every
call rides out an outage for a bounded time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from ..common.errors import HarnessError
from ..common.outages import OutageError, is_database_outage, shared_patience
from ..common.urls import redact
from .liveness import DEFAULT_HEARTBEAT_SECONDS

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


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
    from ..records.store import require_driver

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
