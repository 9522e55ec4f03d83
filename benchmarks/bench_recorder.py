"""What recording one search trial costs the recorder, per MLflow operation, lean against full records.

The sweep's recorder writes each trial's run through MLflow's store API in its own process; its CPU per
trial bounds the sweep once training is fast. This trains one stack of digits trials (the quickstart's
network, 30 epochs) once, then records the same results again and again into a fresh local store, the
way a sweep worker does (``records.runs.TrialRuns``), and prints the CPU milliseconds per trial of
each operation (``time.process_time`` of this process: MLflow's SQLite store runs in it), for the
lean search-trial record (the default) and the full one (``[record] search_curves = "all"``), side by
side, with their ratio.

    .venv/bin/python benchmarks/bench_recorder.py              # 40 trials of each
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train_stack
from harness.records.provenance import source_tags
from harness.records.recorder import InlineRecorder
from harness.records.runs import TrialRuns, environment_tags
from harness.studies.parse import read_study

ROOT = Path(__file__).resolve().parent.parent


class Timed(InlineRecorder):
    """An inline recorder that adds each operation's CPU time to ``spent``."""

    def __init__(self, uri):
        super().__init__(uri)
        self.spent = {}

    def submit(self, operation, *args):
        start = time.process_time()
        ticket = super().submit(operation, *args)
        self.spent[operation] = self.spent.get(operation, 0.0) + time.process_time() - start
        return ticket


def record(results, configs, split, curves, trials):
    """CPU ms per trial of each operation, recording ``trials`` runs in a fresh store."""
    study = dataclasses.replace(read_study(ROOT / "studies" / "quickstart.toml"), search_curves=curves)
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        recorder = Timed(uri)
        experiment = recorder.call("ensure_experiment", "bench", uri)
        parent = recorder.call("create_run", experiment, "parent", {"harness.kind": "condition"}, {})
        condition = study.conditions[0]
        plan = SimpleNamespace(experiment_id=experiment, parent_runs={condition.name: parent})
        tags = {**environment_tags(source_tags()), "study": study.name, "invocation": "bench"}
        runs = TrialRuns(recorder, study, plan, tags)
        recorder.spent.clear()
        for number in range(trials):
            t = number % len(results)
            member = SimpleNamespace(
                studies=SimpleNamespace(condition=condition),
                number=number,
                phase="search",
                config=configs[t],
                best_search_trial=None,
                is_rerun=False,
            )
            create = runs.start(member, split)
            runs.finish(create, configs[t], split, results[t], {"state": "complete"}, counted=True)
            runs.check(block=True)
        return {op: 1000 * seconds / trials for op, seconds in recorder.spent.items()}


def main():
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    configs = [
        make_config({"dataset": "digits", "hidden": [64], "epochs": 30, "lr": 0.01 * (t + 1), "loss": "mse"})
        for t in range(8)
    ]
    split = load_split(configs[0])
    results = train_stack(configs, split, include_test=False)
    record(results, configs, split, "lean", 3)  # MLflow's first calls (imports, schema caches) warm up
    lean = record(results, configs, split, "lean", args.trials)
    full = record(results, configs, split, "all", args.trials)
    print(f"recorder CPU per search trial, ms ({args.trials} trials each, 30 epochs):")
    print(f"{'operation':<14} {'lean':>8} {'all':>8}")
    for op in sorted(set(lean) | set(full)):
        print(f"{op:<14} {lean.get(op, 0):>8.1f} {full.get(op, 0):>8.1f}")
    total_lean, total_full = sum(lean.values()), sum(full.values())
    print(f"{'total':<14} {total_lean:>8.1f} {total_full:>8.1f}   lean / all = {total_lean / total_full:.2f}")


if __name__ == "__main__":
    main()
