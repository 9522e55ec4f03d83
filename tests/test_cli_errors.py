"""Bad input of every kind gets one line naming what is wrong, exit status 2, and no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from tests.conftest import TINY_STUDY
from tests.helpers import ROOT, audit_sweep, harness, journal, json_summary, write_study

pytestmark = pytest.mark.e2e


def one_line(capsys, code, argv, expected):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    return err


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One train run on iris, for the tampering cases."""
    folder = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "train",
            "--dataset",
            "iris",
            "--epochs",
            "2",
            "--hidden",
            "4",
            "--tracking-uri",
            uri,
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    run_id = json.loads(code.stdout)["run_id"]
    artifacts = folder / "artifacts" / run_id / "artifacts"
    return {"uri": uri, "run_id": run_id, "artifacts": artifacts, "folder": folder}


def test_study_or_config_files_that_are_not_text(workdir, capsys):
    one_line(capsys, 2, ["sweep", str(workdir)], "is a directory, not a TOML file")
    binary = workdir / "binary.toml"
    binary.write_bytes(b'name = "x"\n\xff\xfe\x00garbage')
    one_line(capsys, 2, ["sweep", str(binary)], "not UTF-8 text")
    one_line(capsys, 2, ["train", "--config", str(workdir)], "is a directory, not a TOML file")
    one_line(capsys, 2, ["train", "--config", str(binary)], "not UTF-8 text")
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--tracking-uri", "ftp://x/y"], "scheme 'ftp' is not supported"),
        (["--experiment", ""], "--experiment = '' is not allowed"),
        (["--hidden", "3000000000"], "GiB for its weights alone"),
        (["--dataset", "classification", "--n-samples", "10000000000000"], "n_samples = 10000000000000"),
        (["--seed", "-1"], "seed = -1 is not allowed"),
        (["--lr", "nan"], "lr = nan is not allowed; must be a finite number"),
    ],
)
def test_train_flags_that_cannot_run(workdir, capsys, argv, expected):
    one_line(capsys, 2, ["train", "--epochs", "1", *argv], expected)
    assert not (workdir / "mlruns").exists()


def test_csv_problems(workdir, capsys):
    one_line(capsys, 2, ["train", "--csv", str(workdir)], "is a directory, not a CSV file")
    bad = workdir / "inf.csv"
    bad.write_text("a,b,label\n" + "1,inf,0\n2,3,1\n3,4,0\n4,5,1\n" * 5)
    one_line(capsys, 2, ["train", "--csv", str(bad)], "holds an infinite value")
    huge = workdir / "huge.csv"  # finite, but the scaling's variance overflows: the run was called diverged
    huge.write_text("a,b,label\n" + "".join(f"{v},{i},{i % 2}\n" for i, v in enumerate(["1e308", "-1e308"] * 10)))
    one_line(capsys, 2, ["train", "--csv", str(huge)], "column 'a' cannot be scaled: its values reach 1e+308")
    assert not (workdir / "mlruns").exists()


def test_a_study_nested_too_deeply_or_too_large_is_one_short_line(workdir, capsys):
    deep = workdir / "deep.toml"
    deep.write_text("name = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for argv in (["sweep", str(deep)], ["train", "--config", str(deep)]):
        one_line(capsys, 2, argv, "nests arrays or tables too deeply to read")
    listed = write_study(
        workdir, TINY_STUDY.replace("[conditions]", f"[conditions]\nwarmup_epochs = {list(range(100_000))}")
    )
    err = one_line(capsys, 2, ["sweep", listed], "makes 100,000 x 2 = 200,000 conditions; at most 1,000")
    assert len(err) < 400, f"{len(err)} characters"
    repeated = write_study(
        workdir, TINY_STUDY.replace("[conditions]", f"[conditions]\nwarmup_epochs = {[1] * 100_000}")
    )
    err = one_line(capsys, 2, ["sweep", repeated], "values must differ")
    assert len(err) < 400, f"{len(err)} characters"
    assert not (workdir / "mlruns").exists()


def test_damaged_optuna_journals(workdir, capsys):
    study = write_study(workdir, TINY_STUDY.replace("trials = 4", "trials = 1"))
    flags = ["--epochs", "2", "--confirm-seeds", "1"]
    harness("sweep", study, *flags, cwd=workdir, check=True)
    path = journal(workdir)
    path.write_bytes(path.read_bytes()[:-15])  # a record torn by a writer killed mid-write: mended, resumed
    mended = harness("sweep", study, *flags, "--json", cwd=workdir, check=True)
    assert "removed an unfinished last record" in mended.stderr
    assert audit_sweep(workdir, study, json_summary(mended.stdout), {"epochs": 2, "confirm_seeds": 1}) == []
    path.write_bytes(path.read_bytes() + b"\x00\x01garbage{{{\n")
    one_line(capsys, 2, ["sweep", study, *flags], "is not an Optuna journal record")


def test_a_malformed_tracking_store(workdir, capsys):
    store = workdir / "mlruns"
    store.mkdir()
    (store / "mlflow.db").write_bytes(os.urandom(4096))
    err = one_line(capsys, 2, ["sweep", write_study(workdir)], "not a usable MLflow store")
    assert "mv " in err
    one_line(capsys, 2, ["compare", "tiny"], "not a usable MLflow store")
    one_line(capsys, 2, ["train", "--epochs", "1"], "not a usable MLflow store")


@pytest.mark.parametrize(
    "name,tamper,expected",
    [
        (
            "weights.npz",
            lambda p: np.savez(p, weight_0=np.array([object()], dtype=object)),
            "not a readable weights file",
        ),
        ("weights.npz", lambda p: p.write_bytes(b"not a zip"), "not a readable weights file"),
        (
            "weights.npz",
            lambda p: np.savez(p, weight_0=np.ones((4, 3)), bias_0=np.ones(2), classes=np.array(["a"])),
            "layer 0 has inconsistent shapes",
        ),
        ("config.json", lambda p: p.write_text("{not json"), "not valid JSON"),
        ("config.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
        ("config.json", lambda p: p.write_text('{"lr": -1}'), "lr = -1.0 is not allowed"),
    ],
)
def test_tampered_artifacts(logged, capsys, tmp_path, name, tamper, expected):
    path = logged["artifacts"] / name
    saved = path.read_bytes()
    rows = tmp_path / "rows.csv"
    rows.write_text("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n1,2,3,4\n")
    try:
        tamper(path)
        if path.suffix == ".npz" and not path.exists():
            Path(str(path) + ".npz").rename(path)
        one_line(capsys, 2, ["predict", logged["run_id"], str(rows), "--tracking-uri", logged["uri"]], expected)
        if name == "config.json":
            one_line(capsys, 2, ["reproduce", logged["run_id"], "--tracking-uri", logged["uri"]], expected)
    finally:
        path.write_bytes(saved)


def test_a_postgresql_url_without_the_driver_names_the_extra(workdir):
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
        "from harness.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    for argv in (
        ["train", "--tracking-uri", "postgresql+psycopg://u@127.0.0.1:9/db"],
        ["sweep", write_study(workdir), "--storage", "postgresql+psycopg://u@127.0.0.1:9/db"],
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "pip install -e '.[distributed]'" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only mount needs root (permissions do not stop root)")
def test_a_read_only_store(tmp_path, capsys):
    store = tmp_path / "ro"
    store.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(store)]).returncode:
        pytest.skip("mount -t tmpfs is not allowed here")
    try:
        uri = f"sqlite:///{store / 'mlflow.db'}"
        study = write_study(tmp_path, TINY_STUDY.replace("trials = 4", "trials = 1"))
        assert (
            main(
                [
                    "sweep",
                    study,
                    "--epochs",
                    "1",
                    "--confirm-seeds",
                    "1",
                    "--tracking-uri",
                    uri,
                    "--storage",
                    str(store / "tiny.journal"),
                ]
            )
            == 0
        )
        assert main(["train", "--dataset", "iris", "--epochs", "1", "--tracking-uri", uri, "--json"]) == 0
        run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
        assert subprocess.run(["mount", "-o", "remount,ro", str(store)]).returncode == 0
        flags = ["--tracking-uri", uri]
        one_line(capsys, 2, ["sweep", study, "--storage", str(store / "tiny.journal"), *flags], "read-only")
        one_line(capsys, 2, ["train", "--epochs", "1", *flags], "read-only")
        one_line(capsys, 2, ["compare", "tiny", "--out", str(tmp_path / "r"), *flags], "read-only")
        one_line(capsys, 2, ["reproduce", run_id, *flags], "read-only")
    finally:
        subprocess.run(["umount", "-l", str(store)])


def test_reproduce_uses_a_csv_only_if_it_is_the_data_the_run_saw(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    data.write_text("a,b,label\n" + "".join(f"{rng.normal()},{rng.normal()},{i % 2}\n" for i in range(60)))
    assert main(["train", "--csv", str(data), "--epochs", "2", "--tracking-uri", uri, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    data.write_text("secret,words,here\nthe password is hunter2,x,y\n")  # the path now holds something else
    err = one_line(capsys, 2, ["reproduce", run_id, "--tracking-uri", uri], "cannot be loaded as the run loaded it")
    assert "hunter2" not in err and "secret" not in err
    data.write_text("a,b,label\n" + "".join(f"{rng.normal()},{rng.normal()},{i % 2}\n" for i in range(60)))
    err = one_line(capsys, 2, ["reproduce", run_id, "--tracking-uri", uri], "is not the data this run was trained on")


def test_compare_opens_no_storage_that_a_tag_names_outside_the_store(workdir, capsys):
    study = write_study(workdir, TINY_STUDY.replace("trials = 4", "trials = 1"))
    assert main(["sweep", study, "--epochs", "1", "--confirm-seeds", "1"]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    elsewhere = workdir.parent / f"{workdir.name}-elsewhere" / "planted.journal"
    for run in client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'condition'"):
        client.set_tag(run.info.run_id, "optuna_storage", f"journal:{elsewhere}")
    assert main(["compare", "tiny", "--out", str(workdir / "report")]) == 0
    assert not elsewhere.parent.exists()
    assert list((workdir / "report").glob("optuna_history_*.png"))  # from the journal inside the store
    capsys.readouterr()
    named = ["compare", "tiny", "--out", str(workdir / "named"), "--storage"]
    one_line(capsys, 2, [*named, str(workdir / "missing.journal")], "no such journal file")  # was exit 0, no plots
    one_line(capsys, 2, [*named, "postgresql+psycopg://nobody@127.0.0.1:9/none"], "did not answer")
    assert not (workdir / "named").exists()
    (workdir / "empty.journal").write_text("")
    assert main([*named, str(workdir / "empty.journal")]) == 0
    said = capsys.readouterr().err
    assert "holds no search of study 'tiny': the report has no Optuna plots" in said
    assert "name the storage the sweep used with --storage" in said


def test_a_damaged_store_is_found_before_optuna_creates_anything(workdir, capsys):
    (workdir / "mlruns").mkdir()
    (workdir / "mlruns" / "mlflow.db").write_bytes(os.urandom(4096))
    one_line(capsys, 2, ["sweep", write_study(workdir)], "not a usable MLflow store")
    assert not list((workdir / "mlruns").glob("optuna/*.journal"))


def test_sighup_ends_a_command_as_sigterm_does_and_the_handlers_come_back(monkeypatch, capsys):
    import signal
    import time

    from harness import cli
    from harness.commands import export

    def hung_up(args):
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the signal's exception ends this at once

    before = signal.getsignal(signal.SIGHUP)
    monkeypatch.setattr(export, "run", hung_up)
    assert cli.main(["export", "0" * 32]) == 129
    assert capsys.readouterr().err == "harness export: terminated\n"
    assert signal.getsignal(signal.SIGHUP) is before


@pytest.mark.parametrize(
    "args",
    [
        ("compare", "nothing"),
        ("reproduce", "0123456789abcdef0123456789abcdef"),
        ("predict", "0" * 32, "rows.csv"),
        ("export", "0" * 32, "-o", "run.zip"),
    ],
)
def test_a_read_command_in_a_folder_without_a_store_creates_none(tmp_path, args):
    """compare, reproduce RUN_ID, predict and export made ./mlruns/mlflow.db (954 KB) before failing."""
    (tmp_path / "rows.csv").write_text("a\n1\n")
    done = harness(*args, cwd=tmp_path)
    assert done.returncode == 2 and "no tracking store at" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "run.zip").exists()


def test_load_study_without_a_store_creates_none(tmp_path, monkeypatch):
    import harness as api
    from harness.common.errors import HarnessError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(HarnessError, match="no tracking store at"):
        api.load_study("nothing")
    assert not (tmp_path / "mlruns").exists()
