"""Opening a new local store: MLflow building the schema (its whole migration history) against a copy
of the empty store kept in the cache (``records.store.store_template``), side by side in one run; and the
check a copy of the template must pass before it is used (``records.fingerprints.matches``), in process.

    .venv/bin/python benchmarks/bench_store.py            # 5 rounds, alternating
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPEN = "from harness.records.store import open_client; open_client({uri!r}).search_experiments()"


def open_fresh(cache):
    """Wall seconds of a new process opening a new store (imports included, as a command pays them)."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        uri = f"sqlite:///{Path(folder) / 'mlruns' / 'mlflow.db'}"
        env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", OPEN.format(uri=uri)], check=True, env=env, capture_output=True)
        return time.perf_counter() - start


def check_seconds(cache, rounds=20):
    """Median wall seconds of checking a copy of the template against the shipped fingerprint."""
    import shutil
    import sqlite3

    sys.path.insert(0, str(ROOT))
    os.environ["XDG_CACHE_HOME"] = cache
    from harness.records.fingerprints import matches
    from harness.records.store import store_template

    times = []
    with tempfile.TemporaryDirectory(prefix="bench-store-check-") as folder:
        for i in range(rounds):
            copy = Path(folder) / f"{i}.db"
            shutil.copyfile(store_template(), copy)
            connection = sqlite3.connect(copy)
            start = time.perf_counter()
            assert matches(connection), "the template does not pass its check"
            times.append(time.perf_counter() - start)
            connection.close()
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    built, copied = [], []
    with tempfile.TemporaryDirectory(prefix="bench-store-cache-") as kept:
        open_fresh(kept)  # leaves the template
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-store-empty-") as empty:
                built.append(open_fresh(empty))
            copied.append(open_fresh(kept))
        check = check_seconds(kept)
    b, c = statistics.median(built), statistics.median(copied)
    print(
        f"opening a new store, median of {args.rounds}: schema built by MLflow {b:.2f} s, from the template {c:.2f} s"
    )
    print(f"ratio built / template: {b / c:.2f}x (saves {b - c:.2f} s on the first command in a new folder)")
    print(f"checking a copy of the template against the shipped fingerprint: {check * 1000:.1f} ms (median)")


if __name__ == "__main__":
    main()
