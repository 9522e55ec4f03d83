"""Bounded patience with a shared service (the Optuna database, the MLflow tracking server).

A database restart, a failover or a server deploy while a sweep runs is an outage, not a fault of the
trial in hand: the call is retried with backoff for up to ``$HARNESS_OUTAGE_SECONDS`` (``harness sweep
--outage-seconds``, default 300), saying once on stderr what it waits for; past that, one line names the
service and the time waited (``OutageError``, exit 1) and later calls fail at once. Only errors that say
the connection is gone count; any other error is raised as it is.
"""

import contextlib
import os
import threading
import time

from .errors import RunTimeFailure
from .output import say
from .urls import redact

DEFAULT_OUTAGE_SECONDS = 300.0


_SHARED: dict = {}


class OutageError(RunTimeFailure):
    """A shared service stayed away longer than the sweep's patience: a failure at run time (exit 1)."""


@contextlib.contextmanager
def patient(seconds=None):
    """A sweep's patience: ``seconds`` (default ``$HARNESS_OUTAGE_SECONDS``, else 300) for this process and
    the workers and recorders it starts (they inherit the variable); restored afterwards, so commands run
    later in the same process (a notebook, the tests) fail at once again."""
    before = os.environ.get("HARNESS_OUTAGE_SECONDS")
    os.environ["HARNESS_OUTAGE_SECONDS"] = f"{outage_seconds() if seconds is None else seconds:g}"
    _SHARED.clear()
    try:
        yield
    finally:
        _SHARED.clear()
        if before is None:
            os.environ.pop("HARNESS_OUTAGE_SECONDS", None)
        else:
            os.environ["HARNESS_OUTAGE_SECONDS"] = before


def outage_seconds():
    try:
        return max(0.0, float(os.environ.get("HARNESS_OUTAGE_SECONDS", DEFAULT_OUTAGE_SECONDS)))
    except ValueError:
        return DEFAULT_OUTAGE_SECONDS


def http_retries(seconds, factor=2.0, cap=120.0):
    """How many retries MLflow's HTTP client (urllib3: waits factor * 2**i, at most ``cap``) makes within
    ``seconds``: its default (7 retries, about 4 minutes) would outlast a shorter bound."""
    retries, waited = 0, 0.0
    while retries < 7 and waited + min(cap, factor * 2**retries) <= seconds:
        waited += min(cap, factor * 2**retries)
        retries += 1
    return max(retries, 1)


def current_patience():
    """Inside a sweep (``patient``): its bound; elsewhere 0, so other commands fail at once."""
    try:
        return max(0.0, float(os.environ.get("HARNESS_OUTAGE_SECONDS") or 0))
    except ValueError:
        return 0.0


def is_database_outage(exc):
    """The connection to the database is gone (restart, failover, network), anywhere in the chain of
    causes: Optuna wraps SQLAlchemy's errors in its own ``StorageInternalError``."""
    import sqlalchemy.exc as sa

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        lost = (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.InvalidatePoolError)
        if isinstance(exc, lost) or isinstance(exc, sa.PendingRollbackError):  # the session of a lost connection
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        exc = _cause(exc)
    return False


def _cause(exc):
    """What an exception was raised from (or, implicitly, while handling): Optuna wraps with ``from``."""
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def shared_patience(service, is_outage):
    """One patience per service and process: every storage object and thread waits on the same outage."""
    if service not in _SHARED:
        _SHARED[service] = Patience(service, is_outage)
    return _SHARED[service]


class Patience:
    """Retries calls to one service through its outages, for a bounded time shared by all its calls."""

    def __init__(self, service, is_outage, seconds=None, sleep=time.sleep, clock=time.monotonic):
        self.service, self.is_outage = service, is_outage
        self.seconds = current_patience() if seconds is None else seconds
        self.sleep, self.clock = sleep, clock
        self.since = None  # when the current outage began
        self.exhausted = False
        self._lock = threading.Lock()

    def call(self, function, *args, before_retry=None, **kwargs):
        """``function(*args, **kwargs)``, retried through an outage; ``before_retry()`` drops what the
        outage left broken (a database session)."""
        attempt = 0
        while True:
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                if not self.is_outage(exc):
                    raise
                self._wait(exc, attempt)
                attempt += 1
                if before_retry is not None:
                    before_retry()
                continue
            self._recovered()
            return result

    def _wait(self, exc, attempt):
        with self._lock:
            now = self.clock()
            first = self.since is None
            if first:
                self.since = now
            waited = now - self.since
            if self.exhausted or waited >= self.seconds:
                self.exhausted = True
                raise OutageError(
                    f"{self.service} did not answer for {max(waited, self.seconds):.0f} s ({_reason(exc)}); "
                    "run the same command again once it answers"
                ) from None
            if first:
                say(f"harness: {self.service} does not answer ({_reason(exc)}); waiting up to {self.seconds:.0f} s")
        self.sleep(min(5.0, 0.25 * 2**attempt, max(0.05, self.seconds - waited)))

    def _recovered(self):
        if self.since is None:
            return
        with self._lock:
            if self.since is not None:
                say(f"harness: {self.service} answers again after {self.clock() - self.since:.1f} s")
                self.since = None


def _reason(exc):
    """The root cause in one short line (Optuna's wrapper blames "invalid data in the commit")."""
    seen = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    exc = getattr(exc, "orig", None) or exc
    text = redact(str(exc)).strip().splitlines()  # before it is cut: half a password is no URL
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"
