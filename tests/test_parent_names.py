"""Parents and seeds under names a filter tells apart: a parent's seed mean is ``test_accuracy_mean``, so
``metrics.test_accuracy > x`` selects seeds only; a setting's param reads the same on both."""

import pytest

from tests.conftest import TINY_STUDY
from tests.helpers import harness, mlflow_runs, write_study

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    text = TINY_STUDY.replace("trials = 4", "trials = 2").replace("hidden = [8]", "hidden = [8, 4]")
    harness("sweep", write_study(folder, text), cwd=folder, check=True)
    return folder


def test_a_filter_on_test_accuracy_selects_seeds_never_parents(swept):
    client, runs = mlflow_runs(swept)
    parents = [r for r in runs if r.data.tags.get("harness.kind") == "condition"]
    assert len(parents) == 2
    for parent in parents:
        assert "test_accuracy" not in parent.data.metrics
        assert 0 < parent.data.metrics["test_accuracy_mean"] <= 1
    selected = client.search_runs([runs[0].info.experiment_id], "metrics.test_accuracy >= 0")
    assert selected and {r.data.tags["harness.kind"] for r in selected} == {"confirm"}


def test_hidden_reads_the_same_on_parents_and_their_runs(swept):
    _, runs = mlflow_runs(swept)
    assert {r.data.params["hidden"] for r in runs if "hidden" in r.data.params} == {"8,4"}
    assert sum("hidden" in r.data.params for r in runs if r.data.tags.get("harness.kind") == "condition") == 2
