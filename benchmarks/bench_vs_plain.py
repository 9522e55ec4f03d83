"""The harness against the script a user would write instead (``plain_sweep.py``: scikit-learn's
MLPClassifier/MLPRegressor with ``partial_fit``, Optuna's TPE and median pruner, one nested MLflow run
per trial, 5 confirmation seeds of each best), on the quickstart study, in one run.

Each round runs every variant once, in a rotating order, each in a fresh folder with a fresh store:
the plain script, the plain script logging the set a harness search trial records (``--lean``: train
loss, validation accuracy and validation loss per epoch), ``harness sweep`` (default command) and
``harness sweep --workers 2``. Every row prints its speed against both plain variants. Wall time is
the command's, from start to exit; runs and epochs trained are read back from each store (the sum of
every run's ``epochs_run``), so the comparison says how much training each wall second bought.
Then the start-up: the first epoch's end (its metric timestamp) after ``harness sweep`` starts, on a
fresh store and on an existing one.

    .venv/bin/python benchmarks/bench_vs_plain.py                  # quickstart, 2 rounds
    .venv/bin/python benchmarks/bench_vs_plain.py --scale 4        # 4x the trials (64 per condition)
"""

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.toml"
TRIALS = 16  # the quickstart's per-condition budget


def store_counts(folder):
    """(runs, epochs trained) in a folder's store."""
    with sqlite3.connect(Path(folder) / "mlruns" / "mlflow.db") as db:
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        epochs = db.execute("SELECT coalesce(sum(value), 0) FROM latest_metrics WHERE key = 'epochs_run'").fetchone()[0]
    return runs, int(epochs)


def first_epoch_end(folder, since_ms):
    """Seconds from ``since_ms`` to the end of the first epoch any trained run of the folder's store logged
    (a nested run: a parent's curves, the means of its seeds', are timed at the parent's start)."""
    with sqlite3.connect(Path(folder) / "mlruns" / "mlflow.db") as db:
        first = db.execute(
            "SELECT min(timestamp) FROM metrics WHERE step = 1 AND timestamp >= ? AND run_uuid IN "
            "(SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId')",
            (since_ms,),
        )
        return (first.fetchone()[0] - since_ms) / 1000


def run(command, folder, env=None):
    """Wall seconds of ``command`` run in ``folder``, and its stdout; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def variants(trials):
    uri = "sqlite:///mlruns/mlflow.db"
    script = str(ROOT / "benchmarks" / "plain_sweep.py")
    plain = [sys.executable, script, "--tracking-uri", uri, "--trials", str(trials)]
    sweep = [sys.executable, "-m", "harness", "sweep", str(QUICKSTART), "--trials", str(trials), "--json"]
    return {
        "plain script": plain,
        "plain script, lean set": [*plain, "--lean"],
        "harness sweep": sweep,
        "harness sweep --workers 2": [*sweep, "--workers", "2"],
    }


def measure(trials, rounds):
    """{variant: [(wall, runs, epochs, sweep stats or None), ...]} over ``rounds`` rotating rounds."""
    commands = variants(trials)
    names = list(commands)
    results = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            with tempfile.TemporaryDirectory(prefix="bench-vs-plain-") as folder:
                wall, out = run(commands[name], folder)
                stats = json.loads(out.strip().splitlines()[-1])["stats"] if "harness" in name else None
                results[name].append((wall, *store_counts(folder), stats))
                print(f"  round {round_ + 1}: {name:<27} {wall:6.1f} s", flush=True)
    return results


def report(trials, results):
    plain = statistics.median(r[0] for r in results["plain script"])
    lean = statistics.median(r[0] for r in results["plain script, lean set"])
    print(f"\nquickstart at {trials} trials per condition (medians of {len(results['plain script'])} rounds):")
    print(f"{'variant':<27} {'wall s':>7} {'runs':>5} {'epochs':>7} {'ms/epoch':>9} {'vs plain':>9} {'vs lean':>8}")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        runs, epochs = rows[0][1], rows[0][2]
        ratios = f"{plain / wall:8.2f}x {lean / wall:7.2f}x"
        print(f"{name:<27} {wall:7.1f} {runs:5d} {epochs:7d} {wall / epochs * 1000:9.2f} {ratios}")
    for name, rows in results.items():
        for stats in (r[3] for r in rows if r[3]):
            workers = " + ".join(
                f"train {s['train_seconds']:.1f} s = {s['train_seconds'] / s['wall_seconds']:.0%} of "
                f"{s['wall_seconds']:.1f} s (Optuna {s['optuna_seconds']:.1f} s, waiting on MLflow "
                f"{s['mlflow_blocked_seconds']:.1f} s)"
                for s in stats
            )
            print(f"  {name}: worker {workers}")
            for s in stats:
                busy = s.get("recorder_busy_seconds", {})
                top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1])[:5])
                print(f"    its MLflow recorder process busy {sum(busy.values()):.1f} s ({top})")


def startup():
    """Seconds to the first epoch's end: on a fresh store the first time on a machine (no store template
    in the cache: MLflow builds the schema), on a fresh store copied from the template, then on the same
    store (another study)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as root:
        cache = str(Path(root) / "cache")  # empty: the first sweep builds the schema and keeps the template
        for name, folder in (("quickstart", "first"), ("quickstart", "second"), ("quickstart_again", "second")):
            folder = Path(root) / folder
            folder.mkdir(exist_ok=True)
            study = folder / f"{name}.toml"
            study.write_text(QUICKSTART.read_text().replace('name = "quickstart"', f'name = "{name}"'))
            since = int(time.time() * 1000)
            command = [sys.executable, "-m", "harness", "sweep", str(study), "--trials", "4"]
            run(command, folder, env={**os.environ, "XDG_CACHE_HOME": cache})
            rows.append(first_epoch_end(folder, since))
    print(
        f"\nfirst epoch trained after `harness sweep` started: {rows[0]:.2f} s on a fresh store the first time "
        f"(no template), {rows[1]:.2f} s on a fresh store from the template, {rows[2]:.2f} s on an existing one "
        "(target <= 1.5 s)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", type=int, default=1, help="trials per condition = 16 x SCALE")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    results = measure(TRIALS * args.scale, args.rounds)
    report(TRIALS * args.scale, results)
    startup()


if __name__ == "__main__":
    main()
