"""One process at a time prepares a sweep, across processes and machines.

Several ``harness sweep`` commands may start at once on one study. Creating a fresh database's schema,
the Optuna studies, the confirmation seeds and the MLflow parent runs from two of them at the same
moment crashes or duplicates work (measured: fresh SQLite and PostgreSQL schemas fail, a fresh MLflow
SQLite file is left unusable). So the preparation runs under a lock that the stores themselves
provide: PostgreSQL's advisory lock for a PostgreSQL storage (it spans machines), a file lock beside
a local file (journal or SQLite) otherwise. A tracking server needs none: it serialises its own writes.
"""

import fcntl
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..common.databases import connect, engine_for

ADVISORY_KEY = 0x6861726E  # "harn": one lock for every harness preparation in that database


def _local_file(url):
    """The local file behind a storage or tracking URL, or None for servers and databases."""
    if url.startswith("journal:"):
        return Path(url[len("journal:") :])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :].split("?", 1)[0])  # options are not part of the name
    return None


@contextmanager
def _file_lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    # not "<file>.lock": Optuna's journal backend holds that name for its own lock
    with open(path.with_name(path.name + ".prepare-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(url):
    import sqlalchemy

    engine = engine_for(url)
    try:
        with connect(engine, url) as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
    finally:
        engine.dispose()


@contextmanager
def preparing(*urls):
    """Hold every lock the given storage and tracking URLs call for (always in the same order)."""
    with ExitStack() as stack:
        for url in sorted({u for u in urls if u}):
            if url.startswith("postgresql"):
                stack.enter_context(_advisory_lock(url))
            elif (path := _local_file(url)) is not None:
                stack.enter_context(_file_lock(path))
        yield
