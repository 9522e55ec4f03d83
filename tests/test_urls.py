"""Secrets reach nothing the harness prints or stores: URLs' passwords and secret parameters, the
command line it records, and the secrets it was given in its environment."""

import os
from pathlib import Path

import pytest

from harness.common.urls import redact
from harness.records.provenance import source_tags
from tests.helpers import harness, write_study

SECRET = "SECRETPW123"


@pytest.fixture
def no_secrets(monkeypatch):
    """An environment and a command line that hold no secret of their own."""
    for name in ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HARNESS_OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["harness"])


@pytest.mark.parametrize(
    "text,expected",
    [
        ("postgresql+psycopg://bob:s3cr@t@db:5432/x", "postgresql+psycopg://bob:***@db:5432/x"),
        ("postgresql://bob:pa/ss@db/x", "postgresql://bob:***@db/x"),
        ("redis://:hunter22@cache:6379", "redis://:***@cache:6379"),
        ("'postgresql://u:PW9999@h/db': cannot open", "'postgresql://u:***@h/db': cannot open"),
        ("postgresql+psycopg://u@h/db?password=PW12", "postgresql+psycopg://u@h/db?password=***"),
        ("postgresql://u@h/db?PassWord=PW12&sslmode=require", "postgresql://u@h/db?PassWord=***&sslmode=require"),
        (
            "postgresql://u@h/db?sslpassword=K3Y&passfile=/home/u/.pgpass&sslkey=/k.pem",
            "postgresql://u@h/db?sslpassword=***&passfile=/home/u/.pgpass&sslkey=/k.pem",
        ),
        (
            "https://h/x?access_token=a1&X-Amz-Signature=b2&api_key=c3&Secret=d4&TOKEN=e5&apikey=f6",
            "https://h/x?access_token=***&X-Amz-Signature=***&api_key=***&Secret=***&TOKEN=***&apikey=***",
        ),
        ("host=db user=u password=PW12 dbname=x", "host=db user=u password=*** dbname=x"),
    ],
)
def test_every_form_of_secret_in_a_url_is_hidden(no_secrets, text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5000",
        "postgresql://bob@db/x",
        "journal:/tmp/mlruns/optuna/tiny.journal",
        "sqlite:////tmp/mlruns/mlflow.db",
        "postgresql://u@h/db?sslmode=require&passfile=/p&sslcert=/c.pem",
        "lr=0.1 tokens: 3, best password-free run",
    ],
)
def test_what_holds_no_secret_is_left_as_it_is(no_secrets, text):
    assert redact(text) == text


def test_secrets_from_the_environment_are_hidden_wherever_they_appear(no_secrets, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "envpass-1")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "trackpass-2")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-3333")
    monkeypatch.setenv("HARNESS_OPTUNA_STORAGE", "postgresql+psycopg://u:storepass%404@h/db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:5000/?token=uritoken5")
    said = redact("envpass-1 trackpass-2 tok-3333 storepass@4 storepass%404 uritoken5 and more")
    assert said == "*** *** *** *** *** *** and more"
    monkeypatch.setenv("PGPASSWORD", "pw")  # too short to tell from ordinary words: hidden in URLs only
    assert redact("pwd: pw") == "pwd: pw"


def test_secrets_given_on_the_command_line_are_hidden_wherever_they_appear(no_secrets, monkeypatch):
    monkeypatch.setattr("sys.argv", ["harness", "sweep", "s.toml", "--storage", "postgresql://u:pa ss word@h/db"])
    assert redact("password authentication failed for 'pa ss word'") == "password authentication failed for '***'"


def test_the_recorded_command_line_hides_secrets(no_secrets):
    argv = ["harness", "sweep", "s.toml", "--storage", "postgresql://u:pa ss word@h/db?token=T0KEN"]
    argv += ["--tracking-uri=http://alice:wonder1and@h:5000"]
    recorded = source_tags(argv)["mlflow.source.name"]
    assert "pa ss" not in recorded and "T0KEN" not in recorded and "wonder1and" not in recorded, recorded
    assert recorded.startswith("harness sweep s.toml --storage 'postgresql://u:***@h/db?token=***'"), recorded
    assert "--tracking-uri=http://alice:***@h:5000" in recorded


@pytest.mark.parametrize("cut", ["tracking", "outages"])
def test_an_error_cut_to_one_short_line_is_redacted_before_it_is_cut(no_secrets, cut):
    """Cut first, a URL cut inside its password no longer looks like a URL: half the password showed."""
    from harness.common import outages
    from harness.records import store as tracking

    width = 300 if cut == "tracking" else 160
    url = "postgresql://u:ABCDEFGHIJKLMNOPQRST@db/x"
    error = RuntimeError("x" * (width - len("postgresql://u:") - 8) + url)
    said = tracking._first_line(error) if cut == "tracking" else outages._reason(error)
    assert "ABCDEFGH" not in said and "postgresql://u:***@db/x" in said, said


def _leaks(folder, secrets):
    """Files under ``folder`` whose name or bytes hold one of ``secrets``."""
    found = []
    for path in Path(folder).rglob("*"):
        content = path.read_bytes() if path.is_file() else b""
        if any(s in path.name or s.encode() in content for s in secrets):
            found.append(str(path))
    return found


@pytest.mark.e2e
def test_a_sweep_and_its_comparison_leave_no_secret_in_output_tags_or_files(tmp_path):
    """The storage URL carries a password SQLite ignores; the environment carries others."""
    from mlflow import MlflowClient

    env = {"PGPASSWORD": "ENVSECRET456", "MLFLOW_TRACKING_TOKEN": "TOKENSECRET789"}
    env.update({"HARNESS_OPTUNA_STORAGE": "", "MLFLOW_TRACKING_URI": "", "MLFLOW_TRACKING_PASSWORD": ""})
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}?password={SECRET}"
    study = write_study(tmp_path)
    flags = ["--trials", "2", "--epochs", "3", "--confirm-seeds", "2", "--storage", storage]
    swept = harness("sweep", study, *flags, cwd=tmp_path, env=env, check=True)
    compared = harness("compare", "tiny", "--storage", storage, cwd=tmp_path, env=env, check=True)
    secrets = (SECRET, "ENVSECRET456", "TOKENSECRET789")
    for said in (swept.stdout, swept.stderr, compared.stdout, compared.stderr):
        assert not [s for s in secrets if s in said], said
    assert "password=***" in swept.stdout  # the summary's header names the storage, hidden
    assert _leaks(tmp_path, secrets) == []
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("harness.kind") == "condition")
    assert parent.data.tags["harness.optuna_storage"] == storage.replace(SECRET, "***")
    assert all("password=***" in r.data.tags["mlflow.source.name"] for r in runs)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv,env",
    [
        (["sweep", "STUDY", "--storage", f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"], {}),
        (["sweep", "STUDY"], {"HARNESS_OPTUNA_STORAGE": f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db"}),
        (["compare", "tiny", "--tracking-uri", f"postgresql+psycopg://u@127.0.0.1:1/db?sslpassword={SECRET}"], {}),
        (["train", "--epochs", "1", "--tracking-uri", f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db"], {}),
    ],
)
def test_a_database_that_does_not_answer_is_one_line_without_its_password(tmp_path, argv, env):
    argv = [write_study(tmp_path) if word == "STUDY" else word for word in argv]
    done = harness(*argv, cwd=tmp_path, env={"HARNESS_OUTAGE_SECONDS": "0", **env})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]
    assert SECRET not in done.stderr + done.stdout and "cannot" in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "mlruns" / "mlflow.db")
