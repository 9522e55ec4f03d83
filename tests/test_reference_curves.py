"""Recorded curves stay what they were: a committed reference of every curve of a small set of runs
(losses, optimizers, schedules, activations, dtypes; some trained as one stack) must be reproduced to a
stated relative tolerance, with every status and epoch count exact. A speed-up that changes values fails.

Bit-identity is a promise for one machine (tests/test_training.py: same seed, stack against alone; the
reproduce and resume tests compare runs made on the machine running them): another CPU or OpenBLAS kernel
sums in another order. Measured against this reference (made with OpenBLAS's SkylakeX kernel) under
``OPENBLAS_CORETYPE`` Haswell (the kernel an AMD EPYC / Zen machine uses), Sandybridge, Nehalem and
Prescott: 94 to 115 of 346 values differ, by at most 8.4e-16 relative in a float64 run (4 ulps),
2.5e-7 in the float32 run (2 of its ulps) and 2.9e-8 in the member that explodes (1.9e-12 after its
first epoch, grown 10^4-fold in the second). A real change moves far more: the learning rate of one
float64 run changed by 1e-9 relative moves its curves by 1.0e-9 to 1.4e-9, and the exploding member's
by 0.3. Hence ``RTOL`` 1e-12 for float64 runs (over 1,000x above the kernels' differences and 1,000x
below that change), ``RTOL_DIVERGED`` 1e-4 for a run that diverges, and ``RTOL_FLOAT32`` 1e-5 for
float32. In float32 a kernel (2.5e-7) cannot be told from the same run computed in float64 (5.3e-7) by
its values, so the dtype is checked apart: a float32 run's weight norms are float32 numbers.

The file says which machine made it (CPU, OpenBLAS kernel, numpy), printed with the differences;
``HARNESS_WRITE_REFERENCE=1`` rewrites it, only after a human has decided the change is not the code's.
"""

import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train_model, train_stack

REFERENCE = Path(__file__).with_name("reference_curves.json")
BASE = {"dataset": "digits", "hidden": [16], "batch_size": 32, "epochs": 4}
SINGLE = {
    "mse-sgd": {"loss": "mse", "momentum": 0.0, "lr": 0.5},
    "mse_logits-nesterov": {"loss": "mse_logits", "nesterov": True, "lr": 0.01},
    "ce-adam-step": {"optimizer": "adam", "lr": 0.003, "schedule": "step", "step_size": 2},
    "ce-tanh-decay": {"activation": "tanh", "weight_decay": 1e-3, "lr": 0.05},
    "ce-float32": {"dtype": "float32", "lr": 0.05},
}
STACK = [{"lr": lr, "seed": seed, "epochs": epochs} for lr, seed, epochs in ((0.05, 0, 4), (0.5, 1, 3), (40.0, 2, 4))]
"""One stack of cross-entropy momentum runs; the last diverges (non-finite), the second explodes (finite: its
training loss passes 100x its first epoch's in epoch 3, ``training.EXPLODED``)."""

RTOL = 1e-12
"""Relative tolerance of a float64 run's values (the module's docstring says why)."""
RTOL_FLOAT32 = 1e-5
RTOL_DIVERGED = 1e-4
"""A run that diverges amplifies its rounding each epoch: up to 1.9e-12 after epoch 1, 2.9e-8 after epoch 2."""


def curves(result):
    values = {**{k: list(v) for k, v in result.history.items()}, **{f"final.{k}": [v] for k, v in result.final.items()}}
    values["status"] = [result.status, result.epochs_run]
    return {k: [x.hex() if isinstance(x, float) else x for x in v] for k, v in values.items()}


def current():
    split = load_split(make_config(BASE))
    runs = {name: curves(train_model(make_config({**BASE, **extra}), split)) for name, extra in SINGLE.items()}
    stacked = train_stack([make_config({**BASE, **extra}) for extra in STACK], split)
    runs.update({f"stack-{i}": curves(result) for i, result in enumerate(stacked)})
    return runs


def machine():
    """What made these numbers: the CPU, numpy's OpenBLAS and the kernel it picked, the versions."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    mine = [p for p in blas if "numpy" in p.get("filepath", "")] or blas
    return {
        "cpu": f"{cpu} ({platform.machine()}, {os.cpu_count()} cores)",
        "blas": "; ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}" for p in mine),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def tolerance(run, status):
    if SINGLE.get(run, {}).get("dtype") == "float32":
        return RTOL_FLOAT32
    return RTOL_DIVERGED if status[0] == "diverged" else RTOL


def relative(a, b):
    """|a - b| of two hex floats relative to the larger; inf when one is missing or they differ in kind."""
    if a == b:
        return 0.0
    if not (isinstance(a, str) and isinstance(b, str)):
        return math.inf
    x, y = float.fromhex(a), float.fromhex(b)
    if math.isnan(x) and math.isnan(y):
        return 0.0
    if not (math.isfinite(x) and math.isfinite(y)):
        return math.inf
    return abs(x - y) / max(abs(x), abs(y))


def differences(reference, now):
    """(relative difference, tolerance, where, reference value, current value) of every value, worst first."""
    rows = []
    for run in sorted(set(reference) | set(now)):
        mine, theirs = now.get(run, {}), reference.get(run, {})
        rtol = tolerance(run, theirs.get("status", [None]))
        # The reference's keys only: a metric added since (val_mae, a run's own loss) has no recorded
        # values to compare, and adding a key must not rewrite the reference (its values stay the check);
        # a key the reference has and this run lacks still fails (an empty list against its values).
        for key in sorted(theirs):
            a, b = theirs.get(key, []), mine.get(key, [])
            for i in range(max(len(a), len(b))):
                old, new = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
                show = [float.fromhex(v) if isinstance(v, str) and key != "status" else v for v in (old, new)]
                rel = (0.0 if old == new else math.inf) if key == "status" else relative(old, new)
                rows.append((rel, rtol, f"{run} {key}[{i}]", *show))
    return sorted(rows, key=lambda row: -row[0] / row[1])


def test_every_recorded_curve_matches_the_committed_reference_within_tolerance():
    now = current()
    if os.environ.get("HARNESS_WRITE_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps({"made_on": machine(), "runs": now}, indent=0, sort_keys=True) + "\n")
    stored = json.loads(REFERENCE.read_text())
    rows = differences(stored["runs"], now)
    differing = sum(row[0] > 0 for row in rows)
    print(f"{differing} of {len(rows)} values differ from the reference (made on {stored['made_on']})")
    for rtol in sorted({row[1] for row in rows}):
        rel, _, where, *_ = max((row for row in rows if row[1] == rtol), key=lambda row: row[0])
        print(f"largest relative difference where the tolerance is {rtol:g}: {rel:.3g} ({where})")
    beyond = [row for row in rows if row[0] > row[1]]
    assert not beyond, (
        f"{len(beyond)} values differ from the reference beyond tolerance, worst first: "
        + "; ".join(
            f"{where}: {old!r} -> {new!r} (relative {rel:.3g} > {rtol:g})" for rel, rtol, where, old, new in beyond[:5]
        )
        + f"\nthe reference was made on {stored['made_on']}\nthis machine is {machine()}"
    )
    assert now["stack-2"]["status"][0] == "diverged" and now["stack-1"]["status"] == ["diverged", 2]
    float32_norms = [float.fromhex(x) for x in now["ce-float32"]["weight_norm"]]
    assert all(float(np.float32(x)) == x for x in float32_norms), "the float32 run's weights are not float32"
