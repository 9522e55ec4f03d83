"""A new local store is copied from an empty one kept in the user's cache (MLflow's own schema build
runs its whole migration history, about 1 s); the copy is this store's, and a bad template is rebuilt."""

import sqlite3

import pytest

from harness.records import store


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
