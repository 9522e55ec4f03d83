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
import math

SCHEDULES = ("constant", "step", "cosine", "invscaling")


def learning_rate(config, epoch, n_train):
    lr = config.lr
    if config.schedule == "step":
        lr *= config.gamma ** (epoch // config.step_size)
    elif config.schedule == "cosine":
        lr *= 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    elif config.schedule == "invscaling":
        lr /= (epoch * n_train + 1) ** config.power_t
    if epoch < config.warmup_epochs:
        lr *= (epoch + 1) / (config.warmup_epochs + 1)
    return lr
