"""Learning-rate schedules, evaluated once per epoch (as scikit-learn does).

``learning_rate(config, epoch, n_train)`` for epoch = 0, 1, ...:

- ``constant``: lr.
- ``step``: lr * gamma ** (epoch // step_size).
- ``cosine``: lr * (1 + cos(pi * epoch / epochs)) / 2, from lr down towards 0.
- ``invscaling``: scikit-learn's definition, lr / (samples_seen + 1) ** power_t with
  samples_seen = epoch * n_train (the first epoch runs at lr).
- warm-up (any schedule): during the first ``warmup_epochs`` epochs the rate is scaled by
  (epoch + 1) / (warmup_epochs + 1), rising linearly to the scheduled value.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainConfig


def _constant(config, epoch, n_train):
    return 1.0


def _step(config, epoch, n_train):
    return config.gamma ** (epoch // config.step_size)


def _cosine(config, epoch, n_train):
    return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))


def _invscaling(config, epoch, n_train):
    return 1.0 / (epoch * n_train + 1) ** config.power_t


SCHEDULES = {"constant": _constant, "step": _step, "cosine": _cosine, "invscaling": _invscaling}
SCHEDULE_SETTINGS = {"constant": (), "step": ("step_size", "gamma"), "cosine": (), "invscaling": ("power_t",)}
"""The settings each schedule reads (the others do not affect a run that uses it)."""
"""name -> the factor applied to the learning rate at an epoch (0-based)."""


def learning_rate(config: TrainConfig, epoch: int, n_train: int) -> float:
    lr = config.lr * SCHEDULES[config.schedule](config, epoch, n_train)
    if epoch < config.warmup_epochs:
        lr *= (epoch + 1) / (config.warmup_epochs + 1)
    return lr
