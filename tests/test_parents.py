"""End to end: a condition's parent run is its result, as the MLflow UI shows it without a filter typed;
runs follow MLflow's conventions (params that apply, run context, data set input, epoch timestamps)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.records.notes import escape
from tests.conftest import TINY_STUDY
from tests.helpers import compare_json, harness, json_summary, mlflow_runs, write_study

pytestmark = pytest.mark.e2e

STUDY = TINY_STUDY.replace('name = "tiny"', 'name = "tiny"\ndescription = "MSE against cross-entropy on iris"')


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parents")
    study = write_study(folder, STUDY)
    done = harness("sweep", study, "--json", cwd=folder, env={"HARNESS_FAULT": "epoch-delay=0.005"}, check=True)
    return {"folder": folder, "study": study, "summary": json_summary(done.stdout)}


def _parents(runs):
    return {r.data.tags["harness.condition"]: r for r in runs if r.data.tags.get("harness.kind") == "condition"}


def test_each_parent_carries_its_conditions_result(swept):
    client, runs = mlflow_runs(swept["folder"])
    parents = _parents(runs)
    for row in swept["summary"]:
        parent = parents[row["condition"]]
        metrics = parent.data.metrics
        assert metrics["test_accuracy_mean"] == pytest.approx(row["test_accuracy_mean"], abs=1e-12)
        if row["test_accuracy_ci_low"] is None:  # fewer than 3 seeds: no interval, and none on the parent
            assert "test_accuracy_ci_low" not in metrics and row["seeds"] < 3
        else:
            assert metrics["test_accuracy_ci_low"] == pytest.approx(row["test_accuracy_ci_low"], abs=1e-12)
        assert metrics["best_val_accuracy"] == pytest.approx(row["best_val_accuracy"], abs=1e-12)
        assert (metrics["trials"], metrics["seeds"]) == (row["trials"], row["seeds"])
        assert (
            parent.data.params["best.lr"] == repr(row["best_lr"])
            or float(parent.data.params["best.lr"]) == row["best_lr"]
        )
        assert escape(row["condition"]) in parent.data.tags["mlflow.note.content"]
        seeds = [
            r
            for r in runs
            if r.data.tags.get("harness.kind") == "confirm" and r.data.tags["harness.condition"] == row["condition"]
        ]
        curves = [
            [m.value for m in sorted(client.get_metric_history(r.info.run_id, "val_accuracy"), key=lambda m: m.step)]
            for r in seeds
        ]
        history = client.get_metric_history(parent.info.run_id, "val_accuracy_seeds_mean")
        mean = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert "val_accuracy" not in parent.data.metrics  # read beside best_val_accuracy as a contradiction
        assert r"\_seeds\_mean" in parent.data.tags["mlflow.note.content"]
        assert len(mean) == max(map(len, curves)) > 1
        assert mean == pytest.approx([np.mean([c[e] for c in curves if len(c) > e]) for e in range(len(mean))])
        names = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"study.json", "study.toml", "summary.csv"} <= names
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.note.content"] == "MSE against cross-entropy on iris"


def test_runs_follow_mlflow_conventions(swept):
    client, runs = mlflow_runs(swept["folder"])
    search = next(r for r in runs if r.data.tags.get("harness.kind") == "search")
    params = search.data.params
    assert {"lr", "epochs", "momentum"} <= set(params) and "epochs_run" not in params  # a metric only
    assert not {"beta1", "beta2", "rho", "eps", "csv", "step_size", "gamma", "power_t", "n_samples"} & set(params)
    tags = search.data.tags
    assert tags["mlflow.source.name"].startswith("harness sweep") and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and len(tags["mlflow.source.git.commit"]) == 40 and "git_commit" not in tags
    assert search.inputs.dataset_inputs[0].dataset.name == "iris"  # every run has its data set (was: none)
    confirm = next(r for r in runs if r.data.tags.get("harness.kind") == "confirm")
    dataset = confirm.inputs.dataset_inputs[0].dataset
    assert dataset.name == "iris" and tags["harness.dataset_digest"].startswith(dataset.digest)
    history = sorted(client.get_metric_history(search.info.run_id, "val_accuracy"), key=lambda m: m.step)
    stamps = [m.timestamp for m in history]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # each epoch at its own time
    for run in runs:
        phase, name = run.data.tags.get("harness.kind"), run.info.run_name
        if phase == "search":  # what a truncated name still shows comes first
            assert name.startswith(f"t{int(run.data.tags['harness.optuna_trial']):03d}-"), name
        if phase == "confirm":
            assert name.startswith(f"seed{run.data.params['seed']}-"), name


def test_each_fact_is_recorded_once_under_one_prefix(swept):
    """A setting is a param, a measured number a metric, who a run is and how it ran a tag (``harness.``)."""
    _, runs = mlflow_runs(swept["folder"])
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert all(key.startswith(("mlflow.", "harness.")) for key in tags), sorted(tags)
        names = {key.removeprefix("harness.") for key in tags}
        assert not names & set(params) and not names & set(metrics), (names & set(params), names & set(metrics))
        assert "blas_threads" not in params and tags["harness.kind"] == "condition" or "harness.blas_threads" in tags
    confirm = next(r for r in runs if r.data.tags.get("harness.kind") == "confirm" and r.outputs.model_outputs)
    note = confirm.data.tags["mlflow.note.content"]  # its two trial numbers, each said what it is
    assert f"search trial {confirm.data.tags['harness.best_search_trial']}" in note
    assert f"harness.optuna\\_trial {confirm.data.tags['harness.optuna_trial']}" in note


def test_the_logged_model_carries_its_test_metrics_and_a_description(swept):
    client, runs = mlflow_runs(swept["folder"])
    holder = next(r for r in runs if r.outputs and r.outputs.model_outputs)
    model = client.get_logged_model(holder.outputs.model_outputs[0].model_id)
    linked = {m.key: m.value for m in model.metrics}
    assert linked["test_accuracy"] == holder.data.metrics["test_accuracy"]  # the model page said "Metrics (0)"
    assert {m.dataset_name for m in model.metrics} == {"iris"}
    assert all(key.startswith("test_") for key in linked)
    assert f"run {holder.info.run_id}" in model.tags["mlflow.note.content"]  # it said "No description"


def test_the_storage_tag_opens_in_optunas_own_tools(swept):
    parent = next(iter(_parents(mlflow_runs(swept["folder"])[1]).values()))
    address = parent.data.tags["harness.optuna_storage"]
    assert not address.startswith("journal:")
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "studies", "--storage", address],
        capture_output=True,
        text=True,
        cwd=swept["folder"],
    )
    assert listed.returncode == 0 and "tiny/mse" in listed.stdout, listed.stderr


def test_a_changed_result_gets_a_new_parent_and_an_unchanged_one_is_left_alone(swept, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(swept["folder"], folder)
    study = str(folder / "tiny.toml")
    old = {c: r.info.run_id for c, r in _parents(mlflow_runs(folder)[1]).items()}
    summary = json_summary(harness("sweep", study, "--trials", "5", "--json", cwd=folder, check=True).stdout)
    client, runs = mlflow_runs(folder)
    new = {c: r.info.run_id for c, r in _parents(runs).items()}
    assert set(new) == set(old) and not set(new.values()) & set(old.values())
    assert all(client.get_run(run_id).info.lifecycle_stage == "deleted" for run_id in old.values())
    children = [r for r in runs if r.data.tags.get("harness.kind") in ("search", "confirm")]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == set(new.values())
    for run_id in new.values():
        steps = [m.step for m in client.get_metric_history(run_id, "val_accuracy")]
        assert len(steps) == len(set(steps))  # one point per epoch, however often it was written
    assert compare_json(folder)["conditions"] == summary
    assert {c: r.info.run_id for c, r in _parents(mlflow_runs(folder)[1]).items()} == new


def test_the_json_outputs_are_strict(swept, tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))

    compared = harness("compare", "tiny", "--format", "json", "--out", str(tmp_path), cwd=swept["folder"], check=True)
    assert set(strict(compared.stdout)) >= {"conditions", "pairs"}
    swept_again = harness("sweep", swept["study"], "--json", cwd=swept["folder"], check=True)
    assert strict(swept_again.stdout)["summary"]
    trained = harness("train", "--dataset", "iris", "--epochs", "2", "--lr", "50", "--json", cwd=tmp_path, check=True)
    assert strict(trained.stdout)["status"] in ("complete", "diverged")


def test_the_ui_link_opens_the_studys_view_of_its_results_and_a_users_edit_of_it_stays(swept, tmp_path):
    """The MLflow UI showed the parents with no result column: the sweep writes a saved view (an
    experiment tag the UI's Views menu lists) whose columns are what the parents carry, and
    ``harness ui --study`` links to it. A view the user saved over it survives a re-run sweep."""
    from harness.records.recorder import InlineRecorder
    from harness.records.ui_server import study_links
    from harness.records.views import VIEW_KEY, VIEW_TAG, read_view
    from tests.helpers import store_uri

    client, runs = mlflow_runs(swept["folder"])
    experiment = client.get_experiment_by_name("tiny")
    columns = read_view(experiment.tags[VIEW_TAG])["selectedColumns"]
    for parent in _parents(runs).values():
        for key in ("test_accuracy_mean", "best_val_accuracy"):
            assert f"metrics.`{key}`" in columns and key in parent.data.metrics
        params = [c[len("params.`") : -1] for c in columns if c.startswith("params.")]
        assert params and all(p in parent.data.params for p in params), (params, parent.data.params)
    runs_link, _ = study_links(InlineRecorder(store_uri(swept["folder"])), "http://ui", "tiny")
    assert f"/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={VIEW_KEY}&" in runs_link

    folder = tmp_path / "copy"
    shutil.copytree(swept["folder"], folder)
    client, _ = mlflow_runs(folder)
    experiment_id = client.get_experiment_by_name("tiny").experiment_id
    edited = experiment.tags[VIEW_TAG].replace('"name":', '"edited":true,"name":')
    client.set_experiment_tag(experiment_id, VIEW_TAG, edited)
    harness("sweep", str(folder / "tiny.toml"), cwd=folder, check=True)
    assert client.get_experiment(experiment_id).tags[VIEW_TAG] == edited
    client.delete_experiment_tag(experiment_id, VIEW_TAG)  # a store swept before views: the plain link
    runs_link, _ = study_links(InlineRecorder(store_uri(folder)), "http://ui", "tiny")
    assert "viewStateShareKey" not in runs_link and runs_link.endswith("/runs?workflowType=machine_learning")
