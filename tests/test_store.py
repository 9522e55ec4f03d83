"""A new local store is copied from an empty one kept in the user's cache (MLflow's own schema build
runs its whole migration history, about 1 s); the copy is this store's, it must be what MLflow builds (the
fingerprint shipped in harness/records/fingerprints.py), and a bad template is rebuilt."""

import sqlite3

import mlflow
import pytest

from harness.records import fingerprints, store


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _schema(path):
    """Every table and index with its clauses as a set: MLflow's migrations write a table's CHECK
    constraints in an order that varies from one build to the next."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return sorted(
        (kind, name, sorted(c.strip().rstrip(",") for c in (sql or "").splitlines())) for kind, name, sql in rows
    )


def _open(folder):
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = store.open_client(uri)
    return client, uri


def test_the_first_store_leaves_a_template_and_the_next_is_a_copy_that_is_its_own(tmp_path, cache, capsys):
    first, _ = _open(tmp_path / "a")
    template = store.store_template()
    assert template.is_file() and str(template).startswith(str(cache))
    client, uri = _open(tmp_path / "b")
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "a" / "mlflow.db")
    default = client.get_experiment("0")
    assert default.artifact_location == f"{store.artifact_root(uri)}/0"  # not the first store's folder
    experiment = client.create_experiment("e", artifact_location=store.artifact_root(uri))
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert "moved or copied" not in capsys.readouterr().err
    assert not first.search_runs(["0"]) and not list(template.parent.glob(".*"))  # nothing of b in a


@pytest.mark.parametrize("damage", ["garbage", "runs"])
def test_a_damaged_or_used_template_is_not_copied_but_rebuilt(tmp_path, cache, damage):
    _open(tmp_path / "a")
    template = store.store_template()
    if damage == "garbage":
        template.write_bytes(b"not a database" * 100)
    else:  # a template that somehow holds a run: never handed out as an empty store
        client, uri = _open(tmp_path / "used")
        run = client.create_run("0")
        template.write_bytes((tmp_path / "used" / "mlflow.db").read_bytes())
        assert run.info.run_id
    client, _ = _open(tmp_path / "b")
    assert client.search_runs(["0"]) == []
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "a" / "mlflow.db")
    assert _schema(template) == _schema(tmp_path / "a" / "mlflow.db")  # replaced by a good one
    with sqlite3.connect(template) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


POISONS = {
    "trigger": "CREATE TRIGGER planted AFTER INSERT ON latest_metrics BEGIN UPDATE latest_metrics SET value = 0.7333 "
    "WHERE run_uuid = NEW.run_uuid AND key = NEW.key; END",
    "view": "CREATE VIEW planted AS SELECT run_uuid, key, 0.7333 AS value FROM latest_metrics",
    "table": "CREATE TABLE planted (x INTEGER)",
    "row": "INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) "
    "VALUES (1, 'planted', 'active', 'default')",
    "root page": "PRAGMA writable_schema = ON; UPDATE sqlite_master SET rootpage = "
    "(SELECT rootpage FROM sqlite_master WHERE name = 'metrics') WHERE name = 'latest_metrics'",
    "wal": "PRAGMA journal_mode = WAL",
}


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_template_with_anything_a_fresh_store_lacks_is_refused_and_replaced(tmp_path, cache, poison, capsys):
    """Whoever can write the cache must not change what every new store records: a trigger travelling in
    the template rewrote a logged test_accuracy of 0.999 as 0.7333."""
    _open(tmp_path / "a")
    template = store.store_template()
    connection = sqlite3.connect(template)
    connection.executescript(POISONS[poison])
    connection.close()
    client, uri = _open(tmp_path / "b")
    assert "is not the empty store MLflow builds" in capsys.readouterr().err
    assert _schema(tmp_path / "b" / "mlflow.db") == _schema(tmp_path / "a" / "mlflow.db")  # no trigger, no view
    assert [e.name for e in client.search_experiments()] == ["Default"]
    run = client.create_run(client.create_experiment("e", artifact_location=store.artifact_root(uri)))
    client.log_metric(run.info.run_id, "test_accuracy", 0.999)
    assert client.get_run(run.info.run_id).data.metrics == {"test_accuracy": 0.999}
    for path in (template, tmp_path / "b" / "mlflow.db"):
        connection = sqlite3.connect(path)
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        if path == template:  # replaced by a good one
            assert fingerprints.matches(connection)
        connection.close()
    _open(tmp_path / "c")
    assert "store template" not in capsys.readouterr().err  # the new one is used


def test_the_shipped_fingerprint_is_that_of_the_store_mlflow_builds(tmp_path):
    """The trusted hashes come with the package, not from the cache; an MLflow upgrade must bring its own."""
    shipped = fingerprints.FINGERPRINTS.get(mlflow.__version__)
    assert fingerprints.built(tmp_path) == shipped, (
        f"MLflow {mlflow.__version__} (SQLite {sqlite3.sqlite_version}) builds a store other than the shipped "
        "fingerprint says: print the entry with `.venv/bin/python -m harness.records.fingerprints` and put it "
        "in FINGERPRINTS (harness/records/fingerprints.py)"
    )


def test_the_fingerprint_ignores_the_order_of_table_constraints_only():
    """MLflow's builds order a table's CHECK constraints differently; the order of its columns counts."""
    sql = "CREATE TABLE t (\n\ta INTEGER, b VARCHAR(5) DEFAULT 'x,y', \n\tCHECK (a IN (1, 2)), \n\tUNIQUE (a, b)\n)"
    swapped = "CREATE TABLE t (\n\ta INTEGER, b VARCHAR(5) DEFAULT 'x,y', \n\tUNIQUE (a, b), \n\tCHECK (a IN (1, 2))\n)"
    columns = "CREATE TABLE t (\n\tb VARCHAR(5) DEFAULT 'x,y', a INTEGER, \n\tCHECK (a IN (1, 2)), \n\tUNIQUE (a, b)\n)"
    assert fingerprints.normalized(sql) == fingerprints.normalized(swapped)
    assert fingerprints.normalized(sql) != fingerprints.normalized(columns)
    trigger = "CREATE TRIGGER t AFTER INSERT ON a BEGIN\nUPDATE a SET x = 1;\nUPDATE a SET y = 2;\nEND"
    assert fingerprints.normalized(trigger) == trigger


def test_an_mlflow_without_a_shipped_fingerprint_builds_every_store_and_keeps_no_template(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(fingerprints, "FINGERPRINTS", {})
    assert store.store_template() is None
    client, _ = _open(tmp_path / "a")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert not cache.exists()
