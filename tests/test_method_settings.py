"""Methods that bring their own settings (issue 34): a custom loss or optimizer declares settings
(``Setting(name, default, low, high)``), set in a study's [fixed] and [conditions], searched in [search],
given to ``harness train --set``, recorded as params and reproduced; an export's are data, never a reason
to import anything."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.common.errors import ConfigError, HarnessError
from harness.engine.config import check_methods, make_config
from harness.engine.losses import CrossEntropy
from harness.engine.methods import Setting, check_loss
from harness.engine.optimizers import Adam
from harness.engine.training import train_model, train_stack
from harness.studies.parse import read_study
from harness.sweep.outcomes import stackable
from tests.helpers import ROOT, compare_json, harness, load_file, mlflow_runs, write_study
from tests.test_hostile_exports import MARKER_MODULE as MARKER
from tests.test_hostile_exports import forge

EXAMPLE = ROOT / "examples" / "my_methods.py"
FOCAL = "my_methods:FocalLoss"

SCALED = """
import json
from pathlib import Path

import numpy as np

from harness.engine.methods import Setting
from harness.engine.optimizers import Optimizer

SEEN = []


class ScaledSGD(Optimizer):
    \"\"\"p <- p - lr scale g: its own coefficient, one value per model of the stack.\"\"\"

    declared = (Setting("scale", 1.0, 0.0, 4.0),)

    def __init__(self, shape, dtype, **kw):
        super().__init__(shape, dtype, **kw)
        with open(Path(__file__).with_name("stacks.log"), "a") as log:  # the column each stack was built with
            log.write(json.dumps(np.ravel(self.scale).tolist()) + "\\n")

    def update(self, params, grad, lr):
        SEEN.append(self.steps)
        params -= lr * self.scale * grad
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(EXAMPLE, tmp_path / "my_methods.py")
    (tmp_path / "scaled_methods.py").write_text(SCALED)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _focal(gamma):
    loss = load_file(EXAMPLE).FocalLoss()
    loss.focal_gamma = gamma
    return loss


# --- the focal loss of the example -------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_the_focal_loss_gradient_is_its_values_central_differences(gamma):
    loss, rng = _focal(gamma), np.random.default_rng(3)
    z = rng.normal(0, 2, size=(2, 6, 4))
    y = np.eye(4)[rng.integers(0, 4, size=(2, 6))]
    out = np.zeros_like(z)
    values = loss.value_and_grad(z.copy(), y, out)
    p_y = (np.exp(z) / np.exp(z).sum(axis=2, keepdims=True) * y).sum(axis=2)
    assert values == pytest.approx((-((1 - p_y) ** gamma) * np.log(p_y)).mean(axis=1), rel=1e-12)
    h, numeric = 1e-6, np.zeros_like(z)
    for index in np.ndindex(*z.shape):
        for sign in (1, -1):
            shifted = z.copy()
            shifted[index] += sign * h
            numeric[index] += sign * loss.value_and_grad(shifted, y, np.zeros_like(z))[index[0]] / (2 * h)
    assert np.abs(out - numeric).max() < 1e-7
    check_loss(FOCAL, loss)  # the harness's own check agrees


def test_the_focal_loss_at_gamma_0_is_cross_entropy_and_finite_where_saturated():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 3, size=(2, 5, 3))
    z[0, 0] = [80.0, -80.0, -80.0]  # p_y = 1 in floating point: (1 - p_y)^gamma at its limit
    y = np.eye(3)[rng.integers(0, 3, size=(2, 5))]
    y[0, 0] = [1.0, 0.0, 0.0]
    focal, cross = np.zeros_like(z), np.zeros_like(z)
    assert _focal(0.0).value_and_grad(z.copy(), y, focal) == pytest.approx(
        CrossEntropy().value_and_grad(z.copy(), y, cross), rel=1e-14
    )
    assert np.abs(focal - cross).max() < 1e-15
    for gamma in (0.5, 2.0, 10.0):
        out = np.zeros_like(z)
        assert np.isfinite(_focal(gamma).value_and_grad(z.copy(), y, out)).all() and np.isfinite(out).all()


# --- a config's method_settings: their form without imports, their values against the declaration ----


def test_method_settings_round_trip_through_config_json():
    config = make_config({"loss": FOCAL, "method_settings": {"focal_gamma": 1, "alpha": 0.25}})
    assert config.method_settings == {"alpha": 0.25, "focal_gamma": 1.0}
    assert json.loads(config.to_json())["method_settings"] == {"alpha": 0.25, "focal_gamma": 1.0}
    assert make_config(json.loads(config.to_json())) == config
    assert "method_settings" not in json.loads(make_config({"loss": FOCAL}).to_json())  # as before: none


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": 0.1}, "lr = 0.1 is not allowed; it is a harness setting"),
        ({"focal_gamma": float("nan")}, "focal_gamma = nan is not allowed; .* finite number"),
        ({"focal_gamma": True}, "focal_gamma = True is not allowed"),
        ({"focal_gamma": "2"}, "focal_gamma = '2' is not allowed"),
        ({"focal gamma": 2.0}, "method_settings = 'focal gamma' is not allowed"),
        ({"_tmp": 2.0}, "method_settings = '_tmp' is not allowed"),
        ({f"s{i}": 1.0 for i in range(33)}, "holds 33 settings; at most 32"),
    ],
)
def test_the_form_of_method_settings_is_checked_without_importing(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"loss": "nowhere_at_all:Focal", "method_settings": settings})


def test_method_settings_need_a_method_of_ones_own():
    with pytest.raises(ConfigError, match="focal_gamma = 2.0 is not allowed; loss 'cross_entropy' and optimizer"):
        make_config({"method_settings": {"focal_gamma": 2.0}})


def test_a_declared_setting_out_of_range_is_one_line_naming_it_the_method_and_its_range(project):
    for value in (12.0, -0.5):
        with pytest.raises(ConfigError) as refused:
            check_methods(make_config({"loss": FOCAL, "method_settings": {"focal_gamma": value}}), "my.toml")
        expected = f"my.toml: focal_gamma = {value} is not allowed; loss '{FOCAL}' takes focal_gamma in [0, 10]"
        assert str(refused.value) == expected
    check_methods(make_config({"loss": FOCAL, "method_settings": {"focal_gamma": 10.0}}))  # the ends are in


def test_an_undeclared_setting_is_refused(project):
    with pytest.raises(ConfigError) as refused:
        check_methods(make_config({"loss": FOCAL, "method_settings": {"focal_gama": 1.0}}))
    assert str(refused.value) == (
        f"focal_gama = 1.0 is not allowed; neither loss '{FOCAL}' nor optimizer 'sgd' declares it "
        f"(declared: focal_gamma in [0, 10] (loss '{FOCAL}'))"
    )
    with pytest.raises(ConfigError, match="neither loss 'my_methods:LabelSmoothedCrossEntropy' nor optimizer"):
        config = {"loss": "my_methods:LabelSmoothedCrossEntropy", "method_settings": {"focal_gamma": 1.0}}
        check_methods(make_config(config))


def test_training_refuses_an_undeclared_setting_too(project, split):
    config = make_config({"optimizer": "scaled_methods:ScaledSGD", "method_settings": {"scal": 2.0}, "epochs": 1})
    with pytest.raises(ConfigError, match="scal = 2.0 is not allowed; neither"):
        train_model(config, split)


BAD_DECLARATIONS = """
from harness.engine.methods import Setting
from harness.engine.optimizers import SGD


class ShadowsHarness:
    declared = (Setting("gamma", 2.0, 0.0, 10.0),)

    def value_and_grad(self, z, y, out):
        out[...] = 0.0
        return z.sum(axis=(1, 2)) * 0.0


class NotSettings(SGD):
    declared = ({"name": "scale"},)


class ShadowsSteps(SGD):
    declared = (Setting("steps", 1.0, 0.0, 2.0),)


class WrongAtItsEnd:
    declared = (Setting("power", 1.0, 1.0, 3.0),)

    def value_and_grad(self, z, y, out):  # right at power 1 only
        out[...] = self.power * 1.0
        return (z.sum(axis=(1, 2)) * self.power) / self.power
"""


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("loss", "ShadowsHarness': declares 'gamma', the name of a harness setting"),
        ("optimizer", "NotSettings': declared = ({'name': 'scale'},) is not allowed; list"),
        ("optimizer", "ShadowsSteps': declares 'steps', which would replace its attribute"),
        ("loss", "WrongAtItsEnd' at power = 3: the gradient written into out differs"),
    ],
)
def test_a_wrong_declaration_is_refused_when_the_method_is_checked(project, name, message):
    (project / "bad_declarations.py").write_text(BAD_DECLARATIONS)
    cls = re.search(r"(\w+)'", message)[1]
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_methods(make_config({name: f"bad_declarations:{cls}"}))


def test_a_setting_must_be_in_its_own_range():
    with pytest.raises(ValueError, match=r"default 11 must lie in \[low, high\] = \[0, 10\]"):
        Setting("focal_gamma", 11.0, 0.0, 10.0)
    with pytest.raises(ValueError, match="Setting name 'focal-gamma'"):
        Setting("focal-gamma", 1.0, 0.0, 10.0)


# --- an optimizer's own setting: a column per model; a loss's: shared by the stack --------------------


def test_an_optimizers_own_setting_differs_per_model_of_one_stack(project, split):
    def config(scale, epochs):
        values = {"optimizer": "scaled_methods:ScaledSGD", "hidden": [8], "epochs": epochs, "batch_size": 4}
        return make_config({**values, "lr": 0.05, "method_settings": {"scale": scale}})

    configs = [config(0.5, 2), config(2.0, 4)]  # the first leaves the stack after 2 epochs: keep() compacts
    stacked = train_stack(configs, split)
    for c, together in zip(configs, stacked):
        alone = train_model(c, split)
        assert together.history == alone.history  # bit for bit: each model got its own scale, row-wise
        assert all(np.array_equal(a, b) for a, b in zip(together.network.weights, alone.network.weights))
    default = train_model(make_config({**configs[1].to_dict(), "method_settings": {}}), split)
    assert stacked[1].history != default.history != stacked[0].history  # the values reached update


def test_the_steps_of_the_base_class_count_every_update(project):
    import scaled_methods

    del scaled_methods.SEEN[:]
    optimizer = scaled_methods.ScaledSGD((2, 3), np.float64, decay_mask=np.ones(3), scale=[1.0, 2.0])
    params = np.ones((2, 3))
    for _ in range(3):
        optimizer.step(params, np.ones((2, 3)), np.full((2, 1), 0.1))
    assert scaled_methods.SEEN == [1, 2, 3] and optimizer.steps == 3
    assert params[:, 0] == pytest.approx([1 - 0.3, 1 - 0.6])
    adam = Adam((1, 2), np.float64, decay_mask=np.ones(2))
    adam.step(np.zeros((1, 2)), np.ones((1, 2)), np.full((1, 1), 0.1))
    assert adam.steps == 1 and not hasattr(adam, "t")  # Adam's bias corrections count with the base class


def test_a_losss_own_setting_reaches_the_loss_it_trains_with(project, split):
    base = {"hidden": [8], "epochs": 3, "batch_size": 4, "lr": 0.1}
    cross = train_model(make_config(base), split).history["train_loss"]
    at_zero = train_model(make_config({**base, "loss": FOCAL, "method_settings": {"focal_gamma": 0.0}}), split)
    assert at_zero.history["train_loss"] == pytest.approx(cross, rel=1e-12)  # gamma 0 is cross-entropy
    default = train_model(make_config({**base, "loss": FOCAL}), split).history
    at_two = train_model(make_config({**base, "loss": FOCAL, "method_settings": {"focal_gamma": 2.0}}), split).history
    assert default == at_two and default["train_loss"] != pytest.approx(cross, rel=1e-3)  # 2.0 is its default


def test_trials_share_a_stack_across_an_optimizers_setting_and_split_on_a_losss(project):
    def member(**settings):
        values = {"optimizer": "scaled_methods:ScaledSGD", "loss": FOCAL, "method_settings": settings}
        return SimpleNamespace(config=make_config(values))

    members = [member(scale=0.5, focal_gamma=1.0), member(scale=3.0, focal_gamma=1.0), member(focal_gamma=2.0)]
    assert [len(group) for group in stackable(members)] == [2, 1]
    with pytest.raises(ConfigError, match="models of one stack must share the loss's own settings"):
        train_stack([m.config for m in members[1:]], None)


# --- studies ------------------------------------------------------------------------------------------

FOCAL_STUDY = """
name = "focal"
[fixed]
dataset = "iris"
hidden = [8]
batch_size = 16
epochs = 3
[conditions]
loss = ["cross_entropy", "my_methods:FocalLoss"]
[search]
lr = { low = 0.01, high = 1.0, log = true }
focal_gamma = { low = 0.5, high = 3.0 }
[budget]
trials = 2
[confirm]
seeds = 2
"""


def test_a_study_routes_a_methods_own_keys_to_the_conditions_that_declare_them(project):
    study = read_study(write_study(project, FOCAL_STUDY, "focal.toml"))
    ce, focal = study.conditions
    assert (ce.declared, focal.declared) == ([], ["focal_gamma"])
    assert study.config_for(focal, {"lr": 0.1, "focal_gamma": 1.5}, 0).method_settings == {"focal_gamma": 1.5}
    assert study.config_for(ce, {"lr": 0.1, "focal_gamma": 1.5}, 0).method_settings == {}  # idle there

    fixed = FOCAL_STUDY.replace("focal_gamma = { low = 0.5, high = 3.0 }\n", "")
    fixed = fixed.replace("epochs = 3", "epochs = 3\nfocal_gamma = 1.0")
    fixed_study = read_study(write_study(project, fixed, "fixed.toml"))
    ce, focal = fixed_study.conditions
    assert fixed_study.config_for(focal, {"lr": 0.1}, 0).method_settings == {"focal_gamma": 1.0}
    assert fixed_study.config_for(ce, {"lr": 0.1}, 0).method_settings == {}
    bundles = FOCAL_STUDY.replace('loss = ["cross_entropy", "my_methods:FocalLoss"]', "")
    bundles = bundles.replace("[search]", "[conditions.loss]\n" + _BUNDLES + "[search]")
    bundles = bundles.replace("focal_gamma = { low = 0.5, high = 3.0 }\n", "")
    listed = read_study(write_study(project, bundles, "bundles.toml"))
    assert [listed.config_for(c, {"lr": 0.1}, 0).method_settings for c in listed.conditions] == [
        {"focal_gamma": 0.0},
        {"focal_gamma": 2.0},
    ]
    axis = FOCAL_STUDY.replace('loss = ["cross_entropy", "my_methods:FocalLoss"]', "focal_gamma = [0.0, 2.0]")
    axis = axis.replace("epochs = 3", f'epochs = 3\nloss = "{FOCAL}"').replace(
        "focal_gamma = { low = 0.5, high = 3.0 }\n", ""
    )
    levels = read_study(write_study(project, axis, "axis.toml"))
    assert [levels.config_for(c, {"lr": 0.1}, 0).method_settings for c in levels.conditions] == [
        {"focal_gamma": 0.0},
        {"focal_gamma": 2.0},
    ]


_BUNDLES = f"""g0 = {{ loss = "{FOCAL}", focal_gamma = 0.0 }}
g2 = {{ loss = "{FOCAL}", focal_gamma = 2.0 }}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "focal_gamma = { low = 0.5, high = 3.0 }",
            "focal_gamma = { low = 0.5, high = 12.0 }",
            f"condition my_methods_FocalLoss: search.focal_gamma = 12.0 is not allowed; loss '{FOCAL}' takes "
            "focal_gamma in [0, 10]",
        ),
        (
            "focal_gamma = { low = 0.5, high = 3.0 }",
            "alpha = { low = 0.5, high = 3.0 }",
            "search.alpha = {'high': 3.0, 'low': 0.5} is not allowed; no condition's loss or optimizer declares "
            "alpha (declared: focal_gamma)",
        ),
        (
            "epochs = 3",
            "epochs = 3\nfocal_gama = 1.0",
            "fixed.focal_gama = 1.0 is not allowed; no condition uses it",
        ),
        (
            'loss = ["cross_entropy", "my_methods:FocalLoss"]',
            'loss = ["cross_entropy", "mse"]',
            "search.focal_gamma = {'high': 3.0, 'low': 0.5} is not allowed; searchable settings: lr,",
        ),
        (
            'loss = ["cross_entropy", "my_methods:FocalLoss"]',
            'loss = ["cross_entropy", "mse"]\nfocal_gamma = [1.0, 2.0]',
            "conditions.focal_gamma = [1.0, 2.0] is not allowed; a list axis must be a training setting",
        ),
        (
            "epochs = 3",
            "epochs = 3\nmethod_settings = { focal_gamma = 1.0 }",
            "fixed.method_settings = {'focal_gamma': 1.0} is not allowed; known keys",
        ),
    ],
)
def test_a_study_refuses_a_methods_setting_it_cannot_use(project, old, new, message):
    assert old in FOCAL_STUDY
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_study(write_study(project, FOCAL_STUDY.replace(old, new), "bad.toml"))


def test_a_studys_unknown_key_without_a_method_of_its_own_is_refused_as_before(project):
    study = FOCAL_STUDY.replace('"my_methods:FocalLoss"', '"mse"').replace(
        "focal_gamma = { low = 0.5, high = 3.0 }\n", ""
    )
    with pytest.raises(ConfigError, match=r"fixed\.focal_gamma = 1\.0 is not allowed; known keys: activation"):
        read_study(write_study(project, study.replace("epochs = 3", "epochs = 3\nfocal_gamma = 1.0"), "x.toml"))


def test_the_docs_focal_studies_parse(project):
    page = (ROOT / "docs" / "benchmark.md").read_text()
    examples = [b for b in re.findall(r"```toml\n(.*?)```", page, re.S) if FOCAL in b]
    assert len(examples) == 2
    for number, text in enumerate(examples):
        study = read_study(write_study(project, text.replace('"mnist1d"', '"iris"'), f"docs{number}.toml"))
        assert any("focal_gamma" in c.declared for c in study.conditions)


# --- end to end: train, reproduce, sweep, compare -------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    shutil.copy(EXAMPLE, folder / "my_methods.py")
    flags = ["--dataset", "iris", "--hidden", "8", "--epochs", "3", "--loss", FOCAL, "--set", "focal_gamma=1.5"]
    done = harness("train", *flags, "--json", cwd=folder, check=True)
    return folder, json.loads(done.stdout)["run_id"]


@pytest.mark.e2e
def test_train_set_records_the_setting_as_a_param_and_in_its_config(trained, tmp_path):
    folder, run_id = trained
    client, _ = mlflow_runs(folder, "train")
    run = client.get_run(run_id)
    assert run.data.params["focal_gamma"] == "1.5" and run.data.params["loss"] == FOCAL
    config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(tmp_path))).read_text())
    assert config["method_settings"] == {"focal_gamma": 1.5}


@pytest.mark.e2e
def test_a_run_with_its_own_setting_reproduces(trained):
    folder, run_id = trained
    done = harness("reproduce", run_id, "--here", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "reproduced exactly" in done.stdout


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--set", "focal_gamma=12"],
            f"focal_gamma = 12.0 is not allowed; loss '{FOCAL}' takes focal_gamma in [0, 10]",
        ),
        (["--set", "focal_gama=1"], "focal_gama = 1.0 is not allowed; neither loss"),
        (["--set", "focal_gamma=1", "--set", "focal_gamma=2"], "focal_gamma is given twice"),
        (["--set", "lr=0.1"], "lr = 0.1 is not allowed; it is a harness setting"),
    ],
)
def test_train_refuses_a_wrong_set_in_one_line_creating_nothing(tmp_path, flags, message):
    shutil.copy(EXAMPLE, tmp_path / "my_methods.py")
    done = harness("train", "--dataset", "iris", "--epochs", "1", "--loss", FOCAL, *flags, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr and not (tmp_path / "mlruns").exists()


@pytest.mark.e2e
def test_a_config_file_writes_a_methods_setting_as_a_key(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "my_methods.py")
    (tmp_path / "run.toml").write_text(f'dataset = "iris"\nepochs = 2\nloss = "{FOCAL}"\nfocal_gamma = 0.5\n')
    done = harness("train", "--config", "run.toml", "--json", cwd=tmp_path, check=True)
    client, _ = mlflow_runs(tmp_path, "train")
    assert client.get_run(json.loads(done.stdout)["run_id"]).data.params["focal_gamma"] == "0.5"
    (tmp_path / "plain.toml").write_text('dataset = "iris"\nfocal_gamma = 0.5\n')
    refused = harness("train", "--config", "plain.toml", cwd=tmp_path)
    assert refused.returncode == 2 and "plain.toml: focal_gamma = 0.5 is not allowed; known keys" in refused.stderr


@pytest.mark.e2e
def test_a_sweep_searches_a_losss_own_setting_and_compare_reports_its_best(project):
    done = harness("sweep", write_study(project, FOCAL_STUDY, "focal.toml"), cwd=project)
    assert done.returncode == 0, done.stderr
    _, runs = mlflow_runs(project, "focal")
    search = [r for r in runs if r.data.tags.get("harness.kind") == "search"]
    focal = [r for r in search if r.data.params["loss"] == FOCAL]
    assert len(focal) == 2 and len(search) == 4
    values = [float(r.data.params["focal_gamma"]) for r in focal]
    assert all(0.5 <= v <= 3.0 for v in values) and len(set(values)) == 2  # one value per trial
    assert all("focal_gamma" not in r.data.params for r in search if r not in focal)
    rows = {row["condition"]: row for row in compare_json(project, "focal")["conditions"]}
    best = next(
        r for r in focal if r.data.tags["harness.optuna_trial"] == _confirmed_trial(runs, "my_methods_FocalLoss")
    )
    assert rows["my_methods_FocalLoss"]["best_focal_gamma"] == float(best.data.params["focal_gamma"])
    assert rows["cross_entropy"]["best_focal_gamma"] is None


SCALED_STUDY = """
name = "scaled"
[fixed]
dataset = "iris"
hidden = [8]
epochs = 3
optimizer = "scaled_methods:ScaledSGD"
[conditions]
loss = ["cross_entropy"]
[search]
lr = { low = 0.01, high = 0.5, log = true }
scale = { low = 0.25, high = 2.0 }
[budget]
trials = 2
[confirm]
seeds = 2
"""


@pytest.mark.e2e
def test_a_sweep_trains_trials_with_their_own_optimizer_setting_in_one_stack(project):
    done = harness("sweep", write_study(project, SCALED_STUDY, "scaled.toml"), cwd=project)
    assert done.returncode == 0, done.stderr
    _, runs = mlflow_runs(project, "scaled")
    searched = sorted(float(r.data.params["scale"]) for r in runs if r.data.tags.get("harness.kind") == "search")
    assert len(searched) == 2 and searched[0] != searched[1]
    columns = [json.loads(line) for line in (project / "stacks.log").read_text().splitlines()]
    assert sorted(searched) in [sorted(c) for c in columns]  # both trials, one stack, each its own value


def _confirmed_trial(runs, condition):
    confirm = [
        r
        for r in runs
        if r.data.tags.get("harness.kind") == "confirm" and r.data.tags["harness.condition"] == condition
    ]
    return confirm[0].data.tags["harness.best_search_trial"]


# --- exports: method_settings are data ------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method_settings": {"focal_gamma": 2.0}}, "focal_gamma = 2.0 is not allowed; loss 'cross_entropy' and"),
        (
            {"loss": "analysis:Anything", "method_settings": {"focal_gamma": 2.0}},
            "recorded no source of module 'analysis'",
        ),
        ({"loss": "analysis:Anything", "method_settings": {"os.system": 1.0}}, "method_settings = 'os.system'"),
    ],
)
def test_an_exports_method_settings_without_its_method_are_refused_before_any_import(
    exported, tmp_path, config, message
):
    marker = tmp_path / "marker"
    (tmp_path / "analysis.py").write_text(MARKER.format(marker=str(marker)))  # a user's own script here
    forge(exported, tmp_path / "evil.zip", config)
    for flags in ((), ("--rebuild-code",)):
        done = harness("reproduce", "evil.zip", *flags, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stdout + done.stderr
        assert message in done.stderr and not marker.exists()


def test_reading_an_exports_config_imports_nothing(tmp_path, monkeypatch):
    from harness.records.weights import parse_config

    marker = tmp_path / "marker"
    (tmp_path / "sneaky.py").write_text(MARKER.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    text = json.dumps({"loss": "sneaky:Anything", "method_settings": {"focal_gamma": 2.0}})
    config = parse_config(text, "config.json")
    assert config.method_settings == {"focal_gamma": 2.0} and not marker.exists()
    with pytest.raises(HarnessError):
        parse_config(json.dumps({"method_settings": {"focal_gamma": [1.0] * 10**5}}), "config.json")
