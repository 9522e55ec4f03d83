"""Training-engine benchmark: harness vs scikit-learn's MLPClassifier, measured side by side.

Same configuration for both: digits, 64 hidden ReLU, batch 32, SGD momentum 0.9, lr 0.05, 50 epochs,
one BLAS thread. The two are interleaved round by round, so machine noise hits both alike; the
figures printed are medians and their ratio. Also printed: the share of a recorded run's wall time
spent blocked on MLflow (the one-off ``import mlflow`` separately), and the time of ``harness --help``.

    .venv/bin/python benchmarks/bench_train.py [--rounds 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from threadpoolctl import threadpool_limits

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train_model

EPOCHS = 50


def harness_epoch_ms(split, dtype):
    config = make_config(
        {"epochs": EPOCHS, "hidden": [64], "batch_size": 32, "lr": 0.05, "momentum": 0.9, "dtype": dtype}
    )
    start = time.perf_counter()
    result = train_model(config, split)
    assert result.status == "complete"
    return (time.perf_counter() - start) / EPOCHS * 1000


def sklearn_epoch_ms(split):
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


def recording_share(rounds):
    """Medians over ``harness train`` commands: wall, the run's own time, time blocked on MLflow, training."""
    import json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/bench.db"
        argv = [
            sys.executable,
            "-m",
            "harness",
            "train",
            "--epochs",
            str(EPOCHS),
            "--hidden",
            "64",
            "--batch-size",
            "32",
            "--lr",
            "0.05",
            "--momentum",
            "0.9",
            "--tracking-uri",
            uri,
            "--json",
        ]
        subprocess.run(argv, capture_output=True, check=True)  # creates the store's schema once
        for _ in range(rounds):
            start = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - start
            timings = json.loads(out.strip().splitlines()[-1])["timings"]
            rows.append((wall, timings))
    median = lambda key: statistics.median(t[key] for _, t in rows)  # noqa: E731
    wall = statistics.median(w for w, _ in rows)
    return wall, median("total_seconds"), median("recording_blocked_seconds"), median("train_seconds")


def command_epoch_ms(rounds, long=210, short=10):
    """Per-epoch cost through the commands, start-up cancelled: (wall of a ``long``-epoch run minus a
    ``short`` one) / (long - short), for ``harness train`` and for scikit-learn's ``fit`` run as a
    script on the same settings (medians over interleaved rounds)."""
    script = (
        "import sys, warnings; from sklearn.datasets import load_digits; "
        "from sklearn.model_selection import train_test_split; from sklearn.preprocessing import StandardScaler; "
        "from sklearn.neural_network import MLPClassifier; warnings.simplefilter('ignore'); "
        "x, y = load_digits(return_X_y=True); x, _, y, _ = train_test_split(x, y, train_size=0.6, random_state=0); "
        "MLPClassifier((64,), solver='sgd', learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=False, "
        "batch_size=32, max_iter=int(sys.argv[1]), tol=0.0, n_iter_no_change=10**6, alpha=0.0, random_state=0)"
        ".fit(StandardScaler().fit_transform(x), y)"
    )
    walls = {("harness", n): [] for n in (long, short)} | {("sklearn", n): [] for n in (long, short)}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/bench.db"
        flags = ["--hidden", "64", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--tracking-uri", uri]
        commands = {
            "harness": lambda n: [sys.executable, "-m", "harness", "train", "--epochs", str(n), *flags],
            "sklearn": lambda n: [sys.executable, "-c", script, str(n)],
        }
        subprocess.run(commands["harness"](1), capture_output=True, check=True)  # the store's schema, once
        for _ in range(rounds):
            for (who, n), times in walls.items():
                start = time.perf_counter()
                subprocess.run(commands[who](n), capture_output=True, check=True)
                times.append(time.perf_counter() - start)
    med = {key: statistics.median(times) for key, times in walls.items()}
    per_epoch = {who: (med[(who, long)] - med[(who, short)]) / (long - short) * 1000 for who in commands}
    return per_epoch["harness"], per_epoch["sklearn"]


def help_seconds():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds

    splits = {d: load_split(make_config({"dtype": d})) for d in ("float64", "float32")}
    harness_ms = {"float64": [], "float32": []}
    sklearn_ms = {"float64": [], "float32": []}
    sklearn_epoch_ms(splits["float64"])  # warm-up
    for _ in range(rounds):
        for dtype, split in splits.items():
            harness_ms[dtype].append(harness_epoch_ms(split, dtype))
            sklearn_ms[dtype].append(sklearn_epoch_ms(split))
    n_train = len(splits["float64"].y_train)
    print(
        f"digits: {n_train} training rows, 64 hidden ReLU, batch 32, SGD momentum 0.9, {EPOCHS} epochs, "
        f"{rounds} interleaved rounds, 1 BLAS thread; harness also scores train+validation every epoch"
    )
    for dtype in splits:
        ours, theirs = statistics.median(harness_ms[dtype]), statistics.median(sklearn_ms[dtype])
        print(
            f"{dtype}: harness {ours:6.2f} ms/epoch   scikit-learn {theirs:6.2f} ms/epoch   "
            f"ratio harness/sklearn = {ours / theirs:.3f}"
        )

    wall, run_s, blocked, train_s = recording_share(rounds)
    print(
        f"harness train command ({EPOCHS} epochs, existing store): wall {wall:.2f} s; from creating the run to its "
        f"record {run_s:.2f} s, of which training {train_s:.2f} s and waiting on MLflow {blocked:.2f} s (the recorder "
        "process imports mlflow and opens the store meanwhile)"
    )
    ours, theirs = command_epoch_ms(rounds)
    print(
        f"through the commands (210- minus 10-epoch runs): harness train {ours:.2f} ms/epoch, scikit-learn fit "
        f"{theirs:.2f} ms/epoch, ratio {ours / theirs:.2f} (target <= 0.5)"
    )
    print(f"harness --help: {help_seconds():.3f} s")


if __name__ == "__main__":
    main()
