import textwrap
from pathlib import Path

import pytest

from harness.common.errors import ConfigError
from harness.studies.parse import parse_study, read_study

GOOD = """
name = "tiny"
[fixed]
dataset = "iris"
hidden = [8]
[conditions]
loss = ["mse", "cross_entropy"]
[conditions.optimizer]
sgd = { optimizer = "sgd", momentum = 0.0 }
adam = { optimizer = "adam" }
[search]
lr = { low = 0.01, high = 1.0, log = true }
epochs = { low = 2, high = 6 }
[budget]
trials = 3
[confirm]
seeds = 2
"""


def write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_study_makes_the_grid_of_conditions(tmp_path):
    study = read_study(write(tmp_path, GOOD))
    assert [c.name for c in study.conditions] == ["mse-sgd", "mse-adam", "cross_entropy-sgd", "cross_entropy-adam"]
    assert study.conditions[1].settings == {"loss": "mse", "optimizer": "adam"}
    assert study.direction == "maximize" and study.objective == "val_accuracy"
    assert study.confirm_seed_values() == [1, 2] and study.trials == 3
    config = study.config_for(study.conditions[0], {"lr": 0.1, "epochs": 3}, seed=7)
    assert (config.loss, config.optimizer, config.lr, config.epochs, config.seed) == ("mse", "sgd", 0.1, 3, 7)


def _replace(old, new):
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = [
    (_replace('name = "tiny"\n', ""), "name is missing"),
    (_replace('name = "tiny"', 'name = "a b/c"'), "name = 'a b/c' is not allowed"),
    (_replace('name = "tiny"', "name = 3"), "name = 3 is not allowed"),
    ("colour = 1\n" + GOOD, "colour = 1 is not allowed; known keys"),
    (_replace('loss = ["mse", "cross_entropy"]', 'loss = ["mse", "hinge"]'), "loss = 'hinge' is not allowed"),
    (_replace('loss = ["mse", "cross_entropy"]', "loss = []"), "conditions.loss = [] is not allowed"),
    (_replace("[conditions]\nloss", "[conditions]\nflavour"), "conditions.flavour"),
    (
        _replace("lr = { low = 0.01, high = 1.0, log = true }", "lr = { low = 1.0, high = 0.01, log = true }"),
        "search.lr.low = 1.0 is not allowed; must be < search.lr.high",
    ),
    (
        _replace("lr = { low = 0.01, high = 1.0, log = true }", "lr = { low = -0.1, high = 1.0 }"),
        "search.lr.low = -0.1 is not allowed; must be > 0",
    ),
    (_replace("epochs = { low = 2, high = 6 }", "epochs = { low = 0, high = 6 }"), "search.epochs.low = 0"),
    (_replace("epochs = { low = 2, high = 6 }", "epochs = { low = 2.5, high = 6 }"), "search.epochs.low = 2.5"),
    (_replace("epochs = { low = 2, high = 6 }", "epochs = { low = 2 }"), "search.epochs.high is missing"),
    (_replace("epochs = { low = 2, high = 6 }", "depth = { low = 2, high = 6 }"), "search.depth"),
    (_replace("trials = 3", "trials = 0"), "budget.trials = 0 is not allowed; must be an integer in [1, 100000]"),
    (_replace("trials = 3", 'trials = "many"'), "budget.trials = 'many'"),
    (GOOD + '[sampler]\nname = "bayes"\n', "sampler.name = 'bayes' is not allowed; choose one of: tpe"),
    (GOOD + '[pruner]\nname = "early"\n', "pruner.name = 'early'"),
    (GOOD + "[pruner]\namong_stack = 1\n", "pruner.among_stack = 1 is not allowed; must be true or false"),
    (GOOD + '[objective]\nmetric = "test_accuracy"\n', "objective.metric = 'test_accuracy'"),
    (GOOD + '[objective]\nmetric = "val_mse"\ndirection = "maximize"\n', "val_mse must be minimized"),
    (_replace("seeds = 2", "seeds = 0"), "confirm.seeds = 0"),
    (_replace("seeds = 2", 'seeds = 2\nmodels = "all"'), "confirm.models = 'all' is not allowed; choose one of: first"),
    (
        _replace("[search]\nlr = { low = 0.01, high = 1.0, log = true }\nepochs = { low = 2, high = 6 }\n", ""),
        "search is missing",
    ),
    (
        _replace(
            '[conditions]\nloss = ["mse", "cross_entropy"]\n[conditions.optimizer]\n'
            'sgd = { optimizer = "sgd", momentum = 0.0 }\nadam = { optimizer = "adam" }\n',
            "[conditions]\n",
        ),
        "conditions = {} is not allowed",
    ),
    (_replace("hidden = [8]", "hidden = [8]\nlr = 0.1"), "fixed.lr = 0.1 is not allowed; lr is searched"),
    (_replace("hidden = [8]", 'hidden = "eight"'), "hidden = 'eight'"),
    (
        _replace('adam = { optimizer = "adam" }', 'adam = { optimizer = "adam", colour = 1 }'),
        "conditions.optimizer.adam.colour",
    ),
    (GOOD + '[sampler]\nname = "grid"\n', "the grid sampler needs choices"),
    (
        _replace(
            "lr = { low = 0.01, high = 1.0, log = true }\nepochs = { low = 2, high = 6 }",
            "lr = { choices = [0.1, 0.5] }\nepochs = { choices = [3] }",
        )
        + '[sampler]\nname = "grid"\n',
        "budget.trials = 3 is not allowed; the grid has 2 points",
    ),
    ("name = [", "not valid TOML"),
    # refused since records could not be trusted otherwise
    (_replace('name = "tiny"', 'name = "tiny\\n"'), "name = 'tiny\\n' is not allowed"),
    (
        _replace('adam = { optimizer = "adam" }', '"adam\\nx" = { optimizer = "adam" }'),
        "conditions.optimizer = 'adam\\nx'",
    ),
    (
        _replace('loss = ["mse", "cross_entropy"]', 'loss = ["mse", "cross_entropy"]\nlabel_column = ["a b", "a_b"]'),
        "two conditions get this name",
    ),
    (
        _replace(
            '[conditions]\nloss = ["mse", "cross_entropy"]\n[conditions.optimizer]\n'
            'sgd = { optimizer = "sgd", momentum = 0.0 }\nadam = { optimizer = "adam" }\n',
            '[conditions.a]\n"x-y" = { loss = "mse" }\nx = { loss = "cross_entropy" }\n'
            '[conditions.b]\nz = { optimizer = "sgd" }\n"y-z" = { optimizer = "adam" }\n',
        ),
        "conditions = 'x-y-z' is not allowed; two conditions get this name",
    ),
    (
        _replace("hidden = [8]", 'hidden = [8]\nloss = "mse"'),
        "fixed.loss = 'mse' is not allowed; conditions.loss also sets loss",
    ),
    (
        _replace(
            'sgd = { optimizer = "sgd", momentum = 0.0 }',
            'sgd = { optimizer = "sgd", momentum = 0.0 }\nsgd0 = { optimizer = "sgd", momentum = 0 }',
        ),
        "it trains exactly what",
    ),
    (
        _replace("trials = 3", "trials = 3\ntimeout_seconds = nan"),
        "budget.timeout_seconds = nan is not allowed; must be a finite",
    ),
    (_replace("hidden = [8]", "hidden = [8]\npower_t = nan"), "power_t = nan is not allowed; must be a finite number"),
    (_replace("hidden = [8]", "hidden = [8]\neps = inf"), "eps = inf is not allowed; must be a finite number"),
    (
        _replace("lr = { low = 0.01, high = 1.0, log = true }", "lr = { low = 0.01, high = inf, log = true }"),
        "search.lr.high = inf is not allowed; must be a finite number",
    ),
    (_replace("hidden = [8]", "hidden = [8]\ndata_seed = 4294967296"), "data_seed = 4294967296 is not allowed"),
    (
        GOOD + "[sampler]\nseed = 4294967296\n",
        "sampler.seed = 4294967296 is not allowed; must be an integer in [0, 4294967295]",
    ),
    (
        _replace("trials = 3", "trials = 1000000000"),
        "budget.trials = 1000000000 is not allowed; must be an integer in [1, 100000]",
    ),
    (
        _replace("seeds = 2", "seeds = 1000000000"),
        "confirm.seeds = 1000000000 is not allowed; must be an integer in [1, 1000]",
    ),
    (
        _replace("epochs = { low = 2, high = 6 }", "epochs = { low = 2, high = 10000000 }"),
        "search.epochs.high = 10000000",
    ),
    (_replace("hidden = [8]", "hidden = [2000000000]"), "needs at least"),
    (_replace("hidden = [8]", "hidden = [8]\nn_samples = 10000000000000"), "n_samples = 10000000000000 is not allowed"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_malformed_study_files_get_one_line_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        read_study(path)
    line = str(error.value)
    assert message in line, line
    assert line.startswith(str(path)) and "\n" not in line


@pytest.mark.parametrize(
    "edit,message",
    [
        (('dataset = "iris"', 'dataset = "iris"\ncsv = "bc.csv"'), "csv = 'bc.csv' is not allowed; dataset is 'iris'"),
        (('dataset = "iris"', 'dataset = "iris"\nlabel_column = "target"'), "fixed.label_column = 'target'"),
        (
            ("hidden = [8]", "hidden = [8]\nbeta2 = 0.99\nrho = 0.5"),
            "fixed.rho = 0.5 is not allowed; no condition uses",
        ),
    ],
)
def test_a_fixed_setting_no_condition_uses_is_refused_not_ignored(tmp_path, edit, message):
    """``csv`` and ``label_column`` under [fixed] without ``dataset = "csv"`` trained on digits, exit 0."""
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        read_study(write(tmp_path, GOOD.replace(*edit)))


def test_a_csv_without_a_dataset_is_the_data_set_meant(tmp_path):
    (tmp_path / "bc.csv").write_text("a,b,target\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    text = GOOD.replace('dataset = "iris"', f'csv = "{tmp_path / "bc.csv"}"\nlabel_column = "target"')
    study = read_study(write(tmp_path, text))
    assert {study.config_for(c, {"lr": 0.1, "epochs": 2}, 0).dataset for c in study.conditions} == {"csv"}


def test_missing_study_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        read_study(tmp_path / "nope.toml")


def test_digest_ignores_budget_and_seed_count_only():
    import tomllib

    data = tomllib.loads(GOOD)
    base = parse_study(data, "x").settings_digest()
    assert parse_study({**data, "budget": {"trials": 9}, "confirm": {"seeds": 7}}, "x").settings_digest() == base
    changed = {**data, "search": {**data["search"], "lr": {"low": 0.001, "high": 1.0}}}
    assert parse_study(changed, "x").settings_digest() != base


STUDY_FILES = sorted(
    p for p in (Path(__file__).parent.parent / "studies").glob("*.toml") if not p.name.startswith("single_run")
)  # single_run*.toml: harness train configs


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_shipped_study_files_parse(path):
    study = read_study(path)
    assert study.conditions and study.search
