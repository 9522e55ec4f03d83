import json

import pytest

from harness.common.errors import ConfigError
from harness.engine.config import TrainConfig, make_config


@pytest.mark.parametrize(
    "values,message",
    [
        (
            {"loss": "hinge"},
            "loss = 'hinge' is not allowed; choose one of: cross_entropy, mse, mse_logits, mae, gce, or",
        ),
        ({"optimizer": "lbfgs"}, "optimizer = 'lbfgs'"),
        ({"dataset": "mnist"}, "dataset = 'mnist'"),
        ({"activation": "gelu"}, "activation = 'gelu'"),
        ({"lr": -0.1}, "lr = -0.1 is not allowed; must be a number > 0"),
        ({"lr": 0}, "lr = 0.0"),
        ({"epochs": 0}, "epochs = 0"),
        ({"momentum": 1.0}, r"momentum = 1.0 is not allowed; must be in \[0, 1\)"),
        ({"momentum": -0.5}, "momentum = -0.5"),
        ({"batch_size": 0}, "batch_size = 0"),
        ({"batch_size": "half"}, "batch_size = 'half'"),
        ({"hidden": []}, "hidden = \\[\\]"),
        ({"hidden": [64, 0]}, "hidden"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"schedule": "linear"}, "schedule = 'linear'"),
        ({"dtype": "float16"}, "dtype = 'float16'"),
        ({"dataset": "csv"}, "csv = None"),
        ({"epochs": "ten"}, "epochs = 'ten' is not allowed; expected int"),
        ({"nesterov": "yes"}, "nesterov = 'yes'"),
        ({"learning_rate": 0.1}, "learning_rate = 0.1 is not allowed; known keys"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values, source="")


def test_the_source_file_is_named():
    with pytest.raises(ConfigError, match=r"^my\.toml: lr = -1\.0"):
        make_config({"lr": -1.0}, source="my.toml")


def test_config_round_trips_through_json():
    config = make_config({"loss": "mse", "hidden": [32, 16], "batch_size": "full", "nesterov": True})
    again = make_config(json.loads(config.to_json()))
    assert again == config


def test_run_names_are_readable():
    assert make_config({"loss": "mse", "lr": 0.1, "momentum": 0.9}).run_name() == "mse-sgd-m0.9-lr0.1"
    assert TrainConfig(optimizer="adam", lr=0.001).run_name() == "cross_entropy-adam-lr0.001"


@pytest.mark.parametrize(
    "values,message",
    [
        ({"power_t": float("nan")}, "power_t = nan is not allowed; must be a finite number"),
        ({"eps": float("inf")}, "eps = inf is not allowed; must be a finite number"),
        ({"lr": float("inf")}, "lr = inf"),
        ({"seed": 2**32}, r"seed = 4294967296 is not allowed; must be an integer in \[0, 4294967295\]"),
        ({"data_seed": 2**40}, "data_seed = 1099511627776"),
        ({"n_samples": 10**13}, r"n_samples = 10000000000000 is not allowed; must be an integer in \[10, 10000000\]"),
        ({"epochs": 10**7}, "epochs = 10000000"),
        ({"hidden": [3_000_000_000]}, "needs at least .* GiB for its weights alone"),
    ],
)
def test_numbers_that_would_fail_later_are_refused_now(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)
