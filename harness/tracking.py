"""The one place that talks to MLflow: where runs go, and a writer that records one run.

Recording must not cost more than training. A ``RunWriter`` owns a thread that creates the run, logs
params and tags, and writes the per-epoch curves in batches: points gather on the caller's side and
go out as one ``log_batch`` at most every ``flush_seconds`` (and at the end), never one call per
point. The thread is kept quiet while training runs on purpose: Python threads share one
interpreter lock, and a busy writer thread was measured to slow a digits run 16-fold (1.63 s
instead of 0.10 s). mlflow is imported lazily, so importing this module is cheap.
"""
import importlib
import os
import queue
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

STORE_DIR = "mlruns"
HARNESS_TAG = "harness.kind"
"""Every run the harness makes carries this tag (train, search, confirm, condition, reproduce)."""


def default_tracking_uri():
    return f"sqlite:///{Path.cwd() / STORE_DIR / 'mlflow.db'}"


def resolve_tracking_uri(flag=None):
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's store under ./mlruns/."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _sqlite_path(uri):
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri):
    """Artifacts of a local SQLite store live beside it (mlruns/artifacts); servers choose their own."""
    path = _sqlite_path(uri)
    return (path.parent / "artifacts").resolve().as_uri() if path else None


def check_server(uri, timeout=10):
    """A tracking server must answer, and accept us, before anything is created: MLflow's client would
    retry for minutes, then fail with a traceback. Local stores need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.request

    from .errors import HarnessError
    from .urls import redact
    headers = {}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        user = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        headers["Authorization"] = f"Basic {base64.b64encode(user.encode()).decode()}"
    probe = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1",
                                   headers=headers)
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        hint = {401: "it wants credentials: MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN",
                403: "it refuses this host name: start it with --allowed-hosts listing the name in this URL"}
        raise HarnessError(f"tracking URI {redact(uri)}: the MLflow server answered {exc.code} {exc.reason}"
                           + (f"; {hint[exc.code]}" if exc.code in hint else "")) from None
    except OSError as exc:
        raise HarnessError(f"tracking URI {redact(uri)}: no MLflow server answers there ({exc})") from None


def open_client(uri):
    """An MlflowClient on ``uri``; creates the SQLite file's folder and schema on first use."""
    check_server(uri)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient
    path = _sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif urlparse(uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client, name, uri):
    from mlflow.exceptions import MlflowException
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    except MlflowException:  # another process created it first
        return client.get_experiment_by_name(name).experiment_id


def _text(tags):
    """Tag values as strings: a tracking server's REST API takes nothing else (SQLite converts)."""
    return {key: str(value) for key, value in tags.items()}


def _now_ms():
    return int(time.time() * 1000)


class RunWriter:
    """Records one MLflow run from a background thread; ``close`` waits and re-raises its errors."""

    def __init__(self, uri, experiment, run_name, params, tags, parent_run_id=None, flush_seconds=2.0,
                 preload=()):
        self.run_id = None
        self.flush_seconds = flush_seconds
        self._points, self._last_flush = [], time.perf_counter()
        self.blocked_seconds = 0.0  # time the caller waited on this writer
        self.import_seconds = 0.0  # importing mlflow, its store and ``preload``: once per process
        self.busy_seconds = 0.0  # time the writer thread spent writing (calls, artifacts)
        self._ops = queue.Queue()
        self._error = None
        self._ready = threading.Event()
        tags = dict(tags)
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self._thread = threading.Thread(
            target=self._work, args=(uri, experiment, run_name, params, tags, preload), daemon=True,
            name="mlflow-run-writer")
        self._thread.start()

    def wait_started(self):
        """Block until the run exists; returns its id (raises if it could not be created)."""
        start = time.perf_counter()
        self._ready.wait()
        self.blocked_seconds += time.perf_counter() - start
        if self.run_id is None:
            raise self._error
        return self.run_id

    def log_metrics(self, step, metrics):
        """Gather one step's metrics; they are sent in one batch every ``flush_seconds``."""
        timestamp = _now_ms()
        self._points.extend((key, float(value), timestamp, step) for key, value in metrics.items())
        if time.perf_counter() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self):
        if self._points:
            self._ops.put(("metrics", self._points))
            self._points, self._last_flush = [], time.perf_counter()

    def set_tags(self, tags):
        """Queue tags; ``tags`` may be a callable, then evaluated on the writer thread."""
        self._ops.put(("tags", tags if callable(tags) else dict(tags)))

    def call(self, fn):
        """Run ``fn(client, run_id)`` on the writer thread, in order with the other writes."""
        self._ops.put(("call", fn))

    def close(self, status="FINISHED"):
        start = time.perf_counter()
        self.flush()
        self._ops.put(("end", status))
        self._thread.join()
        self.blocked_seconds += time.perf_counter() - start
        if self._error is not None:
            raise self._error
        return self.run_id

    def _work(self, uri, experiment, run_name, params, tags, preload):
        start = time.perf_counter()
        try:
            from mlflow.entities import Metric, Param, RunTag
            client = open_client(uri)  # imports the store's modules (sqlalchemy, alembic) on first use
            for module in preload:  # what later writes need (plotting), imported before training starts
                importlib.import_module(module)
            self.import_seconds = time.perf_counter() - start
            start = time.perf_counter()
            experiment_id = ensure_experiment(client, experiment, uri)
            run = client.create_run(experiment_id, run_name=run_name, tags=_text(tags))
            self.run_id = run.info.run_id
            client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by close()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.busy_seconds += time.perf_counter() - start
        while True:
            op = self._ops.get()
            start = time.perf_counter()
            try:
                if op[0] == "metrics":
                    client.log_batch(self.run_id, metrics=[Metric(*point) for point in op[1]])
                elif op[0] == "tags":
                    tags = op[1]() if callable(op[1]) else op[1]
                    client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
                elif op[0] == "call":
                    op[1](client, self.run_id)
                elif op[0] == "end":
                    client.set_terminated(self.run_id, "FAILED" if self._error else op[1])
            except BaseException as exc:  # noqa: BLE001
                if self._error is None:
                    self._error = exc
            self.busy_seconds += time.perf_counter() - start
            if op[0] == "end":
                return


def write_artifacts(client, run_id, artifacts):
    """Log ``{file name: bytes}`` as the run's root artifacts in one call."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in artifacts.items():
            (Path(tmp) / name).write_bytes(content)
        client.log_artifacts(run_id, tmp)


class RecorderProcess:
    """A child process that owns an MLflow client and writes whole runs while the caller trains.

    Sweeps record one run per trial; on a local SQLite store that costs 50-100 ms per run, as much as
    training a digits trial. A thread would not overlap it (one interpreter lock), a process does.
    Protocol: ``start_run`` (returns at once; ``run_id`` blocks until the run exists), then
    ``finish_run`` with the curves, tags, artifacts and final status. Errors come back at ``run_id``
    or ``close``. The child ignores Ctrl-C (the caller ends its runs as KILLED first) and exits when
    its parent dies.
    """

    def __init__(self, uri, open_store=True):
        """Starts the child, which imports mlflow at once; it opens the store when told to (``open``):
        several processes opening a fresh SQLite store at the same moment corrupt its schema."""
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        self._requests, self._replies = context.Queue(), context.Queue()
        self._run_ids, self._errors = {}, []
        self.blocked_seconds = 0.0
        self._process = context.Process(target=_recorder_main, args=(uri, self._requests, self._replies),
                                        name="mlflow-recorder", daemon=True)
        self._process.start()
        if open_store:
            self.open()

    def open(self):
        self._requests.put(("open",))

    def start_run(self, key, experiment_id, run_name, params, tags):
        self._requests.put(("start", key, experiment_id, run_name, params, tags))

    def run_id(self, key):
        start = time.perf_counter()
        try:
            while key not in self._run_ids:
                self._take_reply()
            return self._run_ids.pop(key)
        finally:
            self.blocked_seconds += time.perf_counter() - start

    def finish_run(self, run_id, points, tags, artifacts, status="FINISHED"):
        self._requests.put(("finish", run_id, points, tags, artifacts, status))

    def close(self):
        start = time.perf_counter()
        self._requests.put(("stop",))
        while True:
            reply = self._take_reply()
            if reply[0] == "stopped":
                break
        self._process.join(timeout=30)
        self.blocked_seconds += time.perf_counter() - start
        if self._errors:
            raise RuntimeError(f"recording failed: {self._errors[0]}")

    def _take_reply(self):
        waited = 0.0
        while True:
            try:
                reply = self._replies.get(timeout=1.0)
                break
            except queue.Empty:
                waited += 1.0
                if not self._process.is_alive():
                    raise RuntimeError("the MLflow recorder process died"
                                       + (f": {self._errors[0]}" if self._errors else "")) from None
                if waited >= 600:
                    raise RuntimeError("the MLflow recorder process did not answer for 600 s") from None
        if reply[0] == "run":
            self._run_ids[reply[1]] = reply[2]
        elif reply[0] == "error":
            self._errors.append(reply[2])
            if reply[1] is not None:
                raise RuntimeError(f"recording failed: {reply[2]}")
        return reply


def _recorder_main(uri, requests, replies):
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.tracking import sqlalchemy_store  # noqa: F401 - the slow import, done early
    client = None
    while True:
        try:
            message = requests.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the worker died: nothing more will come
                return
            continue
        kind = message[0]
        if kind == "stop":
            replies.put(("stopped",))
            return
        try:
            if kind == "open":
                client = open_client(uri)
            elif kind == "start":
                _, key, experiment_id, run_name, params, tags = message
                run = client.create_run(experiment_id, run_name=run_name, tags=_text(tags))
                client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
                replies.put(("run", key, run.info.run_id))
            elif kind == "finish":
                _, run_id, points, tags, artifacts, status = message
                client.log_batch(run_id, metrics=[Metric(*p) for p in points],
                                 tags=[RunTag(k, str(v)) for k, v in tags.items()])
                if artifacts:
                    write_artifacts(client, run_id, artifacts)
                client.set_terminated(run_id, status)
        except Exception as exc:  # noqa: BLE001 - reported to the worker
            key = message[1] if kind == "start" else None
            replies.put(("error", key, f"{type(exc).__name__}: {exc}"))
            if kind == "open":
                return


def running_runs(client, experiment_id, study_name):
    """Trial and confirm runs of a study still marked RUNNING, as (run_id, tags)."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.study = '{study_name}' and "
                              "attributes.status = 'RUNNING'", max_results=5000)
    return [(r.info.run_id, r.data.tags) for r in runs if r.data.tags.get(HARNESS_TAG) in ("search", "confirm")]


def end_run(client, run_id, state, status):
    client.set_tag(run_id, "state", state)
    client.set_terminated(run_id, status)


def parent_run(client, experiment_id, run_id, run_name, tags, params):
    """Reuse a condition's parent run (marked RUNNING again) or create it; returns its id."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException
    if run_id:
        try:
            run = client.get_run(run_id)
            if run.info.lifecycle_stage == "active":
                client.update_run(run_id, status="RUNNING")
                return run_id
        except MlflowException:
            pass
    run = client.create_run(experiment_id, run_name=run_name, tags=_text(tags))
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def fetch_run(client, run_id):
    """The run, or a HarnessError naming the id when the store has no such run."""
    from mlflow.exceptions import MlflowException

    from .errors import HarnessError
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise HarnessError(f"run {run_id!r} not found in this tracking store") from None


def read_artifact(client, run_id, name):
    """An artifact's bytes, or None when the run has no such file."""
    import tempfile
    from mlflow.exceptions import MlflowException
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, name, tmp)
        except (MlflowException, OSError):
            return None
        return Path(path).read_bytes()


def metric_histories(client, run_id, keys):
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in keys}


def study_runs(client, study_name):
    """Every run of a study's experiment as (run, tags, params, metrics) dicts; [] if none."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return None, []
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    return experiment.experiment_id, runs
