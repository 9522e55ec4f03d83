"""End to end: reproduce, compare and predict on a tiny finished study and a train run."""

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from tests.conftest import TINY_STUDY

pytestmark = pytest.mark.e2e

TINY = (
    TINY_STUDY.replace('name = "tiny"', 'name = "tinycmp"')
    .replace("seeds = 2", "seeds = 3")
    .replace("trials = 4", "trials = 4\nstack = 1  # one at a time: the median pruner needs finished trials")
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    study = folder / "tinycmp.toml"
    study.write_text(textwrap.dedent(TINY))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    storage = str(folder / "tinycmp.journal")
    assert main(["sweep", str(study), "--tracking-uri", uri, "--storage", storage]) == 0
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tinycmp").experiment_id], max_results=1000)
    return {"folder": folder, "uri": uri, "client": client, "runs": runs, "study": str(study)}


def _pick(finished, kind, state=None):
    return next(
        r
        for r in finished["runs"]
        if r.data.tags.get("harness.kind") == kind and (state is None or r.data.tags.get("harness.state") == state)
    )


@pytest.mark.parametrize("kind,state", [("search", "complete"), ("search", "pruned"), ("confirm", "complete")])
def test_reproduce_sweep_runs_exactly(finished, capsys, kind, state):
    run = _pick(finished, kind, state)
    assert main(["reproduce", run.info.run_id, "--tracking-uri", finished["uri"]]) == 0
    out = capsys.readouterr().out
    assert "reproduced exactly" in out and "val_accuracy" in out
    copies = finished["client"].search_runs(
        [run.info.experiment_id], filter_string=f"tags.`harness.reproduces` = '{run.info.run_id}'"
    )
    assert len(copies) == 1 and copies[0].data.tags["harness.kind"] == "reproduce"


def test_reproduce_a_train_run_and_detect_an_edited_config(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["train", "--dataset", "iris", "--epochs", "4", "--hidden", "8", "--tracking-uri", uri, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    assert main(["reproduce", run_id, "--tracking-uri", uri]) == 0
    assert "reproduced exactly: 37 metrics" in capsys.readouterr().out

    config = next((tmp_path / "artifacts").glob(f"{run_id}/artifacts/config.json"))
    values = json.loads(config.read_text())
    values["lr"] = values["lr"] * 2
    config.write_text(json.dumps(values))
    assert main(["reproduce", run_id, "--tracking-uri", uri]) == 1
    out = capsys.readouterr().out
    assert "NOT reproduced" in out
    assert any(line.startswith("train_loss") and "step 1:" in line for line in out.splitlines())


def test_reproduce_bad_input(tmp_path, capsys, finished):
    assert main(["reproduce", "0123456789abcdef", "--tracking-uri", finished["uri"]]) == 2
    assert "run '0123456789abcdef' not found" in capsys.readouterr().err
    client = finished["client"]
    foreign = client.create_run(client.get_experiment_by_name("tinycmp").experiment_id)
    client.set_terminated(foreign.info.run_id)
    assert main(["reproduce", foreign.info.run_id, "--tracking-uri", finished["uri"]]) == 2
    assert "was not made by the harness" in capsys.readouterr().err
    run = _pick(finished, "search", "complete")
    config = Path(run.info.artifact_uri.replace("file://", "")) / "config.json"
    saved = config.read_bytes()
    config.unlink()
    try:
        assert main(["reproduce", run.info.run_id, "--tracking-uri", finished["uri"]]) == 2
        assert "has no config.json artifact" in capsys.readouterr().err
    finally:
        config.write_bytes(saved)


def test_compare_table_matches_the_runs_and_writes_plots(finished, capsys, tmp_path):
    from scipy import stats

    out_dir = tmp_path / "report"
    assert (
        main(
            ["compare", finished["study"], "--tracking-uri", finished["uri"], "--format", "json", "--out", str(out_dir)]
        )
        == 0
    )
    table = {row["condition"]: row for row in json.loads(capsys.readouterr().out)["conditions"]}
    assert list(table) == ["mse", "cross_entropy"]
    for condition, row in table.items():
        confirm = [
            r
            for r in finished["runs"]
            if r.data.tags.get("harness.kind") == "confirm"
            and r.data.tags.get("harness.condition") == condition
            and r.data.tags.get("harness.state") == "complete"
        ]
        accuracies = np.array([r.data.metrics["test_accuracy"] for r in confirm])
        assert row["seeds"] == len(accuracies) == 3
        assert row["test_accuracy_mean"] == pytest.approx(accuracies.mean(), abs=1e-12)
        # the split is fixed: the seeds' t term and the test rows' binomial term add in variance
        mean, rows = accuracies.mean(), int(confirm[0].data.tags["harness.test_rows"])
        seeds_term = stats.t.ppf(0.975, 2) * accuracies.std(ddof=1) / math.sqrt(3)
        rows_term = stats.norm.ppf(0.975) * math.sqrt(mean * (1 - mean) / rows)
        low = max(mean - math.hypot(seeds_term, rows_term), 0.0)
        assert row["test_accuracy_ci_low"] == pytest.approx(low, abs=1e-12)
        search = [
            r
            for r in finished["runs"]
            if r.data.tags.get("harness.kind") == "search" and r.data.tags.get("harness.condition") == condition
        ]
        assert row["trials"] == len(search) == 4
        best_trial = confirm[0].data.tags["harness.best_search_trial"]
        best = next(r for r in search if r.data.tags["harness.optuna_trial"] == best_trial)
        assert row["best_lr"] == pytest.approx(float(best.data.params["lr"]))
    for name in ("curves_by_condition.png", "lr_sensitivity.png", "epochs_to_target.png", "report.html"):
        path = out_dir / name
        assert path.stat().st_size > 1000, name
    assert (out_dir / "curves_by_condition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(out_dir.glob("optuna_history_*.png"))
    parent = next(r for r in finished["runs"] if r.data.tags.get("harness.kind") == "condition")
    names = {a.path for a in finished["client"].list_artifacts(parent.info.run_id)}
    assert {"curves_by_condition.png", "lr_sensitivity.png", "report.html", "summary.csv"} <= names


@pytest.mark.parametrize(
    "fmt,marker", [("table", "paired differences"), ("csv", "condition,trials"), ("markdown", "| condition |")]
)
def test_compare_formats(finished, capsys, tmp_path, fmt, marker):
    assert main(["compare", "tinycmp", "--tracking-uri", finished["uri"], "--format", fmt, "--out", str(tmp_path)]) == 0
    assert marker in capsys.readouterr().out


def test_compare_opens_with_the_answer_and_ends_with_where_its_terms_are_explained(finished, capsys, tmp_path):
    from tests.test_glossary import headings, pointers

    assert main(["compare", "tinycmp", "--tracking-uri", finished["uri"], "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("answer: ") and printed.index("findings:") < printed.index("paired differences")
    named = pointers(printed)
    assert named[0] == "the-answer" and "p-values-and-holm-correction" in named and set(named) <= headings()
    assert printed.index("report: ") < printed.index("Explained in docs/statistics.md: ")


def test_compare_unknown_study(finished, capsys):
    assert main(["compare", "nosuchstudy", "--tracking-uri", finished["uri"]]) == 2
    assert "no sweep runs" in capsys.readouterr().err


def test_predict_gives_the_classes_the_run_was_evaluated_with(tmp_path, capsys):
    from harness.engine.config import make_config
    from harness.engine.data import load_split
    from harness.reproduce.prediction import load_logged_model

    uri = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["train", "--dataset", "wine", "--epochs", "5", "--tracking-uri", uri, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = load_logged_model(summary["run_id"], uri)
    split = load_split(make_config({"dataset": "wine"}))
    raw_test = split.x_test * split.scaler_scale + split.scaler_mean  # the rows as they were before scaling
    predicted = model.predict_indices(raw_test)
    assert np.array_equal(predicted, model.network.logits(split.x_test).argmax(1))
    assert np.mean(predicted == split.y_test) == pytest.approx(summary["metrics"]["test_accuracy"])

    rows = tmp_path / "rows.csv"
    names = split.feature_names
    rows.write_text("\n".join([",".join(names)] + [",".join(repr(float(v)) for v in r) for r in raw_test[:5]]))
    assert main(["predict", summary["run_id"], str(rows), "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.split() == [model.classes[i] for i in predicted[:5]]
    assert main(["predict", summary["run_id"], str(rows), "--tracking-uri", uri, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # wine's labels are the integers 0..2: not "0".."2"
    assert printed == {"source": summary["run_id"], "run_id": summary["run_id"], "predictions": predicted[:5].tolist()}
    assert all(type(label) is int for label in printed["predictions"])
    assert main(["predict", "feedface", str(rows), "--tracking-uri", uri]) == 2


def test_predict_matches_columns_by_name_and_refuses_columns_it_cannot_match(tmp_path, capsys):
    """A CSV with the training columns in another order predicts the same (it predicted from the wrong
    features, exit 0, when columns were taken by position); a renamed or missing column is refused."""
    import pandas as pd

    from harness.engine.config import make_config
    from harness.engine.data import load_split

    uri = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["train", "--dataset", "wine", "--epochs", "5", "--tracking-uri", uri, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    split = load_split(make_config({"dataset": "wine"}))
    raw = pd.DataFrame(split.x_test * split.scaler_scale + split.scaler_mean, columns=split.feature_names)

    def predicted(frame, name):
        frame.to_csv(tmp_path / name, index=False)
        code = main(["predict", run_id, str(tmp_path / name), "--tracking-uri", uri, "--json"])
        captured = capsys.readouterr()
        return code, (json.loads(captured.out)["predictions"] if code == 0 else captured.err)

    code, in_order = predicted(raw, "rows.csv")
    assert code == 0 and len(in_order) == len(raw)
    assert predicted(raw[raw.columns[::-1]], "reversed.csv") == (0, in_order)
    code, said = predicted(raw.rename(columns={"alcohol": "Alcohol"}), "renamed.csv")
    assert code == 2 and "lacks 1 of the model's feature columns ('alcohol')" in said and "'Alcohol'" in said
    code, said = predicted(raw.drop(columns=["proline"]), "short.csv")
    assert code == 2 and "'proline'" in said and "in any order" in said


@pytest.mark.parametrize("argv", [["ui"], ["compare", "tiny"], ["reproduce", "abc"], ["predict", "abc", "rows.csv"]])
def test_an_unreachable_tracking_server_is_one_line_and_exit_2(capsys, argv):
    assert main([*argv, "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tracking URI http://127.0.0.1:9: no MLflow server answers there" in err


def test_weights_logged_before_feature_names_were_kept_still_reproduce_and_bad_names_are_refused():
    import io

    from harness.common.errors import HarnessError
    from harness.records.weights import parse_weights
    from harness.reproduce.reproduction import compare_weights

    network = {"weight_0": np.ones((2, 3)), "bias_0": np.zeros(3), "classes": np.array(["a", "b", "c"])}
    mine = {**network, "features": np.array(["x", "y"])}
    assert compare_weights(network, mine)["beyond"] is None  # an old record has no names: not a mismatch
    assert compare_weights({**network, "features": np.array(["y", "x"])}, mine)["beyond"][0] == "features"
    for names in (["x"], ["x", "x"], [1.0, 2.0]):
        buffer = io.BytesIO()
        np.savez(buffer, **network, features=np.array(names))
        with pytest.raises(HarnessError, match="features does not hold one distinct name per input feature"):
            parse_weights(buffer.getvalue(), "forged weights.npz")
