"""Many workers on one study: trials per minute with 1, 2 and 4 workers, on PostgreSQL + an MLflow
tracking server against the local default store (journal file + SQLite), side by side in one run.

Each worker is its own ``harness sweep`` command, started at the same moment, as on separate
machines (each imports, prepares under the stores' lock, then takes trials). Every configuration
runs a fresh copy of the quickstart study (4 conditions; ``--trials`` per condition + 5 confirmation
seeds each). Wall time runs from the launch to the last worker's exit; "runs" counts the search trials
and confirmations recorded. Needs the PostgreSQL server binaries and psycopg (``make test`` installs
psycopg; ``.ci/run`` installs PostgreSQL).

    .venv/bin/python benchmarks/bench_distributed.py [--trials 16] [--workers 1 2 4]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import services  # noqa: E402 - the same throwaway PostgreSQL + server as the test

QUICKSTART = (ROOT / "studies" / "quickstart.toml").read_text()


def run_workers(folder, name, workers, trials, flags):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(re.sub(r'(?m)^name = "quickstart"', f'name = "{name}"', QUICKSTART))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "harness", "sweep", f"{name}.toml", "--trials", str(trials), *flags]
    start = time.perf_counter()
    processes = [subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(workers)]
    done = 0
    for process in processes:
        out, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"worker failed: {err[-2000:]}")
        found = re.search(r"(\d+) trials and (\d+) confirmation runs in this invocation", out)
        done += int(found.group(1)) + int(found.group(2))
    return time.perf_counter() - start, done


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    reason = services.missing()
    if reason:
        sys.exit(f"cannot start PostgreSQL here: {reason}")
    expected = 4 * (args.trials + 5)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        postgres, server, storage = services.start_services(tmp / "services")
        try:
            server.wait_ready()
            rows = []
            for workers in args.workers:
                for backend in ("local", "postgres"):
                    name = f"bench-{backend}-w{workers}"
                    flags = [] if backend == "local" else ["--storage", storage, "--tracking-uri", server.url]
                    wall, done = run_workers(tmp / name, name, workers, args.trials, flags)
                    assert done == expected, f"{name}: {done} runs, expected {expected}"
                    rows.append((backend, workers, wall, done))
                    print(f"  {name}: {done} runs in {wall:.1f} s", flush=True)
        finally:
            services.stop_services(postgres, server)
    base = {backend: wall for backend, workers, wall, _ in rows if workers == args.workers[0]}
    print(f"\nquickstart x {args.trials} trials per condition ({expected} runs per configuration), "
          f"{os.cpu_count()} cores; each worker a separate `harness sweep` command")
    print(f"{'store':<34}{'workers':>8}{'wall s':>9}{'runs/min':>10}{'speed-up':>10}")
    labels = {"local": "journal file + SQLite (default)", "postgres": "PostgreSQL + MLflow server"}
    for backend, workers, wall, done in sorted(rows):
        print(f"{labels[backend]:<34}{workers:>8}{wall:>9.1f}{done / wall * 60:>10.0f}{base[backend] / wall:>10.2f}")
    for workers in args.workers:
        local = next(w for b, n, w, _ in rows if b == "local" and n == workers)
        remote = next(w for b, n, w, _ in rows if b == "postgres" and n == workers)
        print(f"{workers} worker(s): PostgreSQL + server wall / local wall = {remote / local:.2f}")


if __name__ == "__main__":
    main()
