"""End to end: ``harness sweep`` on tiny studies in a temporary directory."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.sweep.conditions import retried_from, trial_state
from tests.conftest import TINY_STUDY
from tests.helpers import ROOT, mlflow_runs, optuna_trials, write_study
from tests.test_glossary import headings, pointers

TINY = TINY_STUDY
pytestmark = pytest.mark.e2e


def test_sweep_records_every_trial_once_and_confirms_on_test(workdir, capsys):
    assert main(["sweep", write_study(workdir), "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # stdout: one JSON document; the table goes to stderr
    summary = document["summary"]
    assert [row["condition"] for row in summary] == ["mse", "cross_entropy"]
    (stats,) = document["stats"]  # where the time went, the recorder's own time per MLflow operation too
    assert stats["trials"] == 8 and stats["confirms"] == 4 and stats["train_seconds"] > 0
    assert {"create_run", "record_run"} <= set(stats["recorder_busy_seconds"])
    assert all(seconds > 0 for seconds in stats["recorder_busy_seconds"].values())
    assert "test accuracy [95% CI]" in captured.err and "findings:" in captured.err
    assert document["answer"] and "answer: " + " ".join(document["answer"]) in captured.err.replace("\n  ", " ")

    trials = optuna_trials(workdir)
    client, runs = mlflow_runs(workdir)
    assert all(r.info.status == "FINISHED" for r in runs)
    by_kind = Counter(r.data.tags["harness.kind"] for r in runs)
    assert by_kind == {"condition": 2, "search": 8, "confirm": 4}
    parents = {
        r.data.tags["harness.condition"]: r.info.run_id for r in runs if r.data.tags["harness.kind"] == "condition"
    }
    runs_by_id = {r.info.run_id: r for r in runs}

    for condition in ("mse", "cross_entropy"):
        search = trials[f"tiny/{condition}"]
        assert Counter(t.state.name for t in search)["RUNNING"] == 0
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in search) == 4
        confirm = trials[f"tiny/{condition}/confirm-after-4-trials"]
        assert sorted(t.params["seed"] for t in confirm if t.state.name == "COMPLETE") == [1, 2]
        for phase, group in (("search", search), ("confirm", confirm)):
            for t in group:
                run = runs_by_id[t.user_attrs["mlflow_run_id"]]  # trial -> run ...
                tags = run.data.tags
                assert (tags["harness.condition"], tags["harness.kind"], tags["harness.optuna_trial"]) == (
                    condition,
                    phase,
                    str(t.number),
                )  # ... -> trial
                assert tags["mlflow.parentRunId"] == parents[condition] and tags["harness.study"] == "tiny"
                assert tags["harness.state"] == t.user_attrs["state"]
                curve = client.get_metric_history(run.info.run_id, "val_accuracy")
                assert len(curve) == t.user_attrs["epochs_run"] == int(run.data.metrics["epochs_run"])
                if t.state.name == "PRUNED":
                    assert tags["harness.pruned_epoch"] == str(t.user_attrs["epochs_run"])
                has_test = "test_accuracy" in run.data.metrics
                assert has_test == (phase == "confirm")  # the search never touches the test split
                assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.json"}
    csv = client.download_artifacts(parents["mse"], "summary.csv")
    assert "test_accuracy_mean" in Path(csv).read_text()

    stacked = next(r for r in runs if r.data.tags["harness.kind"] == "search")  # trained in a stack of 4
    assert main(["reproduce", stacked.info.run_id]) == 0  # ... reproduces alone, bit for bit
    assert "reproduced exactly" in capsys.readouterr().out
    runs = [r for r in mlflow_runs(workdir)[1] if r.data.tags["harness.kind"] != "reproduce"]

    assert main(["sweep", write_study(workdir)]) == 0  # resume: nothing left to do
    printed = capsys.readouterr().out
    assert "0 trials and 0 confirmation runs" in printed
    lines = printed.splitlines()  # the answer first, under the header; last, where its terms are explained
    assert lines[0].startswith("study tiny: ") and lines[1].startswith("answer: ")
    assert printed.index("answer: ") < printed.index("findings:") < printed.index("test accuracy [95% CI]")
    named = pointers(printed)
    assert named[0] == "the-answer" and set(named) <= headings()
    assert lines[-1].rstrip().endswith(f"#{named[-1]}")
    assert len(mlflow_runs(workdir)[1]) == len(runs) + 1  # + the reproduction


def test_two_workers_meet_the_budget_exactly(workdir, capsys):
    study = write_study(workdir, TINY.replace("trials = 4", "trials = 6"))
    assert main(["sweep", study, "--workers", "2"]) == 0
    trials = optuna_trials(workdir)
    for condition in ("mse", "cross_entropy"):
        search = trials[f"tiny/{condition}"]
        assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in search) == 6
        numbers = [t.number for t in search]
        assert len(numbers) == len(set(numbers))
    runs = mlflow_runs(workdir)[1]
    assert Counter(r.data.tags["harness.kind"] for r in runs)["search"] == sum(
        1 for name, group in trials.items() if "confirm" not in name for t in group if "mlflow_run_id" in t.user_attrs
    )
    assert all(r.info.status == "FINISHED" for r in runs)


SLOW = (
    TINY.replace("epochs = { low = 3, high = 8 }", "epochs = { low = 25, high = 30 }")
    .replace('name = "median"', 'name = "none"')
    .replace("trials = 4", "trials = 4\nstack = 2")
)
SLOW_ENV = {"HARNESS_FAULT": "epoch-delay=0.1"}
"""Trials of a few seconds (a hook's delay per model and epoch, not a big data set), to signal inside one."""


def _has_running_run(workdir, number):
    """The recorder has created the MLflow run of search trial ``number`` of condition mse."""
    try:
        _, runs = mlflow_runs(workdir)
    except Exception:  # noqa: BLE001 - the store is still being created
        return False
    return any(
        r.data.tags.get("harness.condition") == "mse"
        and r.data.tags.get("harness.optuna_trial") == str(number)
        and r.info.status == "RUNNING"
        for r in runs
    )


def start_and_signal(workdir, command, signum, group=True):
    """Start a sweep, send ``signum`` to its process group (or to the command alone, as a process manager
    does) inside its second trial; that trial's number."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - so polling the store is quick

    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **SLOW_ENV},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            trials = optuna_trials(workdir).get("tiny/mse", [])
        except Exception:  # noqa: BLE001 - the journal is still being created
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and "worker_pid" in t.user_attrs]
        if any(t.state.name == "COMPLETE" for t in trials) and running and _has_running_run(workdir, running[0].number):
            still = [t for t in optuna_trials(workdir)["tiny/mse"] if t.number == running[0].number]
            if still[0].state.name != "RUNNING":
                continue  # that stack finished meanwhile; catch the next one
            os.killpg(process.pid, signum) if group else process.send_signal(signum)
            process.wait(timeout=60)
            return running[0].number, process
    process.kill()
    raise AssertionError("the sweep never reached a second trial")


@pytest.mark.parametrize(
    "signum, group, code, said",
    [(signal.SIGINT, True, 130, "interrupted"), (signal.SIGTERM, False, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_marks_the_current_trial_and_leaves_nothing_running(workdir, signum, group, code, said):
    study = write_study(workdir, SLOW)
    command = [sys.executable, "-m", "harness", "sweep", study]
    interrupted, process = start_and_signal(workdir, command, signum, group)
    stderr = process.stderr.read()
    assert process.returncode == code, stderr
    assert stderr.splitlines()[-1] == f"harness sweep: {said}; run the same command again to resume tiny", stderr
    said = [line for line in stderr.splitlines() if not line.startswith("harness sweep: tiny: ")]  # not progress
    assert len(said) == 1 and said[0].startswith("harness sweep: ") and "Traceback" not in stderr, stderr
    search = optuna_trials(workdir)["tiny/mse"]
    stopped = next(t for t in search if t.number == interrupted)
    assert stopped.state.name == "FAIL" and stopped.user_attrs["state"] == "interrupted"
    assert not [t for group in optuna_trials(workdir).values() for t in group if t.state.name == "RUNNING"]
    runs = mlflow_runs(workdir)[1]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    stopped_run = next(r for r in runs if r.info.run_id == stopped.user_attrs["mlflow_run_id"])
    assert stopped_run.info.status == "KILLED" and stopped_run.data.tags["harness.state"] == "interrupted"


def test_sigkill_mid_trial_then_resume_finishes_the_exact_budget(workdir):
    study = write_study(workdir, SLOW)
    command = [sys.executable, "-m", "harness", "sweep", study]
    killed, _ = start_and_signal(workdir, command, signal.SIGKILL)

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    trials = optuna_trials(workdir)
    search = trials["tiny/mse"]
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in search) == 4
    assert len({t.number for t in search}) == len(search)
    dead = next(t for t in search if t.number == killed)
    assert dead.state.name == "FAIL" and trial_state(dead) == "killed"
    retry = [t for t in search if retried_from(t) == killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == dead.params
    client, runs = mlflow_runs(workdir)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    dead_runs = [
        r
        for r in runs
        if r.data.tags.get("harness.condition") == "mse"
        and r.data.tags.get("harness.kind") == "search"
        and r.data.tags.get("harness.optuna_trial") == str(killed)
    ]
    assert len(dead_runs) == 1  # the recorder had created it before the kill
    assert dead_runs[0].info.status == "FAILED" and dead_runs[0].data.tags["harness.state"] == "killed"
    for name, group in trials.items():
        assert not [t for t in group if t.state.name == "RUNNING"], name


ONE_STACK = (
    TINY.replace('loss = ["mse", "cross_entropy"]', 'loss = ["cross_entropy"]')
    .replace("trials = 4", "trials = 8\nstack = 8")
    .replace("startup_trials = 1", "startup_trials = 3")
    .replace("seeds = 2", "seeds = 1")
)
"""One condition whose whole search budget is one stack: nothing finishes before the others train."""


def test_the_members_of_a_conditions_first_stack_prune_each_other_when_asked(workdir):
    """Optuna's median pruner compares a trial with finished trials only, so a condition's first stack
    trains every member to the end, as it still does by default (a study's results stay as they were).
    With ``among_stack = true`` its members are each other's references, and a pruned member is recorded
    as any pruned trial: Optuna PRUNED with its last report, its run ``pruned`` at its epoch."""
    assert main(["sweep", write_study(workdir, ONE_STACK, name="default.toml"), "-q"]) == 0
    assert {t.state.name for t in optuna_trials(workdir)["tiny/cross_entropy"]} == {"COMPLETE"}
    asked = ONE_STACK.replace('name = "tiny"', 'name = "among"').replace("[pruner]", "[pruner]\namong_stack = true")
    assert main(["sweep", write_study(workdir, asked, name="among.toml"), "-q"]) == 0
    search = optuna_trials(workdir, "among")["among/cross_entropy"]
    assert len(search) == 8 and {t.state.name for t in search} <= {"COMPLETE", "PRUNED"}
    pruned = [t for t in search if t.state.name == "PRUNED"]
    assert pruned and len(pruned) < 8
    runs = {
        r.data.tags.get("harness.optuna_trial"): r
        for r in mlflow_runs(workdir, "among")[1]
        if r.data.tags.get("harness.kind") == "search"
    }
    for trial in pruned:
        epoch = trial.user_attrs["pruned_epoch"]
        assert epoch > 1 and epoch == trial.user_attrs["epochs_run"] < trial.params["epochs"]  # past the warm-up
        assert trial.value == trial.intermediate_values[epoch] and max(trial.intermediate_values) == epoch
        run = runs[str(trial.number)]
        assert run.info.status == "FINISHED" and run.data.tags["harness.state"] == "pruned"
        assert run.data.tags["harness.pruned_epoch"] == str(epoch) and run.data.metrics["epochs_run"] == epoch


STUDY_FILES = sorted(
    p
    for p in (Path(__file__).parent.parent / "studies").glob("*.toml")
    if not p.name.startswith("single_run") and p.name != "benchmark.toml"
)
"""benchmark.toml is swept at a smoke budget, with these checks, by tests/test_benchmark.py."""


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_every_shipped_study_runs_with_one_trial_of_one_epoch(workdir, capsys, path):
    assert main(["sweep", str(path), "--trials", "1", "--epochs", "1", "--confirm-seeds", "1"]) == 0
    out = capsys.readouterr().out
    from harness.studies.parse import read_study

    study = read_study(path)
    assert f"study {study.name}:" in out and all(c.name in out for c in study.conditions)
    runs = mlflow_runs(workdir, study.name)[1]
    kinds = Counter(r.data.tags["harness.kind"] for r in runs)
    n = len(study.conditions)
    assert kinds == {"condition": n, "search": n, "confirm": n}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--workers", "0"], "--workers = 0 is not allowed"),
        (["--trials", "0"], "--trials = 0 is not allowed"),
        (["--epochs", "0"], "--epochs = 0 is not allowed"),
        (["--heartbeat", "0"], "--heartbeat = 0 is not allowed"),
        (
            ["--storage", "postgresql+psycopg://nobody:s3cret@127.0.0.1:9/optuna"],
            "postgresql+psycopg://nobody:***@127.0.0.1:9/optuna: cannot connect to the database",
        ),
        (
            ["--tracking-uri", "http://nobody:s3cret@127.0.0.1:9", "--outage-seconds", "0"],
            "tracking URI http://nobody:***@127.0.0.1:9: no MLflow server answers there",
        ),
    ],
)
def test_bad_flags_exit_2_and_create_nothing(workdir, capsys, argv, message):
    assert main(["sweep", write_study(workdir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "s3cret" not in err
    assert not (workdir / "mlruns").exists()


def test_a_server_that_does_not_answer_is_waited_for_then_one_line(workdir, capsys):
    argv = ["sweep", write_study(workdir), "--tracking-uri", "http://127.0.0.1:9", "--outage-seconds", "1.5"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "does not answer" in lines[0] and "waiting up to 2 s" in lines[0]
    assert "the MLflow tracking server http://127.0.0.1:9 did not answer for 2 s" in lines[1]
    assert not (workdir / "mlruns").exists()


def test_malformed_study_exits_2_and_creates_nothing(workdir, capsys):
    bad = write_study(workdir, TINY.replace('loss = ["mse", "cross_entropy"]', 'loss = ["hinge"]'))
    assert main(["sweep", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "tiny.toml" in err and "loss = 'hinge'" in err and len(err.splitlines()) == 1
    assert not (workdir / "mlruns").exists()


def test_a_changed_study_under_the_same_name_is_refused(workdir, capsys):
    assert main(["sweep", write_study(workdir), "--trials", "1", "--epochs", "2", "--confirm-seeds", "1"]) == 0
    changed = write_study(workdir, TINY.replace("high = 2.0", "high = 3.0"))
    assert main(["sweep", changed]) == 2
    assert "already exists in the storage with other settings" in capsys.readouterr().err


def test_a_changed_confirm_vary_under_the_same_name_is_refused(workdir, capsys):
    """`[confirm] vary` was editable in place: seeds confirmed on the fixed split and new seeds on their
    own splits were then tested as one sample of own-split seeds (exit 0)."""
    assert main(["sweep", write_study(workdir), "--trials", "1", "--epochs", "2", "--confirm-seeds", "1"]) == 0
    varied = write_study(workdir, TINY.replace("seeds = 2", 'seeds = 2\nvary = ["init", "split"]'))
    assert main(["sweep", varied, "--trials", "1", "--epochs", "2", "--confirm-seeds", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "confirmed with vary = ['init']" in err[0] and "new `name`" in err[0]
    assert main(["sweep", write_study(workdir), "--trials", "1", "--epochs", "2", "--confirm-seeds", "1"]) == 0


def test_a_refused_edit_names_the_setting_and_creates_no_optuna_study(workdir, capsys):
    """A new condition was refused only after its Optuna study and queued seeds had been created."""
    from tests.helpers import optuna_trials

    assert main(["sweep", write_study(workdir), "--trials", "1", "--epochs", "2", "--confirm-seeds", "1"]) == 0
    capsys.readouterr()
    before = sorted(optuna_trials(workdir))
    added = write_study(workdir, TINY.replace('["mse", "cross_entropy"]', '["mse", "cross_entropy", "mse_logits"]'))
    assert main(["sweep", added, "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "conditions.loss: ['mse', 'cross_entropy'] -> ['mse', 'cross_entropy', 'mse_logits']" in err
    assert sorted(optuna_trials(workdir)) == before


def test_changed_data_under_the_same_study_is_refused_before_anything_trains(workdir, capsys):
    """The study's identity covered the CSV's path, not its content: a resume mixed old and new data."""
    from tests.helpers import mlflow_runs

    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(60)]
    (workdir / "data.csv").write_text("\n".join(rows) + "\n")
    study = write_study(workdir, TINY.replace('dataset = "iris"', 'dataset = "csv"\ncsv = "data.csv"'))
    assert main(["sweep", study, "--trials", "1", "--epochs", "2", "--confirm-seeds", "1"]) == 0
    runs = len(mlflow_runs(workdir)[1])
    changed = ["a,b,label"] + [f"{i % 5},{(i * 2) % 7},{i % 2}" for i in range(60)]
    (workdir / "data.csv").write_text("\n".join(changed) + "\n")
    capsys.readouterr()
    assert main(["sweep", study, "--trials", "2", "--epochs", "2", "--confirm-seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its data changed since the study began" in err
    assert len(mlflow_runs(workdir)[1]) == runs


def test_a_worker_that_finds_the_confirmation_seeds_taken_moves_on(workdir, monkeypatch):
    """Two workers reach a condition's confirmation together; the slower one finds no seed left."""
    from types import SimpleNamespace

    from harness.studies.parse import read_study
    from harness.sweep.storages import open_storage
    from harness.sweep.studies import prepare_studies
    from harness.sweep.worker import SweepPlan, SweepWorker

    study = read_study(write_study(workdir))
    storage, url = open_storage(None, study.name)
    prepare_studies(study, storage)
    worker = SweepWorker(study, SweepPlan(url, "unused", "0", {}, "test"), recorder=object())
    studies = worker.conditions[0]
    assert [studies.ask_confirm()[1] for _ in range(2)] == [1, 2]  # the other worker took both seeds
    monkeypatch.setattr(studies, "best_trial", lambda: SimpleNamespace(number=0, params={"lr": 0.1, "epochs": 3}))
    worker.confirm_stack(studies)
    assert worker.stats.confirms == 0
    over = [t for t in studies.confirm.get_trials(deepcopy=False) if t.user_attrs.get("state") == "over_budget"]
    assert len(over) == 1  # the slot it asked for was given back


def test_a_run_whose_worker_died_after_telling_optuna_is_ended_when_the_sweep_settles(workdir, monkeypatch):
    """Killed between ``tell`` and the recorder's writes: the run would stay RUNNING forever, without results."""
    from harness.records.operations import HARNESS_TAG
    from harness.records.recorder import InlineRecorder
    from harness.records.store import resolve_tracking_uri
    from harness.studies.parse import read_study
    from harness.sweep import preparation, reconcile
    from harness.sweep.conditions import ConditionStudies
    from harness.sweep.lifecycle import SweepOptions
    from harness.sweep.repair import reconcile_stores
    from harness.sweep.storages import open_storage

    study = read_study(write_study(workdir))
    uri = resolve_tracking_uri()
    recorder = InlineRecorder(uri)
    study, plan, worker, _ = preparation.prepare(study, SweepOptions(uri), recorder, preparation.preflight(study))
    client = recorder.client
    storage, _ = open_storage(plan.storage_url, study.name)
    studies = ConditionStudies(study, study.conditions[0], storage)
    trial, params = studies.ask_search()
    run = client.create_run(
        plan.experiment_id,
        tags={
            HARNESS_TAG: "search",
            "study": study.name,
            "optuna_study": studies.search.study_name,
            "trial": str(trial.number),
            "mlflow.parentRunId": plan.parent_runs[studies.condition.name],
        },
    )
    assert studies.finish("search", trial, "complete", 0.5, {"epochs_run": params["epochs"]})  # ... died here
    assert reconcile_stores(study, plan, storage, recorder) == 0  # its recorder may still be writing: left alone
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    monkeypatch.setattr(reconcile, "ORPHAN_SECONDS", 1)
    assert reconcile_stores(study, plan, storage, recorder, worker, settle=True) == 1  # ended, and trained again
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED" and ended.data.tags["harness.state"] == "orphaned"
    again = client.search_runs(
        [plan.experiment_id], f"tags.`harness.optuna_trial` = '{trial.number}' and tags.`harness.rerun` = 'true'"
    )
    assert len(again) == 1 and again[0].info.status == "FINISHED" and again[0].data.tags["harness.state"] == "complete"


def test_more_workers_than_cores_are_capped_and_said(workdir, capsys):
    """--workers 64 on 2 cores did not finish a 1-trial study in 200 s; nothing capped or warned."""
    cores = len(os.sched_getaffinity(0))
    argv = ["sweep", write_study(workdir), "--workers", str(cores + 3), "--trials", "1", "--epochs", "2", "--json"]
    assert main([*argv, "--confirm-seeds", "1"]) == 0
    out, err = capsys.readouterr()
    assert f"--workers {cores + 3} on {cores} cores: using {cores}" in err
    assert len(json.loads(out)["stats"]) == cores


def test_a_piped_sweep_says_how_far_it_is_while_it_runs(workdir, capsys, monkeypatch):
    """Piped (a log, CI), a sweep printed nothing for its whole run, then everything; a resumed sweep's
    bar started at 0 and showed 60474 trials/s."""
    from harness.studies.parse import read_study
    from harness.studies.study import resolve
    from harness.sweep.progress import SweepProgress

    monkeypatch.setattr(SweepProgress, "EVERY", 0.0)
    assert main(["sweep", write_study(workdir), "--trials", "2", "--epochs", "2", "--confirm-seeds", "1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("harness sweep: tiny: ")]
    assert len(lines) >= 2 and "mse 2/2" in lines[-1] and "confirmed 1/1" in lines[-1]
    study = resolve(read_study(write_study(workdir)), trials=2, epochs=2, confirm_seeds=1)
    bars = SweepProgress(study, None, terminal=True)
    bars.states()
    assert [bar.n for bar in bars.bars] == [2, 2] and all(bar.format_dict["initial"] == 2 for bar in bars.bars)


def test_a_smaller_budget_than_an_earlier_sweeps_names_the_key_to_change(tmp_path):
    """The extended study stays at its larger budget; the message names the study file's `name` key."""
    import io

    import optuna

    from harness.studies.parse import read_study
    from harness.sweep.preparation import at_standing_budget

    study = read_study(write_study(tmp_path))
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name=f"tiny/{study.conditions[0].name}/confirm-after-24-trials", storage=storage)
    err = io.StringIO()
    assert at_standing_budget(study, storage, err).trials == 24
    assert f"stays at 24, not {study.trials}" in err.getvalue()
    assert f"give the study a new `name` in {study.path} to run a smaller one" in err.getvalue()
