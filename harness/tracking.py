"""The one place that talks to MLflow: where the store is, how it is opened, and who writes to it.

Every MLflow call the harness makes is one of the *operations* below (``create_run``, ``record_run``,
``study_runs``, ...): plain functions of a client and plain data, returning plain data. A *recorder*
runs them. ``RecorderProcess`` runs them in a child process that owns the client, so training never
waits for MLflow's imports or writes and never shares the interpreter lock with them (a writer thread
busy during training was measured to slow a 0.10 s run to 1.63 s); ``InlineRecorder`` runs them here
and now, for commands that train nothing. Both have the same interface: ``submit`` (returns a ticket
at once), ``outcome``/``result`` (its answer), ``call`` (submit and wait). mlflow is imported lazily,
so importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import FULL_DISK, DiskFullError, HarnessError, RecordingError, disk_full_message
from .urls import redact, split_credentials

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

STORE_DIR = "mlruns"
HARNESS_TAG = "harness.kind"
"""Every run the harness makes carries this tag (train, search, confirm, condition, reproduce)."""
SCHEMES = (
    "sqlite",
    "http",
    "https",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "mysql",
    "mysql+pymysql",
    "file",
    "databricks",
)
METRICS_PER_BATCH = 1000  # MLflow's own limit for one log_batch call


# --- where the store is -------------------------------------------------------------------------------
def default_tracking_uri() -> str:
    return f"sqlite:///{Path.cwd() / STORE_DIR / 'mlflow.db'}"


def resolve_tracking_uri(flag: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's store under ./mlruns/; checked."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme not in SCHEMES:
        raise HarnessError(
            f"tracking URI {redact(uri)!r}: scheme {scheme or '(none)'!r} is not supported; use "
            "sqlite:///PATH, http(s)://HOST:PORT (an MLflow server) or postgresql+psycopg://..."
        )
    if scheme.startswith("postgresql"):
        require_driver(uri)
    return uri


def require_driver(url: str) -> None:
    """PostgreSQL URLs need psycopg, which only the ``distributed`` extra installs."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        raise HarnessError(
            f"{redact(url)}: PostgreSQL needs its driver, which is not installed: pip install -e '.[distributed]'"
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH[?OPTIONS]`` URI (options are SQLAlchemy's, not the name's)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside it (mlruns/artifacts); servers choose their own."""
    path = sqlite_path(uri)
    return (path.parent / "artifacts").resolve().as_uri() if path else None


def check_server(uri: str, timeout: float = 10, patience: float = 0.0) -> None:
    """A tracking server must answer, and accept us, before anything is created: MLflow's client would
    retry for minutes, then fail with a traceback. Local stores need no check. A sweep (which sets
    ``$HARNESS_OUTAGE_SECONDS``, ``outages.patient``) waits ``patience`` seconds for a server that does
    not answer yet (a restart, a deploy), saying so; other commands fail at once."""
    if not uri.startswith(("http://", "https://")):
        return
    from .outages import Patience

    if patience <= 0:
        return _probe_server(uri, timeout)
    Patience(f"the MLflow tracking server {redact(uri)}", _unreachable, patience).call(_probe_server, uri, timeout)


class _Unreachable(HarnessError):
    """No server answers at the tracking URI (yet)."""


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, _Unreachable)


def _probe_server(uri: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    bare, _, _ = split_credentials(uri)  # urllib would read "user:password@host" as the host name
    headers = _authorization(uri)
    probe = urllib.request.Request(
        f"{bare.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1", headers=headers
    )
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        hint = {
            401: "it refused the credentials given"
            if headers
            else "it wants credentials: USER:PASSWORD@ in the URL, MLFLOW_TRACKING_USERNAME/PASSWORD or "
            "MLFLOW_TRACKING_TOKEN",
            403: "it refuses this host name: start it with --allowed-hosts listing the name in this URL",
        }
        raise HarnessError(
            f"tracking URI {redact(uri)}: the MLflow server answered {exc.code} {exc.reason}"
            + (f"; {hint[exc.code]}" if exc.code in hint else "")
        ) from None
    except OSError as exc:
        raise _Unreachable(f"tracking URI {redact(uri)}: no MLflow server answers there ({exc})") from None


def _authorization(uri: str) -> dict[str, str]:
    """The header MLflow's client would send: the URL's own credentials (``requests`` takes them), else
    $MLFLOW_TRACKING_USERNAME with $MLFLOW_TRACKING_PASSWORD, else $MLFLOW_TRACKING_TOKEN."""
    import base64

    _, user, password = split_credentials(uri)
    if user is None and os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        user, password = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    if user is not None:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    return {}


def check_writable(uri: str) -> None:
    """A local store that cannot be written fails here, in one line, before anything runs."""
    path = sqlite_path(uri)
    if path is None:
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    for target in (path if path.exists() else folder, path.parent / "artifacts"):
        if target.exists() and not os.access(target, os.W_OK):
            raise HarnessError(
                f"{target}: the tracking store cannot be written here (read-only); "
                "give --tracking-uri a writable place, or fix the permissions"
            )


# --- opening it ---------------------------------------------------------------------------------------
def open_client(uri: str) -> MlflowClient:
    """An MlflowClient on ``uri``. A local SQLite store is created whole or not at all: its schema is
    built under a temporary name and linked into place, so a kill in the 3 s of schema creation can
    never leave a half-made store behind; a half-made or damaged one gets a one-line diagnosis."""
    patience = float(os.environ.get("HARNESS_OUTAGE_SECONDS") or 0)  # set by a sweep
    check_server(uri, patience=patience)
    if uri.startswith("postgresql") and patience <= 0:
        from .locks import check_reachable

        check_reachable(uri)  # MLflow would retry a database that does not answer for 100 s, then trace back
    if os.environ.get("HARNESS_OUTAGE_SECONDS"):  # a sweep: MLflow's own retries end within the same bound
        from .outages import http_retries

        os.environ.setdefault(
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(http_retries(float(os.environ["HARNESS_OUTAGE_SECONDS"])))
        )
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    import logging

    logging.getLogger("mlflow").setLevel(logging.CRITICAL)  # its errors reach the user as our one line
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is not None:
        _create_sqlite_store(path, uri)
        relocate_store(path)
    elif urlparse(uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        return MlflowClient(tracking_uri=uri)  # opens a database and checks its schema
    except Exception as exc:  # noqa: BLE001 - a store that cannot be opened is said in one line
        if path is None:  # a database that does not answer: SQLAlchemy's error names its URL
            raise HarnessError(
                f"tracking URI {redact(uri)}: cannot open the MLflow store ({_first_line(exc)})"
            ) from None
        reason = _first_line(exc)
        if "out-of-date database schema" in reason:
            raise HarnessError(
                f"{path}: made by an older MLflow; back it up, then upgrade it with `mlflow db upgrade {uri}`"
            ) from None
        raise HarnessError(
            f"{path}: not a usable MLflow store ({reason}); its creation was interrupted or it "
            f"was damaged: move it away (mv {path} {path}.broken) and run again to start a new "
            "store"
        ) from None


RELOCATED_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
"""Where MLflow writes the absolute location of a local store's artifacts."""


def relocate_store(path: Path) -> str | None:
    """A local store copied or moved to another folder still names its old folder in every artifact
    location (MLflow records absolute ``file://`` URIs) and in its parents' Optuna storage tag, so
    commands run on the copy would read and write the original. Point them at the folder the store is
    in now, in one transaction, and say so once; returns the old folder (None when nothing moved)."""
    import sqlite3
    from urllib.parse import unquote, urlparse

    here = (path.parent / "artifacts").resolve().as_uri()
    try:
        connection = sqlite3.connect(str(path), timeout=60)
    except sqlite3.Error:
        return None
    try:
        try:
            rows = connection.execute("SELECT artifact_location FROM experiments").fetchall()
        except sqlite3.Error:
            return None  # an empty or damaged store: open_client says so
        marker = "/artifacts"
        roots = {
            loc[: loc.index(marker) + len(marker)]
            for (loc,) in rows
            if isinstance(loc, str) and loc.startswith("file://") and marker in loc
        }
        moved = sorted(root for root in roots if root != here)
        if not moved:
            return None
        old_folder = ""
        with connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for old in moved:
                for table, column in RELOCATED_COLUMNS:
                    if table in tables:
                        connection.execute(
                            f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                            (here, len(old) + 1, len(old), old),
                        )
                old_folder = unquote(urlparse(old).path)[: -len(marker)]
                new_folder = str(path.parent.resolve())
                for prefix in ("", "journal:") if "tags" in tables else ():  # a plain path; older: journal:PATH
                    old_tag = f"{prefix}{old_folder}/"
                    connection.execute(
                        "UPDATE tags SET value = ? || substr(value, ?) WHERE key = 'optuna_storage' "
                        "AND substr(value, 1, ?) = ?",
                        (f"{prefix}{new_folder}/", len(old_tag) + 1, len(old_tag), old_tag),
                    )
        print(
            f"harness: the store {path} was moved or copied from {old_folder}; its records now point to "
            f"{path.parent.resolve()}",
            file=sys.stderr,
        )
        return old_folder
    finally:
        connection.close()


def _create_sqlite_store(path, uri):
    if path.exists() and path.stat().st_size > 0:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path.parent}: cannot create the tracking store there ({exc.strerror})") from None
    for leftover in path.parent.glob(f".{path.name}.creating-*"):  # a builder that was killed
        try:
            if not _alive(int(leftover.name.split("-")[1])):
                leftover.unlink(missing_ok=True)
        except (ValueError, IndexError, OSError):
            continue
    building = path.with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root(uri))
        store.engine.dispose()
        try:
            os.link(building, path)  # atomic, and never over a store another process made meanwhile
        except FileExistsError:
            if path.stat().st_size == 0:  # an empty file is no store: replace it
                os.replace(building, path)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create the tracking store ({exc.strerror or exc})") from None
    finally:
        for leftover in path.parent.glob(building.name + "*"):
            leftover.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(exc):
    """Redacted before it is cut: a URL cut inside its password would no longer look like one."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


# --- operations: what a recorder runs -------------------------------------------------------------------
def _text(tags):
    """Tag values as strings: a tracking server's REST API takes nothing else (SQLite converts)."""
    return {key: str(value) for key, value in tags.items()}


def ensure_experiment(client: MlflowClient, name: str, uri: str, tags: dict[str, Any] | None = None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_root(uri))
        except MlflowException:  # another process created it first
            # created by another process a moment ago: it exists
            experiment_id = client.get_experiment_by_name(name).experiment_id  # type: ignore[union-attr]
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    for key, value in (tags or {}).items():
        client.set_experiment_tag(experiment_id, key, str(value))
    return experiment_id


def create_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str | None,
    tags: dict[str, Any],
    params: dict[str, Any],
    dataset: dict[str, Any] | None = None,
) -> str:
    """A run with its params and, when given, the data set it trains on as its input (the UI's
    Dataset column): ``dataset`` = {name, digest, source_type, source, profile}."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Param

    run = client.create_run(experiment_id, run_name=run_name, tags=_text(tags))
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    if dataset:
        entity = Dataset(
            dataset["name"],
            dataset["digest"],
            dataset["source_type"],
            dataset["source"],
            profile=json.dumps(dataset.get("profile", {})),
        )
        client.log_inputs(run.info.run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])
    return run.info.run_id


def start_run(
    client: MlflowClient,
    experiment_name: str,
    uri: str,
    run_name: str | None,
    tags: dict[str, Any],
    params: dict[str, Any],
    dataset: dict[str, Any] | None = None,
) -> str:
    """A run in the named experiment (created when missing): ``harness train`` and ``reproduce``."""
    return create_run(client, ensure_experiment(client, experiment_name, uri), run_name, tags, params, dataset)


def log_points(client: MlflowClient, run_id: str, points: Sequence[tuple[str, float, int, int]]) -> None:
    """Metric points ``(key, value, timestamp_ms, step)``, in batches MLflow accepts."""
    from mlflow.entities import Metric

    for begin in range(0, len(points), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=[Metric(*p) for p in points[begin : begin + METRICS_PER_BATCH]])


def write_artifacts(client: MlflowClient, run_id: str, artifacts: dict[str, bytes], folder: str | None = None) -> None:
    """Log ``{file name: bytes}`` as the run's artifacts (at the root, or under ``folder``) in one call."""
    import tempfile

    if not artifacts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in artifacts.items():
            (Path(tmp) / name).write_bytes(content)
        client.log_artifacts(run_id, tmp, folder)


def record_run(
    client: MlflowClient,
    run_id: str,
    points: Sequence[tuple[str, float, int, int]],
    tags: dict[str, Any],
    artifacts: dict[str, bytes],
    model: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    end: str | None = None,
) -> None:
    """A run's results, in an order that makes its final tags the proof of the rest: artifacts (and the
    MLflow model), then the params known at the end (``epochs_run``) and the curves, then the tags
    (``state`` becomes final only when everything before it is stored), then its end (``end``: a status)
    only if all of that was stored: a run never ends FINISHED without its results."""
    from mlflow.entities import Param, RunTag

    write_artifacts(client, run_id, artifacts)
    if params:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    if model is not None:
        log_model(client, run_id, artifacts, model)
    log_points(client, run_id, points)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _text(tags).items()])
    if end is not None:
        client.set_terminated(run_id, end)


def log_model(client: MlflowClient, run_id: str, artifacts: dict[str, bytes], model: dict[str, Any]) -> None:
    """The run's network as a pyfunc model named ``model`` (``harness/mlflow_model.py``: code, not a
    pickle), with a signature and an input example. ``model``: {"features": names, "example": rows}."""
    import tempfile

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    features = list(model["features"])
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in features]), outputs=Schema([ColSpec("string")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, name in (("config", "config.json"), ("weights", "weights.npz")):
            files[key] = str(Path(tmp) / name)
            Path(files[key]).write_bytes(artifacts[name])
        with _fluent(client, client.get_run(run_id).info.experiment_id):
            Model.log(
                artifact_path=None,
                name="model",
                flavor=mlflow.pyfunc,
                run_id=run_id,
                python_model=str(Path(__file__).with_name("mlflow_model.py")),
                artifacts=files,
                signature=signature,
                input_example=pd.DataFrame(model["example"], columns=features),
                pip_requirements=[f"numpy=={_version('numpy')}", f"pandas=={_version('pandas')}"],
            )


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


def end_run(client: MlflowClient, run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
    from mlflow.entities import RunTag

    if tags:
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _text(tags).items()])
    client.set_terminated(run_id, status)


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _text(tags).items()])


def parent_runs(client: MlflowClient, experiment_id: str, wanted: dict[str, tuple[Any, ...]]) -> dict[str, str]:
    """Reuse each condition's parent run (marked RUNNING again) or create it.

    ``wanted``: {condition: (known run id or None, run name, tags, params, dataset input or None)};
    returns {condition: run id}.
    A parent made by a command killed before Optuna heard of it is found by its tags, so a condition
    never gets two. Params are written once, at creation: MLflow refuses to change a logged param.
    """
    from mlflow.exceptions import MlflowException

    existing: dict[str, str] = {}
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{HARNESS_TAG}` = 'condition'",
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    ):
        condition = run.data.tags.get("condition", "")
        if run.info.lifecycle_stage != "active" or condition not in wanted:
            continue
        if _same_search(run.data.tags.get("search_id"), wanted[condition][2].get("search_id")):
            existing.setdefault(condition, run.info.run_id)
        elif run.data.tags.get("superseded") != "true":  # the parent of a search given up (journal deleted)
            set_tags(client, run.info.run_id, {"superseded": "true"})
    ids: dict[str, str] = {}
    for condition, (known, run_name, tags, params, dataset) in wanted.items():
        run_id = known if known and _active(client, known, MlflowException) else existing.get(condition)
        if run_id is None:
            ids[condition] = create_run(client, experiment_id, run_name, tags, params, dataset)
            continue
        client.update_run(run_id, status="RUNNING")
        set_tags(client, run_id, tags)
        ids[condition] = run_id
    return ids


def _same_search(tagged: str | None, wanted: str | None) -> bool:
    """A parent made before searches had ids belongs to the search Optuna calls legacy."""
    return not wanted or tagged == wanted or (tagged is None and wanted == "legacy")


def _active(client: MlflowClient, run_id: str, not_found: type[Exception]) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except not_found:
        return False


@contextmanager
def _fluent(client: MlflowClient, experiment_id: str | None = None) -> Iterator[None]:
    """MLflow's module-level functions (a model's logging, registering) aimed at ``client``'s store for
    a moment, and the process's own settings put back after (no setting outlives the call)."""
    import mlflow

    saved_uri, saved_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    saved_experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(client.tracking_uri)
    if experiment_id is not None:  # a model is made in the active experiment: the run's
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        for name, value in (("MLFLOW_TRACKING_URI", saved_env), ("MLFLOW_EXPERIMENT_ID", saved_experiment)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def has_model(client: MlflowClient, run_id: str) -> bool:
    """Whether the run logged an MLflow model (a confirmation seed may not: ``confirm.models``)."""
    run = client.get_run(run_id)
    return bool(run.outputs and run.outputs.model_outputs)


def register_model(
    client: MlflowClient, run_id: str, name: str, artifacts: dict[str, bytes] | None = None, model: Any = None
) -> str:
    """Register the run's ``model`` in the Model Registry under ``name``; returns the new version. A run
    without one logs it first from ``artifacts`` (config.json, weights.npz) and ``model``
    (``data.model_example``)."""
    import mlflow

    if artifacts is not None:
        log_model(client, run_id, artifacts, model)
    with _fluent(client):
        version = mlflow.register_model(f"runs:/{run_id}/model", name, await_registration_for=60)
    return str(version.version)


RESULT_TAG = "harness.result_digest"


def publish_result(client: MlflowClient, run_id: str, result: dict[str, Any], artifacts: dict[str, bytes]) -> str:
    """Write a condition's result onto its parent run (see ``parents``); returns the parent's id, which is
    a new run when the parent already showed another result (its trials move under the new one and the
    old one is deleted: MLflow neither changes a param nor forgets a metric's points). Written in an
    order that makes the digest tag the proof of the rest; points carry the run's start time, so a write
    repeated after a kill adds nothing twice."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.get_run(run_id)
    known = run.data.tags.get(RESULT_TAG)
    if known == result["digest"]:
        write_artifacts(client, run_id, artifacts)  # the same result; the report beside it may be new
        return run_id
    if known is not None:
        run_id = _next_generation(client, run)
        run = client.get_run(run_id)
    moment = run.info.start_time
    points = [Metric(k, v, moment, 0) for k, v in result["metrics"].items()]
    points += [Metric(key, value, moment, step) for key, value, step in result["points"]]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in result["params"].items()])
    for begin in range(0, len(points), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=points[begin : begin + METRICS_PER_BATCH])
    write_artifacts(client, run_id, artifacts)
    client.log_batch(run_id, tags=[RunTag("mlflow.note.content", result["note"]), RunTag(RESULT_TAG, result["digest"])])
    return run_id


def _next_generation(client: MlflowClient, old: Run) -> str:
    """A fresh parent with the old one's setup (params, tags), the old one's trials moved under it."""
    setup_params = {k: v for k, v in old.data.params.items() if not k.startswith("best.")}
    setup_tags = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.") and k != RESULT_TAG}
    new = create_run(client, old.info.experiment_id, old.info.run_name, setup_tags, setup_params)
    children = client.search_runs(
        [old.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{old.info.run_id}'", max_results=50000
    )
    for child in children:
        client.set_tag(child.info.run_id, "mlflow.parentRunId", new)
    client.set_terminated(old.info.run_id, "FINISHED")
    client.delete_run(old.info.run_id)
    return new


def run_dict(run: Run) -> dict[str, Any]:
    """An MLflow run as plain data (it crosses processes and becomes a row of the records table)."""
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "lifecycle_stage": run.info.lifecycle_stage,
        "artifact_uri": run.info.artifact_uri,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
    }


def study_runs(
    client: MlflowClient, study_name: str, filter_string: str = ""
) -> tuple[str | None, list[dict[str, Any]]]:
    """Every live run of a study's experiment as plain dicts: (experiment id or None, runs)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return None, []
    runs: list[dict[str, Any]]
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], filter_string=filter_string, max_results=5000, page_token=token
        )
        runs.extend(run_dict(r) for r in page)
        token = page.token
        if not token:
            return experiment.experiment_id, runs


def get_run(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The run as plain data, or a HarnessError naming the id when the store has no such run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise HarnessError(f"run {run_id!r} not found in this tracking store") from None
    data = run_dict(run)
    data["experiment_name"] = client.get_experiment(run.info.experiment_id).name
    return data


def read_artifact(client: MlflowClient, run_id: str, name: str) -> bytes | None:
    """An artifact's bytes, or None when the run has no such file."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, name, tmp)
        except (MlflowException, OSError):
            return None
        return Path(path).read_bytes() if Path(path).is_file() else None


def metric_histories(client: MlflowClient, run_id: str, keys: Iterable[str]) -> dict[str, list[tuple[int, float, int]]]:
    """{key: [(step, value, timestamp), ...]} in step order."""
    return {key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)) for key in keys}


def ping(client: MlflowClient) -> bool:
    """Nothing: answering proves the store opened (its first operation opens it)."""
    return True


OPERATIONS = {
    f.__name__: f
    for f in (
        ping,
        publish_result,
        register_model,
        ensure_experiment,
        create_run,
        start_run,
        log_points,
        write_artifacts,
        record_run,
        end_run,
        set_tags,
        parent_runs,
        study_runs,
        get_run,
        read_artifact,
        has_model,
        metric_histories,
    )
}


# --- recorders: who runs the operations -----------------------------------------------------------------
class Ref:
    """Stands for the answer of an earlier ``submit`` (a run id), so a run can be written before its
    creation has been answered."""

    def __init__(self, ticket: int) -> None:
        self.ticket = ticket


def _error_payload(exc, uri=""):
    kind = "harness" if isinstance(exc, HarnessError) else "error"
    message = str(exc) if kind == "harness" else f"{type(exc).__name__}: {_first_line(exc)}"
    if kind == "error" and any(s in message for s in FULL_DISK):
        path = sqlite_path(uri)
        return "disk", disk_full_message(path.parent if path else f"the tracking store {uri}", _first_line(exc))
    if kind == "error" and any(s in message for s in SERVER_AWAY):
        from .outages import outage_seconds

        message = (
            f"the MLflow tracking server did not answer within MLflow's retries (about {outage_seconds():.0f} s; "
            f"{message[:200]}); run the same command again once it answers"
        )
    return kind, message


SERVER_AWAY = ("Max retries exceeded", "too many 5", "Connection refused", "ConnectionError")
"""What MLflow's HTTP client says when the tracking server is away (down, restarting, its database down)."""


def _raise(payload):
    kind, message = payload
    raise {"harness": HarnessError, "disk": DiskFullError}.get(kind, RecordingError)(message)


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

    It imports mlflow at once and opens the store at its first operation. It ignores Ctrl-C (the caller
    ends its runs as KILLED through it first), and ends as soon as its parent is gone: a watchdog
    thread checks, because the main thread may be blocked reading a message its dying parent never
    finished writing.
    """

    def __init__(self, uri: str) -> None:
        import multiprocessing

        super().__init__()
        context = multiprocessing.get_context("spawn")
        self.uri = uri
        self._requests, self._replies = context.Queue(), context.Queue()
        self._process = context.Process(
            target=_recorder_main,
            args=(uri, self._requests, self._replies, os.getpid()),
            name="mlflow-recorder",
            daemon=True,
        )
        from .processes import start

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


def _watch_parent(parent):
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _recorder_main(uri, requests, replies, parent):
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watchdog").start()
    from mlflow.store.tracking import sqlalchemy_store  # noqa: F401 - the slow import, done early

    client, refs, broken = None, {}, None
    busy: dict[str, float] = {}  # seconds spent per operation: where a sweep's recording time goes
    while True:
        ticket, operation, args = requests.get()
        if operation in ("stop", "busy"):
            replies.put((ticket, "ok", dict(busy)))
            if operation == "stop":
                return
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
