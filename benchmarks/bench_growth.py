"""Growth benchmark: how Optuna's per-trial cost grows with the number of finished trials in a study.

For studies of 10, 100, 1000, 3000 and 10000 finished trials (each with 30 per-epoch intermediate values,
random, built with ``study.add_trials``), it measures, on the harness's storage (Optuna's JournalStorage on a
``JournalFileBackend`` file, with the harness's ``flock`` write lock) and on InMemoryStorage for comparison:

- ``study.ask()`` plus the quickstart's two suggests (``lr`` float log-uniform in [1e-3, 10], ``epochs`` int in
  [5, 60]) with ``TPESampler(seed=0)``: default settings, ``multivariate=True``, and ``constant_liar=True``
  (the harness's setting). Each asked trial is told FAIL so that the finished-trial count stays N.
- one pruning decision: ``trial.report(value, 10)`` + ``trial.should_prune()`` with
  ``MedianPruner(n_startup_trials=5, n_warmup_steps=3)`` (steps 1-9 are reported first, untimed).

Each cell is the median of 20 repetitions (fewer when a cell runs out of its time budget; the output says so).
It then sets the cost against a quickstart trial's training time (~70 ms: 30 epochs at ~2.4 ms, stacked 8 at a
time) and prints the first N where Optuna's per-trial cost exceeds it. The whole run stays under ~6 minutes.

    nice -n 10 .venv/bin/python benchmarks/bench_growth.py
"""

import argparse
import faulthandler
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import InMemoryStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from harness.sweep.storages import JournalFlock

SIZES = (10, 100, 1000, 3000, 10000)
REPS = 20
EPOCHS = 30  # intermediate values per finished trial: what the median pruner reads
PRUNE_STEP = 10
TRIAL_MS = 70.0  # quickstart trial: ~30 epochs x ~2.4 ms per epoch, in a stack of 8
EPOCH_MS = 2.4
BUDGET_S = 330.0  # soft: later cells get fewer repetitions when the run falls behind
HARD_STOP_S = 420.0  # a stuck call ends the process with a traceback instead of hanging
CELL_S = 12.0  # most time one (storage, N, measurement) cell may take after its first 3 repetitions
BUILD_CHUNK = 500

SAMPLERS = {
    "tpe": dict(seed=0),
    "tpe-mv": dict(seed=0, multivariate=True),
    "tpe-liar": dict(seed=0, constant_liar=True),
}


def space():
    """The quickstart's search space, as Optuna distributions (shared by the built and the asked trials)."""
    return {"lr": FloatDistribution(1e-3, 10.0, log=True), "epochs": IntDistribution(5, 60)}


def suggest(trial):
    """The two suggests the harness makes for a quickstart trial."""
    trial.suggest_float("lr", 1e-3, 10.0, log=True)
    trial.suggest_int("epochs", 5, 60)


def finished_trials(n, rng):
    """N complete trials with random params and a random learning curve of EPOCHS values each."""
    dists, trials = space(), []
    for _ in range(n):
        curve = np.clip(rng.uniform(0.1, 1.0) * (1 - np.exp(-np.arange(1, EPOCHS + 1) / rng.uniform(1, 10))), 0, 1)
        params = {"lr": float(10 ** rng.uniform(-3, 1)), "epochs": int(rng.integers(5, 61))}
        values = {epoch: float(v + rng.normal(0, 0.01)) for epoch, v in enumerate(curve, start=1)}
        trials.append(
            create_trial(params=params, distributions=dists, value=values[EPOCHS], intermediate_values=values)
        )
    return trials


def journal(path):
    """The storage the harness opens for ``journal:<path>``."""
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFlock(path)))


def build(storage, n, rng, deadline):
    """A study with up to N finished trials, added in chunks so that a slow storage stops at the deadline."""
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3),
    )
    start, built = time.perf_counter(), 0
    while built < n and time.monotonic() < deadline:
        chunk = finished_trials(min(BUILD_CHUNK, n - built), rng)
        study.add_trials(chunk)
        built += len(chunk)
    return study, built, time.perf_counter() - start


def repeat(measure, deadline):
    """Milliseconds of REPS calls of ``measure`` (at least 3; fewer than REPS when the cell's time is up)."""
    cell_end, times = min(time.monotonic() + CELL_S, deadline), []
    while len(times) < REPS and (len(times) < 3 or time.monotonic() < cell_end):
        times.append(measure() * 1e3)
    return times


def ask_once(study):
    """Seconds of one ask + suggests; the trial is failed so that it neither runs on nor counts as finished."""
    start = time.perf_counter()
    trial = study.ask()
    suggest(trial)
    took = time.perf_counter() - start
    study.tell(trial, state=TrialState.FAIL)
    return took


def prune_once(study, rng):
    """Seconds of one report + should_prune at PRUNE_STEP, on a trial that reported the epochs before it."""
    trial = study.ask()
    suggest(trial)
    for step in range(1, PRUNE_STEP):
        trial.report(float(rng.uniform()), step)
    start = time.perf_counter()
    trial.report(float(rng.uniform()), PRUNE_STEP)
    trial.should_prune()
    took = time.perf_counter() - start
    study.tell(trial, state=TrialState.FAIL)
    return took


def reopen_seconds(path):
    """Seconds a new process spends replaying the journal before its first ask: paid once per worker."""
    start = time.perf_counter()
    optuna.load_study(study_name=None, storage=journal(path)).get_trials(deepcopy=False)
    return time.perf_counter() - start


def measure(kind, n, folder, deadline):
    """Every number of one (storage, N) row."""
    rng = np.random.default_rng(n)
    path = Path(folder) / f"growth-{n}.journal"
    study, built, build_s = build(journal(path) if kind == "journal" else InMemoryStorage(), n, rng, deadline)
    row = {"kind": kind, "n": n, "built": built, "build_s": build_s, "reopen_s": None, "mb": None}
    if kind == "journal":
        row["reopen_s"], row["mb"] = reopen_seconds(path), path.stat().st_size / 1e6
    for name, options in SAMPLERS.items():
        study.sampler = optuna.samplers.TPESampler(**options)
        row[name] = repeat(lambda: ask_once(study), deadline)
    study.sampler = optuna.samplers.TPESampler(seed=0)
    row["prune"] = repeat(lambda: prune_once(study, rng), deadline)
    return row


def cell(times):
    """Median in ms, with the repetition count when it is short of REPS."""
    text = f"{statistics.median(times):.2f}"
    return text if len(times) >= REPS else f"{text} ({len(times)})"


def print_header():
    """What ran, so that numbers from different machines can be told apart."""
    versions = f"Optuna {optuna.__version__}, numpy {np.__version__}, Python {platform.python_version()}"
    print(f"{versions}, {os.cpu_count()} CPUs")
    print(
        f"{EPOCHS} intermediate values per finished trial; pruning step {PRUNE_STEP}; "
        f"median of {REPS} repetitions (count in brackets when fewer)"
    )


def print_build(rows):
    """Building the studies, and the replay a fresh process pays on the journal."""
    print("\nStudy set-up (seconds; reopen = load_study on a fresh JournalStorage, replaying the file)")
    print(f"{'storage':<8} {'N':>6} {'built':>6} {'build s':>8} {'reopen s':>9} {'journal MB':>11}")
    for r in rows:
        reopen = f"{r['reopen_s']:.2f}" if r["reopen_s"] is not None else "-"
        mb = f"{r['mb']:.1f}" if r["mb"] is not None else "-"
        print(f"{r['kind']:<8} {r['n']:>6} {r['built']:>6} {r['build_s']:>8.2f} {reopen:>9} {mb:>11}")


def print_costs(rows):
    """The per-call costs against N."""
    print("\nPer-call cost, ms (ask = study.ask() + 2 suggests; prune = report + should_prune at one step)")
    names = [*SAMPLERS, "prune"]
    print(f"{'storage':<8} {'N':>6} " + " ".join(f"{'ask ' + s if s != 'prune' else s:>14}" for s in names))
    for r in rows:
        print(f"{r['kind']:<8} {r['built']:>6} " + " ".join(f"{cell(r[s]):>14}" for s in names))


def per_trial(r):
    """Optuna's cost per trial in ms: one ask (default TPE) + one pruning check, and + one check per epoch."""
    ask, prune = statistics.median(r["tpe"]), statistics.median(r["prune"])
    return ask + prune, ask + EPOCHS * prune


def print_comparison(rows):
    """Optuna's per-trial cost as a share of the trial's own training time, and where it overtakes it."""
    print(
        f"\nAgainst training: a quickstart trial trains ~{TRIAL_MS:.0f} ms ({EPOCHS} epochs x ~{EPOCH_MS} ms, "
        "stacked 8 at a time); ask with default TPE"
    )
    print(
        f"{'storage':<8} {'N':>6} {'ask+1 check ms':>15} {'% of trial':>11} {'ask+30 checks ms':>17} {'% of trial':>11}"
    )
    for r in rows:
        one, every = per_trial(r)
        print(
            f"{r['kind']:<8} {r['built']:>6} {one:>15.2f} {one / TRIAL_MS:>11.1%} "
            f"{every:>17.2f} {every / TRIAL_MS:>11.1%}"
        )
    print(f"\nFirst N where Optuna's per-trial cost exceeds the ~{TRIAL_MS:.0f} ms of training:")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        for label, index in (("ask + 1 check", 0), (f"ask + {EPOCHS} checks (one per epoch)", 1)):
            over = next((r["built"] for r in mine if per_trial(r)[index] > TRIAL_MS), None)
            answer = f"N = {over}" if over else f"none up to N = {mine[-1]['built']}"
            print(f"  {kind:<8} {label:<34} {answer}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="finished-trial counts")
    parser.add_argument("--no-memory", action="store_true", help="journal storage only")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(HARD_STOP_S, exit=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    start = time.monotonic()
    deadline = start + BUDGET_S
    print_header()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as folder:
        for n in args.sizes:
            for kind in ("journal",) if args.no_memory else ("journal", "memory"):
                rows.append(measure(kind, n, folder, deadline))
                print(f"  [{time.monotonic() - start:5.0f} s] {kind} N={n} done", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["kind"], r["n"]))
    print_build(rows)
    print_costs(rows)
    print_comparison(rows)
    print(f"\nTotal {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
