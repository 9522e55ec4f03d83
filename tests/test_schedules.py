import math

import pytest

from harness.engine.config import make_config
from harness.engine.schedules import learning_rate


def _rates(epochs=4, n_train=100, **values):
    config = make_config({"lr": 0.2, "epochs": epochs, **values})
    return [learning_rate(config, e, n_train) for e in range(epochs)]


def test_constant():
    assert _rates() == [0.2] * 4


def test_step():
    assert _rates(schedule="step", step_size=2, gamma=0.1) == pytest.approx([0.2, 0.2, 0.02, 0.02])


def test_cosine_starts_at_lr_and_falls():
    rates = _rates(schedule="cosine")
    assert rates == pytest.approx([0.2 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])


def test_invscaling_is_scikit_learns():
    rates = _rates(schedule="invscaling", power_t=0.5, n_train=100)
    assert rates == pytest.approx([0.2 / (e * 100 + 1) ** 0.5 for e in range(4)])


def test_warmup_rises_linearly():
    assert _rates(warmup_epochs=3) == pytest.approx([0.05, 0.1, 0.15, 0.2])
