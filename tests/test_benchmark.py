"""studies/benchmark.toml end to end at a smoke budget: the sweep, then compare's leaderboard (mean ranks,
Friedman, Nemenyi's critical difference, the diagram in the report); examples/benchmark_lion.toml is the
same study plus Lion."""

import json
from collections import Counter

import pytest

from harness.analysis.leaderboard import format_leaderboard, groups
from harness.studies.parse import read_study
from tests.helpers import ROOT, harness, mlflow_runs, store_uri

pytestmark = pytest.mark.e2e


def test_the_lion_benchmark_is_the_benchmark_plus_lion():
    plain = read_study(ROOT / "studies" / "benchmark.toml")
    lion = read_study(ROOT / "examples" / "benchmark_lion.toml")
    assert {c.settings["optimizer"] for c in plain.conditions} == {"sgd", "adam", "rmsprop", "adagrad"}
    assert len(plain.conditions) == 6 * 5 and "mnist1d" in {c.settings["dataset"] for c in plain.conditions}
    added = [c for c in lion.conditions if c.name not in {p.name for p in plain.conditions}]
    assert sorted(c.name for c in added) == sorted(f"{d}-lion" for d in {c.levels["dataset"] for c in added})
    assert len(added) == 5 and all(c.settings["optimizer"] == "my_methods:Lion" for c in added)
    assert (lion.fixed, lion.search, lion.trials, lion.confirm_seeds) == (
        plain.fixed,
        plain.search,
        plain.trials,
        plain.confirm_seeds,
    )


def test_groups_are_the_maximal_runs_within_the_critical_difference():
    ranks = {"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2, "e": 4.5}
    assert groups(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    assert groups(ranks, 2.3) == [["a", "b", "c", "d"], ["c", "d", "e"]]
    assert groups(ranks, 2.1) == [["a", "b", "c"], ["b", "c", "d"], ["c", "d", "e"]]
    assert groups(ranks, 0.1) == []
    assert format_leaderboard(None) == ""


def test_the_benchmark_runs_end_to_end_and_compare_draws_its_leaderboard(tmp_path):
    # the user's cache, as a user's second run has it: MNIST-1D generated once per machine (test_methods tests
    # generating it and refusing a changed file)
    study = str(ROOT / "studies" / "benchmark.toml")
    smoke = ["--trials", "1", "--confirm-seeds", "2", "--epochs", "1", "--workers", "2"]
    done = harness("sweep", study, *smoke, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Mean rank by test accuracy across 5 data sets" in done.stdout
    plain = read_study(study)  # what every shipped study's test checks (test_sweep)
    assert f"study {plain.name}:" in done.stdout and all(c.name in done.stdout for c in plain.conditions)
    kinds = Counter(r.data.tags["harness.kind"] for r in mlflow_runs(tmp_path, "benchmark")[1])
    assert kinds == {"condition": 30, "search": 30, "confirm": 60}
    report = tmp_path / "report"
    shown = harness("compare", "benchmark", "--out", str(report), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "leaderboard across 5 data sets" in shown.stdout and "Nemenyi critical difference" in shown.stdout
    assert (report / "critical_difference.png").stat().st_size > 1000
    html = (report / "report.html").read_text()
    assert "<h2>Leaderboard</h2>" in html and "critical difference" in html
    as_json = harness("compare", "benchmark", "--json", cwd=tmp_path)
    board = json.loads(as_json.stdout)["leaderboard"]
    assert len(board["frame"]) == 6 and board["critical_difference"] > 0
    # a place is 1 + the methods strictly ahead by mean rank: a tie shares it (issue 33: 1 and 2 for one tie)
    ranks = [row["mean rank"] for row in board["frame"]]
    assert [row["place"] for row in board["frame"]] == [1 + sum(r < m - 1e-9 for r in ranks) for m in ranks]
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    parent = client.search_runs(
        [client.get_experiment_by_name("benchmark").experiment_id], "tags.`harness.kind` = 'condition'", max_results=1
    )[0]
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"critical_difference.png", "leaderboard.csv", "report.html"} <= names
