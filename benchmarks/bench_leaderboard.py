"""Time to a leaderboard: the shipped optimizer benchmark (``examples/benchmark_lion.toml``) at a stated
budget, 1 worker against ``--workers 2``, its achieved GFLOP/s against this machine's measured GEMM peak,
in one run; with ``--against REF``, the same study run from a temporary git worktree of REF, interleaved.

First the peak: numpy matmul, one BLAS thread (and every core on the large one), float32 and float64, at
the stacked engine's shape (T x batch x hidden by hidden x hidden) and at a large square; the large
square's one-thread figure is the reference, times the cores counted. Then each variant, a real
``python -m harness sweep STUDY --json -q`` in a fresh folder with a fresh store, with PYTHONPATH set to
the tree it measures (this one, or REF's worktree in the same venv), rounds in a rotating order. Wall
time is the command's, from start to exit; runs and epochs trained are read back from the store (the sum
of every run's ``epochs_run``, per condition).

The FLOP lower bound counts the matrix products of those epochs and nothing else (``epoch_flops``): per
training row 2W for the forward pass, 2W for the weight gradients and 2(W - W1) for the input gradients
of every layer but the first (W the network's weights, W1 its first layer's); per validation row 2W (one
scoring pass per epoch); and per training row 2W more in each epoch of a run that records
``train_accuracy`` (its training-split scoring). Not counted: biases, activations, the loss, the
optimizer's update, gradient norms, each run's final validation and test scoring. Network and data set
sizes are read from the study (its conditions' settings, search parameters at their defaults) and the
splits it trains on.

    .venv/bin/python benchmarks/bench_leaderboard.py                      # 4 trials x 3 seeds, 1 round
    .venv/bin/python benchmarks/bench_leaderboard.py --full               # the study's own budget
    .venv/bin/python benchmarks/bench_leaderboard.py --full --against main~5 --rounds 2
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUDY = "examples/benchmark_lion.toml"  # relative to a tree's root: this one's, or REF's worktree
TRIALS, CONFIRM_SEEDS = 4, 3  # the default budget: about 50 s for one worker on 2 idle cores
STACK = 8  # the sweep's default stack: the engine's T
SQUARE = 1024


def epoch_flops(sizes, train_rows, val_rows, score_train=False):
    """FLOPs of the matrix products of one epoch of one model of layer ``sizes`` (inputs, hidden..., classes):
    the training pass over ``train_rows`` (forward, weight gradients, input gradients of all layers but the
    first), one validation scoring pass over ``val_rows`` and, with ``score_train``, one over the training rows."""
    weights = sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    first = sizes[0] * sizes[1]
    training = 2 * weights + 2 * weights + 2 * (weights - first)
    return train_rows * training + val_rows * 2 * weights + (train_rows * 2 * weights if score_train else 0)


def gemm_gflops(dtype, a_shape, b_shape, threads=1, seconds=0.4):
    """Best GFLOP/s of ``np.matmul`` at these shapes on ``threads`` BLAS threads: calls timed in batches of
    at least 20 ms, the fastest batch kept, for ``seconds``. One thread is timed in CPU seconds (OpenBLAS
    runs it in this thread), so other processes sharing the core do not lower a core's peak; more threads in
    wall seconds (what the cores delivered beside whatever else ran)."""
    from threadpoolctl import threadpool_limits

    clock = time.process_time if threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    out = np.matmul(a, b)
    flops = 2 * out.size * a_shape[-1]
    best, calls = float("inf"), 1
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=out)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or best == float("inf"):
            start = clock()
            for _ in range(calls):
                np.matmul(a, b, out=out)
            took = clock() - start
            if took < 0.02:
                calls *= 2
                continue
            best = min(best, took / calls)
    return flops / best / 1e9


def measure_peaks(batch, hidden):
    """{dtype: {"engine": GFLOP/s, "square": GFLOP/s, "square_all": GFLOP/s}}, printed as measured."""
    cores = os.cpu_count() or 1
    engine = ((STACK, batch, hidden), (STACK, hidden, hidden))
    peaks = {}
    print("GEMM peak, numpy matmul (best batch of calls; 1 thread per CPU second, more threads per wall second):")
    for dtype in ("float32", "float64"):
        peaks[dtype] = {
            "engine": gemm_gflops(dtype, *engine),
            "square": gemm_gflops(dtype, (SQUARE, SQUARE), (SQUARE, SQUARE)),
            "square_all": gemm_gflops(dtype, (SQUARE, SQUARE), (SQUARE, SQUARE), threads=cores),
        }
        p = peaks[dtype]
        print(
            f"  {dtype}: {p['engine']:6.1f} GFLOP/s at the engine's shape ({STACK} x {batch} x {hidden}) @ "
            f"({STACK} x {hidden} x {hidden}), 1 thread; {p['square']:6.1f} at {SQUARE} x {SQUARE} square, "
            f"1 thread; {p['square_all']:6.1f} at the square on {cores} threads"
        )
    counts = sorted({1, 2, cores})
    print(
        "  reference peak = the square's 1-thread figure x cores: "
        + "; ".join(f"{d} " + ", ".join(f"{n} core(s) {peaks[d]['square'] * n:.1f}" for n in counts) for d in peaks)
        + " GFLOP/s"
    )
    return peaks


def describe(study_path):
    """{condition: {"sizes", "train", "val", "dtype", "batch"}}: each condition's network and split, as the
    tree this process imports builds them (search parameters at their defaults)."""
    from harness.engine.data import load_split
    from harness.engine.training import sizes_of
    from harness.studies.parse import read_study

    study = read_study(str(study_path))
    found = {}
    for condition in study.conditions:
        config = study.config_for(condition, {}, 0)
        split = load_split(config)
        found[condition.name] = {
            "sizes": sizes_of(config, split),
            "train": len(split.y_train),
            "val": len(split.y_val),
            "dtype": config.dtype,
            "batch": config.batch_size,
        }
    return found


def describe_tree(tree, study):
    """``describe`` of a tree's study by that tree's code; this tree's code when REF's cannot (said so)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, __file__, "--describe", str(tree / study)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode == 0:
        return json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  ({tree}: its code could not describe its study, this tree's code did: {done.stderr.strip()[-300:]})")
    return describe(tree / study)


def store_epochs(folder):
    """(runs trained, {condition: (epochs, epochs of runs recording train_accuracy)}) of a folder's store;
    every epoch must belong to a run tagged with its condition."""
    with sqlite3.connect(Path(folder) / "mlruns" / "mlflow.db") as db:
        total, runs = db.execute(
            "SELECT coalesce(sum(value), 0), count(*) FROM latest_metrics WHERE key = 'epochs_run'"
        ).fetchone()
        rows = db.execute(
            "SELECT t.value, sum(m.value), sum(CASE WHEN EXISTS (SELECT 1 FROM latest_metrics a WHERE "
            "a.run_uuid = m.run_uuid AND a.key = 'train_accuracy') THEN m.value ELSE 0 END) "
            "FROM latest_metrics m JOIN tags t ON t.run_uuid = m.run_uuid AND t.key = 'harness.condition' "
            "WHERE m.key = 'epochs_run' GROUP BY t.value"
        ).fetchall()
    per_condition = {name: (int(epochs), int(scored)) for name, epochs, scored in rows}
    if sum(e for e, _ in per_condition.values()) != total:
        sys.exit(f"{folder}: {int(total)} epochs in the store, but not every run carries harness.condition")
    return runs, per_condition


def lower_bound(per_condition, described):
    """FLOP lower bound of the epochs a store records (``epoch_flops`` per condition)."""
    flops = 0
    for name, (epochs, scored) in per_condition.items():
        d = described[name]
        lean = epoch_flops(d["sizes"], d["train"], d["val"])
        flops += epochs * lean + scored * (epoch_flops(d["sizes"], d["train"], d["val"], True) - lean)
    return flops


def variants(trees, study, workers, budget):
    """{label: (tree label, tree, workers, command)}: each tree's study at ``budget``, once per worker count."""
    found = {}
    for tree_label, tree in trees.items():
        for n in workers:
            command = [sys.executable, "-m", "harness", "sweep", str(tree / study), *budget, "--json", "-q"]
            if n > 1:
                command += ["--workers", str(n)]
            found[label_of(tree_label, n)] = (tree_label, tree, n, command)
    return found


def label_of(tree_label, workers):
    return f"{tree_label}, {workers} worker{'s' if workers > 1 else ''}"


def run_variant(tree, command):
    """(wall s, runs trained, {condition: epochs...}, the sweep's per-worker stats) of one fresh-folder sweep."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_OPTUNA_STORAGE")}
    env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as folder:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            out, err = process.communicate()
        except KeyboardInterrupt:  # the sweep stops as on Ctrl-C (its own clean-up) before its folder goes
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=60)
            process.kill()
            raise
        wall = time.perf_counter() - start
        if process.returncode != 0:
            sys.exit(f"{' '.join(map(str, command))} failed ({process.returncode}):\n{err[-2000:]}")
        runs, per_condition = store_epochs(folder)
    stats = json.loads(out.strip().splitlines()[-1]).get("stats", [])
    return wall, runs, per_condition, stats


def measure(commands, rounds):
    """{label: [run_variant(...), ...]} over ``rounds`` rounds, each in a rotated order."""
    labels = list(commands)
    results = {label: [] for label in labels}
    width = max(map(len, labels))
    for round_ in range(rounds):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            _, tree, _, command = commands[label]
            results[label].append(run_variant(tree, command))
            print(f"  round {round_ + 1}: {label:<{width}} {results[label][-1][0]:6.1f} s", flush=True)
    return results


def print_sizes(described):
    """The networks and splits the FLOP count uses, one line per shape."""
    seen = {}
    for name, d in described.items():
        seen.setdefault((tuple(d["sizes"]), d["train"], d["val"], d["dtype"]), []).append(name)
    print("FLOP lower bound of one epoch of one model (matrix products only; the module docstring says which):")
    for (sizes, train, val, dtype), names in seen.items():
        lean, scored = epoch_flops(sizes, train, val), epoch_flops(sizes, train, val, True)
        print(
            f"  {' x '.join(map(str, sizes))} {dtype}, {train} training / {val} validation rows: "
            f"{lean / 1e6:.2f} MFLOP, {scored / 1e6:.2f} with training-split scoring ({len(names)} conditions, "
            f"{names[0]}...)"
        )


def report(results, commands, described, peaks):
    """One row per variant (medians over the rounds), against its tree's 1-worker run; returns the walls and
    each variant's FLOP lower bound (its first round's)."""
    cores = os.cpu_count() or 1
    walls = {label: statistics.median(r[0] for r in rows) for label, rows in results.items()}
    flops_of = {}
    rounds, width = len(next(iter(results.values()))), max(map(len, results))
    print(
        f"\nmedians of {rounds} round(s); runs = runs that trained (search trials and confirmations), epochs = "
        "the sum of their epochs_run, read from the store; GFLOP = the lower bound of those epochs"
    )
    print(
        f"{'variant':<{width}} {'wall s':>7} {'runs':>5} {'epochs':>7} {'GFLOP':>7} {'GFLOP/s':>8} {'dtype':>8} "
        f"{'of peak x workers':>18} {f'of peak x {cores} cores':>19} {'vs 1 worker':>12}"
    )
    for label, rows in results.items():
        tree_label, tree, workers, _ = commands[label]
        wall, runs, per_condition = walls[label], rows[0][1], rows[0][2]
        flops = flops_of[label] = lower_bound(per_condition, described[tree_label])
        dtypes = sorted({d["dtype"] for d in described[tree_label].values()})
        peak = peaks[dtypes[0]]["square"] if len(dtypes) == 1 else float("nan")
        rate = flops / wall / 1e9
        one = walls.get(label_of(tree_label, 1), wall)
        print(
            f"{label:<{width}} {wall:7.1f} {runs:5d} {sum(e for e, _ in per_condition.values()):7d} {flops / 1e9:7.1f} "
            f"{rate:8.2f} {'/'.join(dtypes):>8} {rate / (peak * workers):18.1%} {rate / (peak * cores):19.1%} "
            f"{one / wall:11.2f}x"
        )
    return walls, flops_of


def print_stats(results, flops_of):
    """Where each variant's time went, as its sweep's workers counted it (first round), and the FLOP lower
    bound per second inside training (the engine's own rate, beside whatever else ran)."""
    print("\nwhere the time went (the sweep's own stats, first round):")
    for label, rows in results.items():
        trained = sum(s.get("train_seconds", 0) for s in rows[0][3])
        if trained:
            print(
                f"  {label}: {flops_of[label] / trained / 1e9:.2f} GFLOP/s per second of training, summed over workers"
            )
        for s in rows[0][3]:
            busy = sum(s.get("recorder_busy_seconds", {}).values())
            print(
                f"  {label}: a worker trained {s.get('train_seconds', 0):.1f} s of {s.get('wall_seconds', 0):.1f} s, "
                f"Optuna {s.get('optuna_seconds', 0):.1f} s, waiting on MLflow {s.get('mlflow_blocked_seconds', 0):.1f}"
                f" s; its recorder was busy {busy:.1f} s"
            )


def print_against(walls, ref, workers):
    """New/old wall per worker count (target: <= 0.5x)."""
    for n in workers:
        new, old = walls[label_of("this tree", n)], walls[label_of(ref, n)]
        print(f"  {n} worker(s): this tree / {ref} = {new:.1f} / {old:.1f} s = {new / old:.2f}x (target <= 0.5x)")


@contextlib.contextmanager
def worktree(ref):
    """A detached git worktree of ``ref``, removed on the way out (Ctrl-C and SIGTERM included)."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        sys.exit(f"--against {ref}: not a commit of {ROOT} (git rev-parse found none)")
    folder = Path(tempfile.mkdtemp(prefix="bench-leaderboard-ref-"))
    path = folder / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
    try:
        yield path, found.stdout.strip()[:12]
    finally:
        removed = subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)])
        shutil.rmtree(folder, ignore_errors=True)
        if removed.returncode != 0:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"])


def terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: the worktree's removal runs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS, help=f"search trials per condition (default {TRIALS})")
    parser.add_argument("--confirm-seeds", type=int, default=CONFIRM_SEEDS, help=f"default {CONFIRM_SEEDS}")
    parser.add_argument("--full", action="store_true", help="the study's own budget (12 trials, 5 seeds)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each in a rotated order (default 1)")
    parser.add_argument("--against", metavar="REF", help="also run REF's study from a git worktree of REF")
    parser.add_argument("--study", default=STUDY, help=f"a study file in each tree (default {STUDY})")
    parser.add_argument("--describe", metavar="STUDY", help=argparse.SUPPRESS)  # describe_tree's child
    args = parser.parse_args()
    for name in ("trials", "confirm_seeds", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} = {getattr(args, name)} is not allowed; must be >= 1")
    return args


def main():
    sys.path.insert(0, str(ROOT))  # describe() in this process reads this tree's harness
    args = parse_args()
    if args.describe:
        print(json.dumps(describe(args.describe)))
        return
    signal.signal(signal.SIGTERM, terminated)
    budget = [] if args.full else ["--trials", str(args.trials), "--confirm-seeds", str(args.confirm_seeds)]
    stated = "the study's own budget" if args.full else f"--trials {args.trials} --confirm-seeds {args.confirm_seeds}"
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with contextlib.ExitStack() as stack:
        trees = {"this tree": ROOT}
        if args.against:
            path, commit = stack.enter_context(worktree(args.against))
            trees[f"{args.against} ({commit})"] = path
        described = {label: describe_tree(tree, args.study) for label, tree in trees.items()}
        first = next(iter(described["this tree"].values()))
        batch = first["batch"] if isinstance(first["batch"], int) else first["train"]  # "full": every row
        peaks = measure_peaks(batch, max(first["sizes"][1:-1]))
        print_sizes(described["this tree"])
        print(f"\n{args.study} at {stated}; every variant a fresh folder and store:")
        commands = variants(trees, args.study, (1, 2), budget)
        results = measure(commands, args.rounds)
    walls, flops_of = report(results, commands, described, peaks)
    if args.against:
        print_against(walls, next(t for t in trees if t != "this tree"), (1, 2))
    print_stats(results, flops_of)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench_leaderboard: interrupted; its sweep stopped, its temporary folders (and any worktree) removed")
