"""Who runs the MLflow operations: ``RecorderProcess`` in a child process that owns the client, so
training never waits for MLflow's imports or writes nor shares the interpreter lock with them (a
writer thread busy during training was measured to slow a 0.10 s run to 1.63 s); ``InlineRecorder``
here and now, for commands that train nothing. Both: ``submit`` (a ticket at once),
``outcome``/``result`` (its answer), ``call`` (submit and wait).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..common.errors import FULL_DISK, HarnessError, RecordingError, disk_full_message, from_kind, kind_of
from .operations import OPERATIONS
from .store import _first_line, open_client, sqlite_path

if TYPE_CHECKING:
    pass


# --- recorders: who runs the operations -----------------------------------------------------------------
class Ref:
    """Stands for the answer of an earlier ``submit`` (a run id), so a run can be written before its
    creation has been answered."""

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket


def _chain(exc):
    """An exception and those it was raised from or during (SQLAlchemy wraps sqlite's 'disk is full'
    in an autoflush error whose own message does not say it)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _error_payload(exc, uri=""):
    kind = kind_of(exc) if isinstance(exc, HarnessError) else "error"
    message = str(exc) if kind != "error" else f"{type(exc).__name__}: {_first_line(exc)}"
    full = next((cause for cause in _chain(exc) if any(s in str(cause) for s in FULL_DISK)), None)
    if kind == "error" and full is not None:
        path = sqlite_path(uri)
        return "disk", disk_full_message(path.parent if path else f"the tracking store {uri}", _first_line(full))
    if kind == "error" and any(s in message for s in SERVER_AWAY):
        from ..common.outages import outage_seconds

        message = (
            f"the MLflow tracking server did not answer within MLflow's retries (about {outage_seconds():.0f} s; "
            f"{message[:200]}); run the same command again once it answers"
        )
    return kind, message


SERVER_AWAY = ("Max retries exceeded", "too many 5", "Connection refused", "ConnectionError")
"""What MLflow's HTTP client says when the tracking server is away (down, restarting, its database down)."""


def _raise(payload):
    kind, message = payload
    raise from_kind("recording" if kind == "error" else kind, message)


class _Answers:
    """Tickets and their outcomes: ("ok", value) or ("error", (kind, message))."""

    _outcomes: dict[int, tuple[str, Any]]
    submit: Callable[..., int]
    _collect: Callable[..., None]

    def __init__(self) -> None:
        self._next, self._outcomes = 0, {}
        self.blocked_seconds = 0.0  # time the caller waited on the recorder

    def _ticket(self):
        self._next += 1
        return self._next

    def outcome(self, ticket: int) -> tuple[str, Any] | None:
        """("ok", value), ("error", payload), or None while it is pending."""
        self._collect(block=False)
        return self._outcomes.get(ticket)

    def result(self, ticket: int) -> Any:
        """The ticket's value once answered (waits), or its error raised."""
        start = time.perf_counter()
        try:
            while ticket not in self._outcomes:
                self._collect(block=True)
        finally:
            self.blocked_seconds += time.perf_counter() - start
        status, value = self._outcomes[ticket]
        if status == "error":
            _raise(value)
        return value

    def call(self, operation: str, *args: Any) -> Any:
        return self.result(self.submit(operation, *args))

    def forget(self, ticket: int) -> None:
        self._outcomes.pop(ticket, None)


class InlineRecorder(_Answers):
    """Runs each operation at once in this process (commands that train nothing: compare, predict)."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri
        self.client = open_client(uri)
        self._refs: dict[int, Any] = {}

    def submit(self, operation: str, *args: Any) -> int:
        ticket = self._ticket()
        if operation == "busy":  # the work is this process's own, counted by its caller
            self._outcomes[ticket] = ("ok", {})
            return ticket
        # a list now: each Ref replaced by its answer
        args = [self._refs.get(a.ticket) if isinstance(a, Ref) else a for a in args]  # type: ignore[assignment]
        try:
            value = OPERATIONS[operation](self.client, *args)
            self._outcomes[ticket] = ("ok", value)
            if operation in ("create_run", "start_run"):
                self._refs[ticket] = value
        except Exception as exc:  # noqa: BLE001 - handed back as the ticket's outcome
            self._outcomes[ticket] = ("error", _error_payload(exc, self.uri))
        return ticket

    def _collect(self, block):
        return

    def errors(self) -> list[tuple[str, str]]:
        return [v for s, v in self._outcomes.values() if s == "error"]

    def close(self) -> None:
        return


class RecorderProcess(_Answers):
    """A child process that owns an MLflow client and runs operations in order, while the caller trains.

    It starts with mlflow imported or importing (``_start_method``) and opens the store at its first
    operation. It ignores Ctrl-C (the caller
    ends its runs as KILLED through it first), and ends as soon as its parent is gone: a watchdog
    thread checks, because the main thread may be blocked reading a message its dying parent never
    finished writing.
    """

    def __init__(self, uri: str) -> None:
        super().__init__()
        context = _start_method()
        self.uri = uri
        self._requests, self._replies = context.Queue(), context.Queue()
        caller = (dict(os.environ), _Descriptor(1), _Descriptor(2))
        self._process = context.Process(
            target=_recorder_main,
            args=(uri, self._requests, self._replies, caller),
            name="mlflow-recorder",
            daemon=True,
        )
        from ..common.processes import start

        start(self._process)
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, operation: str, *args: Any) -> int:
        ticket = self._ticket()
        self._requests.put(
            (ticket, operation, [("ref", a.ticket) if isinstance(a, Ref) else ("value", a) for a in args])
        )
        return ticket

    def _collect(self, block):
        """Take the replies that arrived (``block``: wait for at least one)."""
        while True:
            try:
                ticket, status, value = self._replies.get(timeout=1.0) if block else self._replies.get_nowait()
            except queue.Empty:
                if not block:
                    return
                if not self._process.is_alive():
                    raise RecordingError(
                        f"the MLflow recorder process died (exit code {self._process.exitcode})"
                    ) from None
                continue
            self._outcomes[ticket] = (status, value)
            if block:
                return

    def outcome(self, ticket: int) -> tuple[str, Any] | None:
        found = super().outcome(ticket)
        if found is None and not self._process.is_alive():
            self._collect(block=False)
            found = self._outcomes.get(ticket)
            if found is None:
                raise RecordingError(f"the MLflow recorder process died (exit code {self._process.exitcode})")
        return found

    def errors(self) -> list[tuple[str, str]]:
        self._collect(block=False)
        return [v for s, v in self._outcomes.values() if s == "error"]

    def close(self, timeout: float = 600) -> None:
        """Wait until every submitted operation ran, then stop the child; raises the first error."""
        if self._closed:
            return
        self._closed = True
        start = time.perf_counter()
        try:
            stop = self.submit("stop")
            deadline = time.time() + timeout
            while stop not in self._outcomes:
                if time.time() > deadline:
                    raise RecordingError(f"the MLflow recorder did not finish its writes within {timeout} s")
                self._collect(block=True)
        finally:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
            self.blocked_seconds += time.perf_counter() - start
        failed = self.errors()
        if failed:
            _raise(failed[0])

    def __enter__(self) -> RecorderProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Normally: wait for every write, raise the first error. When the caller is failing: still let
        the child write what was handed over (runs ended as interrupted, ...), unless it is what failed."""
        if kind is None:
            self.close()
            return
        try:
            self.close(timeout=60)
        except Exception:  # noqa: BLE001 - already failing; the next start reconciles what is left
            self.kill()

    def kill(self) -> None:
        """Stop the child at once (the caller is failing anyway)."""
        self._closed = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=10)


_recorders_started = 0
PRELOADED = ["harness.records.recorder", "harness.records.preload"]
"""What a forkserver imports once, so that each recorder forked from it starts with MLflow imported (and
ready to save a model: ``preload``)."""


def _start_method():
    """A process's first recorder is spawned: it imports MLflow (2-3 CPU-s) beside the caller's work, and
    a one-command process needs no other. From the second on (a notebook, the test suite: many commands in
    one process), recorders fork from a forkserver that imported MLflow once, in milliseconds each."""
    import multiprocessing

    global _recorders_started
    _recorders_started += 1
    if _recorders_started == 1 or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    return context


class _Descriptor:
    """One of the caller's file descriptors, handed to the child: a child forked from the server would
    otherwise write to the standard streams the server was started with, not to its caller's."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return _received, (DupFd(self.fd),)


def _received(duplicate):
    return duplicate.detach()


def _take_over(caller):
    """Work in the caller's environment, onto its standard output and error (multiprocessing itself gives a
    child the caller's working folder and ``sys.path``, whichever way it starts)."""
    environment, stdout, stderr = caller
    os.environ.clear()
    os.environ.update(environment)
    for mine, theirs in ((1, stdout), (2, stderr)):
        if theirs != mine:  # a spawned child keeps the caller's numbers: already its own streams
            os.dup2(theirs, mine)
            os.close(theirs)


def _watch_parent():
    """Ends this process once its parent is gone: the parent holds the write end of the pipe that
    ``parent_process().sentinel`` reads, whichever way this process was started."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing child (run in the caller's own process): nothing to watch
        return
    wait([parent.sentinel])
    os._exit(0)


def _exit_now(replies):
    """Every operation has run and been answered (MLflow's client writes synchronously): the reply is
    flushed and the process leaves without the interpreter's teardown of mlflow and SQLAlchemy (about
    0.4 s of a finished sweep's re-print, measured)."""
    replies.close()
    replies.join_thread()
    os._exit(0)


def _recorder_main(uri, requests, replies, caller):
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _take_over(caller)
    threading.Thread(target=_watch_parent, daemon=True, name="parent-watchdog").start()
    from mlflow.store.tracking import sqlalchemy_store  # noqa: F401 - the slow import, done early

    client, refs, broken = None, {}, None
    busy: dict[str, float] = {}  # seconds spent per operation: where a sweep's recording time goes
    while True:
        ticket, operation, args = requests.get()
        if operation in ("stop", "busy"):
            replies.put((ticket, "ok", dict(busy)))
            if operation == "stop":
                _exit_now(replies)
            continue
        start = time.perf_counter()
        try:
            if broken is not None:
                raise broken
            if client is None:
                try:
                    client = open_client(uri)
                except Exception as exc:  # noqa: BLE001 - every later operation answers with it
                    broken = exc
                    raise
            values = [refs[v] if kind == "ref" and v in refs else v for kind, v in args]
            if any(kind == "ref" and v not in refs for kind, v in args):
                raise RecordingError("the run this write belongs to could not be created")
            value = OPERATIONS[operation](client, *values)
            if operation in ("create_run", "start_run"):
                refs[ticket] = value
            replies.put((ticket, "ok", value))
        except Exception as exc:  # noqa: BLE001 - handed back as the ticket's outcome
            replies.put((ticket, "error", _error_payload(exc, uri)))
        busy[operation] = busy.get(operation, 0.0) + time.perf_counter() - start
