"""Recorded curves stay what they were: a committed reference of every curve of a small set of runs
(losses, optimizers, schedules, activations, dtypes; some trained as one stack) must be reproduced
bit for bit. A speed-up that changes a single value fails here.

The reference was made on this project's CI machine (OpenBLAS, 1 thread). Another BLAS or CPU may sum
in another order; then the difference is printed, and ``HARNESS_WRITE_REFERENCE=1`` rewrites the file
only after a human has decided the change is not the code's.
"""

import json
import os
from pathlib import Path

from harness.engine.config import make_config
from harness.engine.data import load_split
from harness.engine.training import train, train_stack

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


def curves(result):
    values = {**{k: list(v) for k, v in result.history.items()}, **{f"final.{k}": [v] for k, v in result.final.items()}}
    values["status"] = [result.status, result.epochs_run]
    return {k: [x.hex() if isinstance(x, float) else x for x in v] for k, v in values.items()}


def current():
    split = load_split(make_config(BASE))
    runs = {name: curves(train(make_config({**BASE, **extra}), split)) for name, extra in SINGLE.items()}
    stacked = train_stack([make_config({**BASE, **extra}) for extra in STACK], split)
    runs.update({f"stack-{i}": curves(result) for i, result in enumerate(stacked)})
    return runs


def test_every_recorded_curve_is_bit_identical_to_the_committed_reference():
    now = current()
    if os.environ.get("HARNESS_WRITE_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps(now, indent=0, sort_keys=True) + "\n")
    reference = json.loads(REFERENCE.read_text())
    assert sorted(now) == sorted(reference)
    differing = [
        f"{run} {key} at {i}: {float.fromhex(a) if isinstance(a, str) else a} -> "
        f"{float.fromhex(b) if isinstance(b, str) else b}"
        for run in reference
        for key in sorted(set(reference[run]) | set(now[run]))
        for i, (a, b) in enumerate(zip(reference[run].get(key, [None]), now[run].get(key, [None])))
        if a != b or len(reference[run].get(key, [])) != len(now[run].get(key, []))
    ]
    assert not differing, f"{len(differing)} values differ from the reference, first: {differing[:5]}"
    assert now["stack-2"]["status"][0] == "diverged" and now["stack-1"]["status"] == ["diverged", 2]
