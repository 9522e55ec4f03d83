"""A lean search trial computes only what its record keeps, and what it keeps is what a full run computes.

``train_stack(..., curves=...)`` skips the training-split scoring and the gradient norms when their curves
are not wanted; everything that decides a run (its loss, weight norm, validation yardsticks, whether a
gradient norm was finite) is still checked. These tests hold the lean curves to the full run's bit for bit,
diverging, exploding and stopped runs included, and the sweep's records to a sweep that records all.
"""

import numpy as np
import pytest

import harness.engine.training as training
from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.network import StackedMLP
from harness.engine.training import DIVERGED, STOPPED, finite_limit, finite_norms, train_model, train_stack
from harness.records.runs import lean_curves
from tests.conftest import TINY_STUDY
from tests.helpers import mlflow_runs, write_study
from tests.test_reference_curves import BASE, SINGLE, STACK

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def digits():
    return {dtype: load_split(make_config({**BASE, "dtype": dtype})) for dtype in ("float64", "float32")}


def assert_lean_matches_full(lean, full, curves):
    """Same outcome, and every curve the lean run keeps equal (==) to the full run's; nothing else kept."""
    assert (lean.status, lean.epochs_run, lean.diverged_epoch) == (full.status, full.epochs_run, full.diverged_epoch)
    assert lean.last_finite_loss == full.last_finite_loss
    assert list(lean.history) == [k for k in full.history if k in curves]  # same keys, same order
    for key, values in lean.history.items():
        assert values == full.history[key], key
    assert lean.final == {k: v for k, v in full.final.items() if k in curves or k not in full.history}
    np.testing.assert_array_equal(lean.network.stack.params, full.network.stack.params)
    assert len(lean.epoch_times) == len(full.epoch_times)


LEAN_CASES = {
    **{name: (extra, "val_accuracy") for name, extra in SINGLE.items()},
    "momentum-mse-objective-ce": ({"loss": "mse", "momentum": 0.9, "lr": 0.5}, "val_cross_entropy"),
    "adam-mse-objective-mae": ({"optimizer": "adam", "lr": 0.01, "loss": "mse"}, "val_mae"),
    "sgd-float32-mse_logits": ({"momentum": 0.0, "lr": 0.01, "loss": "mse_logits", "dtype": "float32"}, "val_mse"),
    "adam-float32-huge-lr": ({"optimizer": "adam", "lr": 1e4, "loss": "mse_logits", "dtype": "float32"}, "val_mse"),
    "mse_logits-momentum-diverges": ({"loss": "mse_logits", "lr": 0.05, "momentum": 0.9, "epochs": 6}, "val_mse"),
    "ce-momentum-diverges": ({"lr": 0.5, "momentum": 0.9, "epochs": 6}, "val_accuracy"),
}


@pytest.mark.parametrize("case", sorted(LEAN_CASES))
def test_a_lean_run_keeps_bit_identical_curves(digits, case):
    extra, objective = LEAN_CASES[case]
    config = make_config({**BASE, **extra})
    curves = lean_curves(config, objective)
    split = digits[config.dtype]
    full, lean = train_model(config, split), train_model(config, split, curves=curves)
    assert_lean_matches_full(lean, full, curves)
    assert set(lean.history) == curves
    assert (full.status == DIVERGED and full.epochs_run >= 1) == case.endswith("diverges")  # after some curve


def test_a_lean_stack_with_a_stopped_an_exploding_and_a_diverging_member_matches_the_full_stack(digits):
    configs = [make_config({**BASE, **extra}) for extra in [*STACK, {"lr": 0.1, "seed": 3, "epochs": 4}]]
    curves = lean_curves(configs[0], "val_accuracy")
    stop = lambda t, epoch, metrics: t == 3 and epoch == 2  # noqa: E731 - the fourth member is pruned at epoch 2
    full = train_stack(configs, digits["float64"], [stop], include_test=False)
    lean = train_stack(configs, digits["float64"], [stop], include_test=False, curves=curves)
    assert [r.status for r in full] == ["complete", "diverged", "diverged", STOPPED]
    assert full[1].status == DIVERGED and all(np.isfinite(v) for v in full[1].history["train_loss"])  # exploded
    for lean_result, full_result in zip(lean, full):
        assert_lean_matches_full(lean_result, full_result, curves)


def test_a_run_that_diverges_only_through_its_gradient_norm_diverges_in_the_same_epoch_lean(digits, monkeypatch):
    """Adam in float32 on a huge learning rate: the gradient's squares overflow while loss and weights stay
    finite (an inf second moment freezes the weights). Only the gradient norm says so: a lean run that
    dropped it outright would train on to the end."""
    settings = {"hidden": [8], "batch_size": 16, "epochs": 6, "optimizer": "adam", "lr": 1e4, "loss": "mse_logits"}
    config = make_config({**BASE, **settings, "dtype": "float32"})
    curves = lean_curves(config, "val_accuracy")
    full, lean = train_model(config, digits["float32"]), train_model(config, digits["float32"], curves=curves)
    assert full.status == DIVERGED and full.epochs_run >= 1
    assert_lean_matches_full(lean, full, curves)
    monkeypatch.setattr(training, "finite_norms", lambda grad, limit: np.ones(grad.shape[0], dtype=bool))
    assert train_model(config, digits["float32"], curves=curves).status != DIVERGED  # the check is what caught it


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_finite_norms_says_what_the_gradient_norm_says(dtype):
    big = float(np.sqrt(np.finfo(dtype).max))
    rows = [
        np.ones(1000),
        np.full(1000, big * 0.99),  # each square finite, their sum is not
        np.full(1000, big / 40),  # the sum of squares just fits (1000 / 1600 of the largest)
        np.r_[np.ones(999), big * 1.01],  # one square overflows
        np.r_[np.ones(999), np.nan],
        np.r_[np.ones(999), -np.inf],
        np.zeros(1000),
    ]
    grad = np.array(rows).astype(dtype)
    exact = np.isfinite(np.sqrt(np.add.reduce(grad * grad, axis=1)))
    with np.errstate(over="ignore", invalid="ignore"):
        got = finite_norms(grad, finite_limit(grad.dtype, grad.shape[1]))
    np.testing.assert_array_equal(got, exact)
    assert exact.tolist() == [True, False, True, False, False, False, True]  # every branch is exercised


def test_a_lean_run_never_scores_the_training_split_and_only_checks_gradient_norms(split, config, monkeypatch):
    scored, checks = [], []
    logits, check = StackedMLP.logits, training.finite_norms
    name = lambda x: "train" if x is split.x_train else "val" if x is split.x_val else "other"  # noqa: E731
    monkeypatch.setattr(StackedMLP, "logits", lambda self, x: scored.append(name(x)) or logits(self, x))
    monkeypatch.setattr(training, "finite_norms", lambda grad, limit: checks.append(1) or check(grad, limit))
    c = config(epochs=3)  # 20 training rows in batches of 4
    curves = lean_curves(c, "val_accuracy")
    lean = train_model(c, split, include_test=False, curves=curves)
    assert scored == ["val"] * 4 and len(checks) == 3 * 5  # 3 epochs + the final score; a check per batch
    assert set(lean.history) == curves == {"train_loss", "val_accuracy", "val_cross_entropy"}
    scored.clear(), checks.clear()
    full = train_model(c, split, include_test=False)
    assert scored == ["train", "val"] * 3 + ["val"] and not checks
    assert {"train_accuracy", "grad_norm"} <= set(full.history)


def test_a_lean_run_that_wants_train_accuracy_and_grad_norm_gets_them_bit_identical(split, config):
    c = config(optimizer="adam", lr=0.01, epochs=3)
    curves = {"train_accuracy", "grad_norm", "val_accuracy"}
    assert_lean_matches_full(train_model(c, split, curves=curves), train_model(c, split), curves)


STUDY = TINY_STUDY.replace("[budget]", '[sampler]\nname = "tpe"\nseed = 3\n[budget]')


def _search_metrics(folder):
    """{(condition, trial): {metric: [(step, value), ...]}} of a sweep's search trials."""
    client, runs = mlflow_runs(folder)
    found = {}
    for run in runs:
        tags = run.data.tags
        if tags.get("harness.kind") == "search":
            histories = {k: client.get_metric_history(run.info.run_id, k) for k in run.data.metrics}
            found[(tags["harness.condition"], tags["harness.optuna_trial"])] = {
                k: sorted((m.step, m.value) for m in points) for k, points in histories.items()
            }
    return found


def test_a_sweep_trains_search_trials_lean_and_records_what_a_sweep_recording_all_records(tmp_path, monkeypatch):
    from harness.cli import main
    from harness.sweep import speculation, worker

    for name in ("MLFLOW_TRACKING_URI", "HARNESS_OPTUNA_STORAGE", "HARNESS_FAULT"):
        monkeypatch.delenv(name, raising=False)
    real, asked, recorded = worker.train_stack, {}, {}
    for mode in ("lean", "all"):
        calls = asked[mode] = []  # (include_test, curves) of each stack the worker trains

        def spy(configs, *args, calls=calls, **kwargs):
            calls.append((kwargs["include_test"], kwargs["curves"]))
            return real(configs, *args, **kwargs)

        monkeypatch.setattr(worker, "train_stack", spy)
        monkeypatch.setattr(speculation, "train_stack", spy)  # the first stack, trained while the stores open
        folder = tmp_path / mode
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert main(["sweep", write_study(folder, f'{STUDY}\n[record]\nsearch_curves = "{mode}"\n')]) == 0
        recorded[mode] = _search_metrics(folder)
    wanted = {loss: lean_curves(make_config({"loss": loss}), "val_accuracy") for loss in ("mse", "cross_entropy")}
    assert {frozenset(c) for test, c in asked["lean"] if not test} == {frozenset(c) for c in wanted.values()}
    assert all(c is None for test, c in asked["lean"] if test) and asked["lean"][-1][0]  # confirmations: all
    assert all(c is None for _, c in asked["all"]) and len(asked["all"]) == len(asked["lean"])

    lean, every = recorded["lean"], recorded["all"]
    assert lean.keys() == every.keys() and len(lean) == 8
    for (condition, number), metrics in lean.items():
        finals = {"epochs_run", "diverged_epoch", "last_finite_loss"}
        assert set(metrics) - finals == wanted[condition], (condition, number)
        assert metrics == {k: v for k, v in every[(condition, number)].items() if k in metrics}, (condition, number)
