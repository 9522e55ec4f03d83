"""Sweep benchmark: storage locking, recording overhead, workers, pruning, measured in one run.

1. Optuna storage for local workers: the journal file against SQLite, two processes sharing one study
   (trials per second, and any "database is locked" errors).
2. The quickstart sweep end to end (1 worker): share of the worker's wall time spent in Optuna calls
   and waiting on MLflow recording.
3. ``--workers 2`` against ``--workers 1`` on the same study: speed-up (quickstart, and a variant
   whose trials train longer).
4. Pruning: epochs trained and best validation score per condition with the median pruner and without.

    .venv/bin/python benchmarks/bench_sweep.py
"""

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.toml"


def _storage_worker(kind, path, trials, errors):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if kind == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(path))
    else:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.load_study(study_name="bench", storage=storage)
    for _ in range(trials):
        try:
            trial = study.ask()
            x = trial.suggest_float("x", -1, 1)
            for step in range(10):
                trial.report(x * step, step)
            study.tell(trial, x * x)
        except Exception as exc:  # noqa: BLE001 - counted, that is the point
            errors.put(f"{type(exc).__name__}: {exc}"[:200])


def storage_comparison(trials=40):
    import optuna

    rows = []
    for kind in ("journal", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / ("bench.journal" if kind == "journal" else "bench.db"))
            if kind == "journal":
                from optuna.storages import JournalStorage
                from optuna.storages.journal import JournalFileBackend

                storage = JournalStorage(JournalFileBackend(path))
            else:
                storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
            optuna.create_study(study_name="bench", storage=storage)  # created once, before workers
            errors = multiprocessing.Queue()
            start = time.perf_counter()
            procs = [
                multiprocessing.Process(target=_storage_worker, args=(kind, path, trials, errors)) for _ in range(2)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            wall = time.perf_counter() - start
            found = []
            while not errors.empty():
                found.append(errors.get())
            done = len(
                [t for t in optuna.load_study(study_name="bench", storage=storage).trials if t.state.name == "COMPLETE"]
            )
            rows.append((kind, done, wall, found))
    return rows


def sweep(study_text, workdir, workers):
    path = Path(workdir) / "study.toml"
    path.write_text(study_text)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", str(path), "--workers", str(workers), "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.perf_counter() - start
    return json.loads(out.strip().splitlines()[-1]), wall


def variant(name, **changes):
    text = QUICKSTART.read_text().replace('name = "quickstart"', f'name = "{name}"')
    for old, new in changes.values():
        assert old in text, old
        text = text.replace(old, new)
    return text


def main():
    print("1. Optuna storage, 2 processes x 40 trials (10 reports each) on one study")
    for kind, done, wall, errors in storage_comparison():
        print(
            f"   {kind:8s} {done} trials complete, {done / wall:6.1f} trials/s, errors: {len(errors)}"
            + (f" (first: {errors[0]})" if errors else "")
        )

    with tempfile.TemporaryDirectory() as tmp:
        result, wall1 = sweep(variant("bench-w1"), tmp, 1)
    stats = result["stats"][0]
    share = (stats["optuna_seconds"] + stats["mlflow_blocked_seconds"]) / stats["wall_seconds"]
    print(
        "2. quickstart sweep, 1 worker: "
        f"{stats['trials']} trials + {stats['confirms']} confirmation runs, command wall {wall1:.1f} s, "
        f"worker wall {stats['wall_seconds']:.1f} s"
    )
    print(
        f"   training {stats['train_seconds']:.2f} s ({stats['train_seconds'] / stats['wall_seconds']:.0%}), "
        f"Optuna calls {stats['optuna_seconds']:.2f} s ({stats['optuna_seconds'] / stats['wall_seconds']:.0%}), "
        f"waiting on MLflow {stats['mlflow_blocked_seconds']:.2f} s "
        f"({stats['mlflow_blocked_seconds'] / stats['wall_seconds']:.0%}); Optuna + MLflow = {share:.0%}"
    )
    print(
        f"   {stats['epochs']} epochs trained: {stats['train_seconds'] / stats['epochs'] * 1000:.2f} ms per epoch, "
        f"Optuna {stats['optuna_seconds'] / stats['epochs'] * 1000:.2f} ms per epoch"
    )

    heavy = variant(
        "bench-heavy", hidden=("hidden = [64]", "hidden = [256, 256]"), trials=("trials = 16", "trials = 8")
    )
    print("3. --workers 2 against --workers 1 (command wall time, same study, fresh stores)")
    for label, text in (("quickstart", variant("bench-w")), ("quickstart, 256x256 hidden, 8 trials", heavy)):
        walls = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                _, walls[workers] = sweep(text, tmp, workers)
        print(f"   {label}: 1 worker {walls[1]:.1f} s, 2 workers {walls[2]:.1f} s, speed-up {walls[1] / walls[2]:.2f}")

    print("4. pruning (quickstart, 1 worker): epochs trained and best validation accuracy per condition")
    for label, text in (
        ("median pruner", variant("bench-prune")),
        ("no pruner", variant("bench-noprune", pruner=('name = "median"', 'name = "none"'))),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            result, wall = sweep(text, tmp, 1)
        epochs = sum(s["epochs"] for s in result["stats"])
        best = ", ".join(f"{r['condition']} {r['best_val_accuracy']:.4f}" for r in result["summary"])
        print(f"   {label:14s} {epochs:5d} epochs, {wall:5.1f} s; best: {best}")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    main()
