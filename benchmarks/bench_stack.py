"""Stacked-training benchmark: T models per numpy call against scikit-learn, and a stacked sweep.

1. ms per model-epoch for stacks of T = 1, 4, 16, 64 models (digits, 64 hidden ReLU, batch 32, SGD
   momentum 0.9, 50 epochs, each model its own seed and lr), against scikit-learn's MLPClassifier on
   the same configuration, interleaved in one run, 1 BLAS thread; float64 and float32. Also the share
   of this core's float32 matmul peak (a 2048^3 sgemm) that the harness reaches.
2. The quickstart study end to end with stacks of 1, 4, 8 and 16 trials, same trials (random sampler,
   no pruner, so every stack size trains exactly the same settings), and a check that the recorded
   curves are identical.
3. A lean search trial's epoch (``train_stack(curves=lean_curves(...))``: no training-split scoring, no
   gradient norms) against the same stack computing every curve, side by side: the benchmark study's
   network (two hidden layers of 128, batch 32, cross-entropy, momentum) on digits and MNIST-1D, T = 1
   and 16, float64 and float32; and a check that the lean curves equal the full run's (==). ``--lean``
   runs this part alone (under a minute).

    .venv/bin/python benchmarks/bench_stack.py [--rounds 3] [--lean]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train_stack
from harness.records.runs import lean_curves

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 50


def flops_per_model_epoch(split):
    """Multiply-adds x 2 of one epoch: forward + backward (no input gradient) + per-epoch scoring."""
    i, h, c = split.n_features, 64, split.n_classes
    forward = 2 * (i * h + h * c)
    backward = 2 * (i * h + h * c) + 2 * h * c
    return len(split.y_train) * (forward + backward) + (len(split.y_train) + len(split.y_val)) * forward


def stack_ms(split, models, dtype):
    configs = [
        make_config(
            {
                "epochs": EPOCHS,
                "hidden": [64],
                "batch_size": 32,
                "momentum": 0.9,
                "seed": s,
                "lr": 0.01 * (1 + s % 5),
                "dtype": dtype,
            }
        )
        for s in range(models)
    ]
    start = time.perf_counter()
    results = train_stack(configs, split)
    elapsed = time.perf_counter() - start
    assert all(r.status == "complete" for r in results)
    return elapsed / (EPOCHS * models) * 1000


def sklearn_ms(split):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(64,),
        solver="sgd",
        learning_rate_init=0.05,
        momentum=0.9,
        nesterovs_momentum=False,
        batch_size=32,
        max_iter=EPOCHS,
        tol=0.0,
        n_iter_no_change=10_000,
        alpha=0.0,
        random_state=0,
    )
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(split.x_train, split.y_train)
    return (time.perf_counter() - start) / clf.n_iter_ * 1000


def sgemm_peak():
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(1, user_api="blas"):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * 2048**3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quickstart_variant(stack):
    text = (ROOT / "studies" / "quickstart.toml").read_text()
    text = text.replace('name = "quickstart"', f'name = "stack{stack}"').replace('name = "tpe"', 'name = "random"')
    text = text.replace('name = "median"', 'name = "none"')
    return text.replace("trials = 16 ", f"trials = 16\nstack = {stack} ")


def run_sweep(stack, folder):
    path = folder / "study.toml"
    path.write_text(quickstart_variant(stack))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", str(path), "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.perf_counter() - start
    stats = json.loads(out.strip().splitlines()[-1])["stats"][0]
    return wall, stats


def recorded_curves(folder, study):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study).experiment_id
    curves = {}
    for run in client.search_runs([experiment], max_results=5000):
        tags = run.data.tags
        if tags.get("harness.kind") in ("search", "confirm"):
            key = (tags["harness.condition"], tags["harness.kind"], int(tags["harness.optuna_trial"]))
            curves[key] = tuple(
                m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)
            )
    return curves


LEAN_EPOCHS = 3


def lean_stack_ms(dataset, split, models, dtype, lean):
    """ms per stack-epoch of ``models`` benchmark-study models, lean or computing every curve; and the results."""
    configs = [
        make_config(
            {
                "dataset": dataset,
                "epochs": LEAN_EPOCHS,
                "hidden": [128, 128],
                "batch_size": 32,
                "momentum": 0.9,
                "seed": s,
                "lr": 0.01 * (1 + s % 5),
                "dtype": dtype,
            }
        )
        for s in range(models)
    ]
    curves = lean_curves(configs[0], "val_accuracy") if lean else None
    start = time.perf_counter()
    results = train_stack(configs, split, include_test=False, curves=curves)
    return (time.perf_counter() - start) / LEAN_EPOCHS * 1000, results


def lean_vs_full(rounds):
    """Part 3: lean and full epochs interleaved round by round; medians, their ratio, and the curves checked."""
    cases = [(d, dtype, t) for d in ("digits", "mnist1d") for dtype in ("float64", "float32") for t in (1, 16)]
    splits = {(d, dtype): load_split(make_config({"dataset": d, "dtype": dtype})) for d, dtype, _ in cases}
    times = {(case, lean): [] for case in cases for lean in (False, True)}
    identical = True
    for _ in range(rounds):
        for case in cases:
            d, dtype, models = case
            full_ms, full = lean_stack_ms(d, splits[(d, dtype)], models, dtype, lean=False)
            lean_ms, lean = lean_stack_ms(d, splits[(d, dtype)], models, dtype, lean=True)
            times[(case, False)].append(full_ms)
            times[(case, True)].append(lean_ms)
            identical &= all(
                r.history == {k: v for k, v in f.history.items() if k in r.history} for r, f in zip(lean, full)
            )
    print(
        f"3. lean search-trial epoch vs every curve: 2x128 ReLU, batch 32, cross-entropy, momentum 0.9, "
        f"{LEAN_EPOCHS} epochs, {rounds} interleaved rounds, 1 BLAS thread; ms per stack-epoch (medians)"
    )
    for case in cases:
        d, dtype, models = case
        full, lean = (statistics.median(times[(case, lean)]) for lean in (False, True))
        n = len(splits[(d, dtype)].y_train)
        print(
            f"   {d:8s} ({n} rows) {dtype} T={models:<3d} all curves {full:7.1f} ms   lean {lean:7.1f} ms   "
            f"lean/all {lean / full:.2f}"
        )
    print(f"   lean curves identical (==) to the full runs': {identical}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lean", action="store_true", help="part 3 alone: lean vs full epochs (under a minute)")
    args = parser.parse_args()
    rounds = args.rounds
    if args.lean:
        lean_vs_full(rounds)
        return
    splits = {d: load_split(make_config({"dtype": d})) for d in ("float64", "float32")}
    sizes = (1, 4, 16, 64)
    ours = {(d, t): [] for d in splits for t in sizes}
    theirs = {d: [] for d in splits}
    for _ in range(rounds):
        for dtype, split in splits.items():
            theirs[dtype].append(sklearn_ms(split))
            for models in sizes:
                ours[(dtype, models)].append(stack_ms(split, models, dtype))
    peak = sgemm_peak()
    flops = flops_per_model_epoch(splits["float64"])
    print(
        f"1. digits, 64 hidden ReLU, batch 32, SGD momentum 0.9, {EPOCHS} epochs, {rounds} interleaved rounds, "
        f"1 BLAS thread; {flops / 1e6:.1f} MFLOP per model-epoch; float32 sgemm peak {peak:.0f} GFLOP/s"
    )
    for dtype in splits:
        sk = statistics.median(theirs[dtype])
        print(f"   {dtype}: scikit-learn MLPClassifier {sk:.2f} ms/epoch")
        for models in sizes:
            ms = statistics.median(ours[(dtype, models)])
            gflops = flops / (ms / 1000) / 1e9
            print(
                f"     T={models:<3d} {ms:6.2f} ms per model-epoch  ratio to scikit-learn {ms / sk:.3f}  "
                f"{gflops:5.1f} GFLOP/s = {gflops / peak:.0%} of the f32 peak"
            )

    print("2. quickstart end to end (random sampler, no pruner: identical trials at every stack size)")
    curves, walls = {}, {}
    for stack in (1, 4, 8, 16):
        with tempfile.TemporaryDirectory() as tmp:
            walls[stack], stats = run_sweep(stack, Path(tmp))
            curves[stack] = recorded_curves(Path(tmp), f"stack{stack}")
        print(
            f"   stack {stack:2d}: {walls[stack]:5.1f} s wall, training {stats['train_seconds']:.2f} s, "
            f"Optuna {stats['optuna_seconds']:.2f} s, waiting on MLflow {stats['mlflow_blocked_seconds']:.2f} s, "
            f"{stats['epochs']} epochs; speed-up vs stack 1: {walls[1] / walls[stack]:.2f}; "
            f"curves identical to stack 1: {curves[stack] == curves[1]} ({len(curves[stack])} runs)"
        )
    lean_vs_full(rounds)


if __name__ == "__main__":
    main()
