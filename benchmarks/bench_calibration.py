"""What a confirmation run's probability quality costs: the figures on validation and test, before and after
temperature scaling (``engine.calibration.assess``) and the records that keep them (``records.quality``:
the reliability tag and probabilities.npz), against training the same run, measured side by side.

Digits and MNIST-1D (the quickstart's and the benchmark's data sets), 64 hidden ReLU, batch 32, SGD
momentum 0.9, 30 epochs, one BLAS thread; rounds interleaved so machine noise hits both alike; medians.

    .venv/bin/python benchmarks/bench_calibration.py [--rounds 5]
"""

import argparse
import statistics
import time

from threadpoolctl import threadpool_limits

from harness.engine.calibration import assess
from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train_model
from harness.records.quality import quality_records


def measure(dataset, rounds):
    config = make_config({"dataset": dataset, "epochs": 30, "hidden": [64], "lr": 0.05, "momentum": 0.9})
    split = load_split(config)
    training, figures, records = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        result = train_model(config, split, include_test=False)  # a search trial's work: no probability figures
        training.append(time.perf_counter() - start)
        model = result.network
        start = time.perf_counter()
        assess(model.logits(split.x_val), split.y_val, model.logits(split.x_test), split.y_test)
        figures.append(time.perf_counter() - start)
        result.quality = assess(model.logits(split.x_val), split.y_val, model.logits(split.x_test), split.y_test)
        start = time.perf_counter()
        quality_records(result, split)  # as a confirmation records them: the figures assessed in training
        records.append(time.perf_counter() - start)
    return {
        "rows (val/test)": f"{len(split.y_val)}/{len(split.y_test)}",
        "training s": statistics.median(training),
        "figures ms": 1000 * statistics.median(figures),
        "records ms": 1000 * statistics.median(records),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with threadpool_limits(1, user_api="blas"):
        for dataset in ("digits", "mnist1d"):
            found = measure(dataset, args.rounds)
            added = (found["figures ms"] + found["records ms"]) / 1000
            print(
                f"{dataset:8s} rows {found['rows (val/test)']:>9s}  training {found['training s']:.3f} s  "
                f"figures {found['figures ms']:.1f} ms  records {found['records ms']:.1f} ms  "
                f"(figures + records) / training = {added / found['training s']:.4f}"
            )


if __name__ == "__main__":
    main()
