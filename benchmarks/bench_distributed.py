"""Many workers on one study: trials per minute with 1, 2 and 4 workers, on PostgreSQL + an MLflow
tracking server against the local default store (journal file + SQLite), side by side in one run.

Each worker is its own ``harness sweep`` command, started at the same moment, as on separate
machines (each imports, prepares under the stores' lock, then takes trials). Every configuration
runs a fresh copy of the quickstart study (4 conditions, 16 trials each + 5 confirmation seeds each)
and of a heavier variant (256x256 hidden units, 8 trials) whose trials train longer. Wall time runs
from the launch to the last worker's exit; "runs" counts the search trials and confirmations recorded.
Needs the PostgreSQL server binaries and psycopg (``make test`` installs psycopg; ``.ci/run`` installs
PostgreSQL).

    .venv/bin/python benchmarks/bench_distributed.py [--workers 1 2 4] [--variants quickstart 256x256]
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


VARIANTS = {"quickstart": (QUICKSTART, 16), "256x256": (QUICKSTART.replace("hidden = [64]", "hidden = [256, 256]"), 8)}


def run_workers(folder, name, text, workers, trials, flags):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(re.sub(r'(?m)^name = "quickstart"', f'name = "{name}"', text))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "harness", "sweep", f"{name}.toml", "--trials", str(trials), *flags]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
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
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    reason = services.missing()
    if reason:
        sys.exit(f"cannot start PostgreSQL here: {reason}")
    labels = {"local": "journal file + SQLite (default)", "postgres": "PostgreSQL + MLflow server"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        postgres, server, storage = services.start_services(tmp / "services")
        try:
            server.wait_ready()
            for variant in args.variants:
                text, trials = VARIANTS[variant]
                expected = 4 * (trials + 5)
                for workers in args.workers:
                    for backend in labels:
                        name = f"bench-{variant.replace('x', '-')}-{backend}-w{workers}"
                        flags = [] if backend == "local" else ["--storage", storage, "--tracking-uri", server.url]
                        wall, done = run_workers(tmp / name, name, text, workers, trials, flags)
                        assert done == expected, f"{name}: {done} runs, expected {expected}"
                        rows.append((variant, backend, workers, wall, done))
                        print(f"  {name}: {done} runs in {wall:.1f} s", flush=True)
        finally:
            services.stop_services(postgres, server)
    print(
        f"\n{os.cpu_count()} cores; each worker a separate `harness sweep` command; runs = search trials + "
        "confirmations (5 seeds x 4 conditions)"
    )
    print(
        f"{'study':<12}{'store':<34}{'workers':>8}{'runs':>6}{'wall s':>9}{'runs/min':>10}{'speed-up':>10}"
        f"{'vs local':>10}"
    )
    wall_of = {(v, b, w): wall for v, b, w, wall, _ in rows}
    for variant, backend, workers, wall, done in rows:
        base = wall_of[(variant, backend, args.workers[0])]
        local = wall_of[(variant, "local", workers)]
        print(
            f"{variant:<12}{labels[backend]:<34}{workers:>8}{done:>6}{wall:>9.1f}{done / wall * 60:>10.0f}"
            f"{base / wall:>10.2f}{local / wall:>10.2f}"
        )


if __name__ == "__main__":
    main()
