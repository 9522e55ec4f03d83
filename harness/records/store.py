"""Where the tracking store is and how it is opened: the URI, the server probe, a local SQLite store
created whole or not at all, and a store moved to another folder pointed at where it is now.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..common.errors import HarnessError
from ..common.urls import redact, split_credentials

if TYPE_CHECKING:
    from mlflow import MlflowClient


STORE_DIR = "mlruns"

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
    from ..common.outages import OutageError, Patience

    if patience <= 0:
        return _probe_server(uri, timeout)
    try:
        Patience(f"the MLflow tracking server {redact(uri)}", _unreachable, patience).call(_probe_server, uri, timeout)
    except OutageError as exc:  # it never answered: the URI given is what to check (bad input, not a loss mid-run)
        raise HarnessError(str(exc)) from None


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
        if exc.code in (502, 503, 504):  # the server is up, its database (a restart) or a proxy is not
            raise _Unreachable(
                f"tracking URI {redact(uri)}: the MLflow server answered {exc.code} {exc.reason}"
            ) from None
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


def check_exists(uri: str, command: str) -> None:
    """A command that only reads (compare, reproduce, predict, export, load_study) never creates a store:
    opening a local SQLite path that does not exist would make an empty one (954 KB) before failing."""
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise HarnessError(
            f"{command}: no tracking store at {path}; run `harness sweep` or `harness train` first, "
            "or give --tracking-uri the store that holds the runs"
        )


# --- opening it ---------------------------------------------------------------------------------------
def open_client(uri: str) -> MlflowClient:
    """An MlflowClient on ``uri``. A local SQLite store is created whole or not at all: its schema is
    built under a temporary name and linked into place, so a kill in the 3 s of schema creation can
    never leave a half-made store behind; a half-made or damaged one gets a one-line diagnosis."""
    patience = float(os.environ.get("HARNESS_OUTAGE_SECONDS") or 0)  # set by a sweep
    check_server(uri, patience=patience)
    if uri.startswith("postgresql") and patience <= 0:
        from ..common.databases import check_reachable

        check_reachable(uri)  # MLflow would retry a database that does not answer for 100 s, then trace back
    if os.environ.get("HARNESS_OUTAGE_SECONDS"):  # a sweep: MLflow's own retries end within the same bound
        from ..common.outages import http_retries

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
                        "UPDATE tags SET value = ? || substr(value, ?) "
                        "WHERE key IN ('optuna_storage', 'harness.optuna_storage') AND substr(value, 1, ?) = ?",
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
    _remove_killed_builders(path)  # also when the store exists: one killed just after linking it into place
    if path.exists() and path.stat().st_size > 0:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path.parent}: cannot create the tracking store there ({exc.strerror})") from None
    building = path.with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        if not _from_template(building, uri):
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(f"sqlite:///{building}", artifact_root(uri))
            store.engine.dispose()
            _keep_template(building)
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


def _remove_killed_builders(path):
    """The files of builders that were killed (``.mlflow.db.creating-PID-...``, a whole store, a half-made
    one, or a second name of the store they had just linked into place)."""
    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        try:
            if not _alive(int(leftover.name.split("-")[1])):
                leftover.unlink(missing_ok=True)
        except (ValueError, IndexError, OSError):
            continue


def store_template() -> Path | None:
    """An empty store kept in the user's cache, one per MLflow version: MLflow builds a new store's schema
    by running its whole migration history (about 1 s here, 3 s on a loaded machine); a copy takes 20 ms.
    None when there is no cache folder to keep it in (no home), or when this MLflow version has no shipped
    fingerprint to check a template against (``fingerprints``): then MLflow builds every store."""
    import mlflow

    from .fingerprints import expected

    if expected() is None:
        return None
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:
        return None
    return cache / "harness" / f"mlflow-{mlflow.__version__}-empty-store.db"


TEMPLATE_LIMIT = 64 * 2**20
"""Bytes: an empty store is about 1 MB; a larger template is not copied at all."""


def _from_template(building: Path, uri: str) -> bool:
    """The template copied to ``building`` with its default experiment pointed at this store's artifacts;
    False (and nothing left at ``building``) when there is no usable template. The copy, not the template
    (which could change meanwhile), must be what MLflow builds: anyone who can write the cache could
    otherwise plant a trigger, a view or a row in every new store (a trigger rewrote a logged metric)."""
    import shutil
    import sqlite3
    import time

    from .fingerprints import matches

    template = store_template()
    if template is None or not template.is_file():
        return False
    try:
        if template.stat().st_size > TEMPLATE_LIMIT:
            raise sqlite3.DatabaseError("too large")
        shutil.copyfile(template, building)
        connection = sqlite3.connect(str(building))
        try:
            with connection:
                if not matches(connection):
                    raise sqlite3.DatabaseError("not the store MLflow builds")
                now = int(time.time() * 1000)
                connection.execute(
                    "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                    "WHERE experiment_id = 0",
                    (f"{artifact_root(uri)}/0", now, now),
                )
        finally:
            connection.close()
        return True
    except sqlite3.Error:  # damaged or changed: built the slow way, and the template replaced
        print(
            f"harness: the store template {template} is not the empty store MLflow builds (damaged or "
            "changed); not used, and replaced",
            file=sys.stderr,
        )
    except OSError:  # unreadable: built the slow way
        pass
    building.unlink(missing_ok=True)
    return False


def _keep_template(built: Path) -> None:
    """A store just built, kept as the template when it passes the check a copy must pass (else every
    copy would be refused); best effort, written whole or not at all."""
    import shutil
    import sqlite3

    from .fingerprints import matches

    template = store_template()
    if template is None:
        return
    partial = template.with_name(f".{template.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        for leftover in template.parent.glob(f".{template.name}.*"):  # a writer that was killed
            pid = leftover.name[len(template.name) + 2 :].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                leftover.unlink(missing_ok=True)
        shutil.copyfile(built, partial)
        connection = sqlite3.connect(str(partial))
        try:
            good = matches(connection)
        finally:
            connection.close()
        if good:
            os.replace(partial, template)
    except (OSError, sqlite3.Error):
        pass
    finally:
        partial.unlink(missing_ok=True)


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
