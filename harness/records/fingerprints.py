"""What a new store built by MLflow holds, as a hash per MLflow version shipped with the package: the empty
store kept in the user's cache (``store.store_template``) is copied into a new store only when the copy
hashes the same. Whoever can write that template can write any file beside it, so the trusted hash lives
here, not in the cache. After an MLflow upgrade in requirements.lock, print the new entry with

    .venv/bin/python -m harness.records.fingerprints

and add it to ``FINGERPRINTS`` (tests/test_store.py fails until then; meanwhile MLflow builds every store).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

FINGERPRINTS = {
    "3.17.2": (
        "810acf21249c63f50ccbea2107d8c58f51853e9476e4b307fa322a73d5cc4998",
        "d78a10d856e41658f4b904514fdf7defac577b59826f225129f3b31d933cf0ce",
    ),
}
"""MLflow version -> (schema, contents) of the store its SqlAlchemyStore builds (the same with SQLite 3.40.1
and 3.51.1)."""

REWRITTEN = {"experiments": ("artifact_location", "creation_time", "last_update_time")}
"""What a copy rewrites (the default experiment's artifact folder and times), so what no hash holds."""

PRAGMAS = ("encoding", "journal_mode", "user_version", "application_id")
"""Settings the file carries that change how it is written (WAL) or read. The page size and auto-vacuum
depend on how SQLite was compiled and change nothing recorded."""

CONSTRAINTS = ("CONSTRAINT ", "CHECK ", "CHECK(", "FOREIGN KEY", "PRIMARY KEY", "UNIQUE ", "UNIQUE(")


def expected() -> tuple[str, str] | None:
    """The shipped hashes for the installed MLflow; None for a version shipped without them."""
    import mlflow

    return FINGERPRINTS.get(mlflow.__version__)


def matches(connection: sqlite3.Connection) -> bool:
    """Whether the store open on ``connection`` is, but for ``REWRITTEN``, the one MLflow builds: no trigger,
    view, table, index or row more or less, and a sound file (``integrity_check``: every page used once and
    every index entry a row's, which the schema alone does not say: a table's root page pointed at
    another's passes it). The file is checked and its tables read only once its schema matched; code in the
    schema runs only where SQLite deems it harmless (``trusted_schema``)."""
    shipped = expected()
    if shipped is None:
        return False
    connection.execute("PRAGMA trusted_schema = OFF")
    if schema(connection) != shipped[0]:
        return False
    return connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)] and contents(connection) == shipped[1]


def schema(connection: sqlite3.Connection) -> str:
    """The hash of every sqlite_master row (type, name, table, SQL) and of the file's ``PRAGMAS``."""
    settings = [connection.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS]
    rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return _digest([settings, sorted([kind, name, table, normalized(sql)] for kind, name, table, sql in rows)])


def contents(connection: sqlite3.Connection) -> str:
    """The hash of every row of every table, ``REWRITTEN`` columns left out; values keep their type."""
    tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = {}
    for table in sorted(tables):
        cursor = connection.execute('SELECT * FROM "{}"'.format(table.replace('"', '""')))
        names = [column[0] for column in cursor.description]
        skip = {names.index(column) for column in REWRITTEN.get(table, ()) if column in names}
        found[table] = sorted(repr(tuple(v for i, v in enumerate(row) if i not in skip)) for row in cursor)
    return _digest(found)


def normalized(sql: str | None) -> str:
    """A CREATE TABLE with its table constraints sorted, its columns kept in order; other SQL as it is.
    MLflow's migrations write a table's CHECK constraints in an order that varies between builds."""
    if not sql or not sql.startswith("CREATE TABLE"):
        return sql or ""
    head, _, rest = sql.partition("(")
    body, _, tail = rest.rpartition(")")
    parts = _clauses(body)
    columns = [part for part in parts if not part.upper().startswith(CONSTRAINTS)]
    constraints = sorted(part for part in parts if part.upper().startswith(CONSTRAINTS))
    return f"{head}({', '.join(columns + constraints)}){tail}"


def _clauses(body: str) -> list[str]:
    """The comma-separated clauses of a table's body: commas inside parentheses or quotes split nothing."""
    found, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(body):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`[":
            quote = "]" if char == "[" else char
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "," and depth == 0:
            found.append(body[start:i].strip())
            start = i + 1
    return [*found, body[start:].strip()]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=True).encode()).hexdigest()


def built(folder: Path) -> tuple[str, str]:
    """The hashes of a store MLflow builds now in ``folder`` (as ``store`` builds one without a template)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", (folder / "artifacts").resolve().as_uri())
    store.engine.dispose()
    connection = sqlite3.connect(str(path))
    try:
        return schema(connection), contents(connection)
    finally:
        connection.close()


def print_fingerprint() -> None:
    """Print the ``FINGERPRINTS`` entry for the installed MLflow."""
    import logging
    import tempfile

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="harness-fingerprint-") as folder:
        found = built(Path(folder))
    print(f'    "{mlflow.__version__}": (\n        "{found[0]}",\n        "{found[1]}",\n    ),')


if __name__ == "__main__":
    print_fingerprint()
