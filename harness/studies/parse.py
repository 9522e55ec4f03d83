"""Study files: parse and validate a TOML study definition into a ``Study``.

Everything is checked before anything is created; every error is one line naming the file, the key
and what is allowed.
"""

import itertools
import math
import os
import re
import tomllib

from ..common.errors import ConfigError, shown
from ..engine.config import FIELD_TYPES, MAX_EPOCHS, SEED_MAX, check_methods, make_config
from ..engine.declared import SETTING_NAME
from ..engine.methods import add_search_folder, declared_settings, is_custom
from .paths import resolve_paths
from .study import (
    DEFAULT_STACK,
    MAX_CONDITIONS,
    MAX_CONFIRM_SEEDS,
    MAX_STACK,
    MAX_TRIALS,
    NAME_PATTERN,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    SEARCHABLE,
    SECTIONS,
    VARY,
    Condition,
    SearchParam,
    Study,
    _check_condition,
    settings_config,
)

SETTING_KEYS = tuple(k for k in FIELD_TYPES if k != "method_settings")
"""The harness settings a study names; a custom method's own are written as keys of their own, never as a
``method_settings`` table."""


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, key, value, allowed):
        raise ConfigError(f"{self.path}: {key} = {shown(value)} is not allowed; {allowed}")

    def table(self, data, key, known=None, required=False):
        value = data.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{self.path}: {key} is missing; {_HELP.get(key, 'it is required')}")
            return {}
        if not isinstance(value, dict):
            self.fail(key, value, "expected a table ([" + key + "])")
        if known is not None:
            for sub in value:
                if sub not in known:
                    self.fail(f"{key}.{sub}", value[sub], f"known keys: {', '.join(sorted(known))}")
        return value

    def integer(self, key, value, minimum, maximum=None):
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            self.fail(
                key,
                value,
                f"must be an integer >= {minimum}"
                if maximum is None
                else f"must be an integer in [{minimum}, {maximum}]",
            )
        return value

    def number(self, key, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            self.fail(key, value, "must be a finite number")
        return float(value)

    def boolean(self, key, value):
        if not isinstance(value, bool):
            self.fail(key, value, "must be true or false")
        return value

    def choice(self, key, value, names):
        if value not in names:
            self.fail(key, value, f"choose one of: {', '.join(names)}")
        return value


_HELP = {
    "name": "give the study a name (letters, digits, '_', '.', '-')",
    "conditions": 'add a [conditions] table, e.g. loss = ["mse", "cross_entropy"]',
    "search": "add a [search] table, e.g. lr = { low = 0.001, high = 1.0, log = true }",
}


def read_study(path):
    return parse_study(read_toml(path), str(path))


TOML_LIMIT = 16 << 20
"""The largest study or config file read: a study is a few kB."""


def read_toml(path):
    """A TOML file as a dict, or one line naming the file and what is wrong with it."""
    from ..common.files import read_local_file

    content = read_local_file(str(path), str(path), TOML_LIMIT, "TOML file")
    try:
        return tomllib.loads(content.decode())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); a study or config file is TOML text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nests arrays or tables too deeply to read; a study or config file is flat TOML"
        ) from None


def parse_study(data, path):
    """A study file's table (``read_toml``) as a checked ``Study``; the first error raised as one line."""
    check = _Checker(path)
    for key in data:
        if key not in SECTIONS:
            check.fail(key, data[key], f"known keys: {', '.join(SECTIONS)}")
    header = _parse_header(check, data)
    fixed = check.table(data, "fixed")
    table = check.table(data, "conditions", required=True)
    custom = _names_custom(fixed, table)
    known = f"known keys: {', '.join(sorted(set(SETTING_KEYS) - {'seed'}))}"
    for key, value in fixed.items():
        _is_own(check, f"fixed.{key}", key, value, custom, known)
    conditions = _parse_conditions(check, table, fixed, custom)
    _check_methods(path, fixed, conditions)
    search = _parse_search(check, check.table(data, "search", required=True), fixed, conditions, custom)
    fixed = resolve_paths(path, table, fixed, conditions)  # before: two spellings of one file are one condition
    _refuse_identical(check, fixed, conditions, search)
    budget = _parse_budget(check, data)
    return Study(
        **header,
        path=path,
        fixed=fixed,
        conditions=conditions,
        search=search,
        **budget,
        **_parse_sampler(check, data, search, budget["trials"]),
        **_parse_pruner(check, data),
        **_parse_objective(check, data),
        **_parse_confirm(check, data, fixed),
        **_parse_analysis(check, data),
        search_curves=check.choice(
            "record.search_curves",
            check.table(data, "record", SECTIONS["record"]).get("search_curves", "lean"),
            ("lean", "all"),
        ),
        raw=data,
    )


def _names_custom(fixed, table):
    """Whether a study names a custom loss or optimizer anywhere (``[fixed]``, a list axis, a bundle)."""
    names = [fixed.get("loss"), fixed.get("optimizer")]
    for axis, levels in table.items():
        if axis in ("loss", "optimizer") and isinstance(levels, list):
            names += levels
        if isinstance(levels, dict):
            names += [b.get(k) for b in levels.values() if isinstance(b, dict) for k in ("loss", "optimizer")]
    return any(isinstance(name, str) and is_custom(name) for name in names)


def _is_own(check, key, name, value, custom, allowed):
    """Whether a study's key ``name`` is a custom method's own setting (no TrainConfig field, in a study that
    names a custom loss or optimizer), not a harness setting; any other key is refused, saying ``allowed``."""
    if name in SETTING_KEYS and name != "seed":
        return False
    if custom and _own_name(name):
        return True
    check.fail(key, value, allowed)


def _own_name(name):
    return isinstance(name, str) and name not in FIELD_TYPES and SETTING_NAME.fullmatch(name) is not None


def _check_methods(path, fixed, conditions):
    """Each condition's own loss or optimizer imported (first from the study's folder) and checked, the
    settings they declare noted (``Condition.declared``), and the values the study gives them checked."""
    add_search_folder(os.path.dirname(os.path.abspath(path)))
    for condition in conditions:
        values = {**fixed, **condition.settings}
        fields = {k: v for k, v in values.items() if k in FIELD_TYPES}
        try:
            config = make_config(fields)
            check_methods(config)
            kinds = (("loss", config.loss), ("optimizer", config.optimizer))
            condition.declared = sorted(s.name for kind, name in kinds for s in declared_settings(kind, name))
            own = {k: v for k, v in fixed.items() if k not in FIELD_TYPES and k in condition.declared}
            own.update({k: v for k, v in condition.settings.items() if k not in FIELD_TYPES})
            if own:  # a condition's own value of a setting its methods do not declare is refused here
                check_methods(make_config({**fields, "method_settings": own}))
        except ConfigError as exc:
            raise ConfigError(f"{path}: condition {condition.name}: {exc}") from None


def _parse_header(check, data):
    name = data.get("name")
    if name is None:
        raise ConfigError(f"{check.path}: name is missing; {_HELP['name']}")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        check.fail("name", name, "use 1-64 letters, digits, '_', '.', '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        check.fail("description", description, "expected a string")
    return {"name": name, "description": description}


def _parse_budget(check, data):
    budget = check.table(data, "budget", SECTIONS["budget"])
    trials = check.integer("budget.trials", budget.get("trials", 12), 1, MAX_TRIALS)
    stack = check.integer("budget.stack", budget.get("stack", DEFAULT_STACK), 1, MAX_STACK)
    timeout = budget.get("timeout_seconds")
    if timeout is not None and check.number("budget.timeout_seconds", timeout) <= 0:
        check.fail("budget.timeout_seconds", timeout, "must be > 0 (or left out)")
    return {"trials": trials, "stack": stack, "timeout_seconds": timeout}


def _parse_sampler(check, data, search, trials):
    sampler = check.table(data, "sampler", SECTIONS["sampler"])
    name = check.choice("sampler.name", sampler.get("name", "tpe"), SAMPLERS)
    seed = check.integer("sampler.seed", sampler.get("seed", 0), 0, SEED_MAX)
    if name == "grid":
        for param in search:
            if param.choices is None:
                check.fail(
                    f"search.{param.name}",
                    {"low": param.low, "high": param.high},
                    "the grid sampler needs choices = [...] for every searched setting",
                )
        points = math.prod(len(p.choices) for p in search)
        if trials > points:
            check.fail("budget.trials", trials, f"the grid has {points} points; ask for at most that many")
    return {"sampler": name, "sampler_seed": seed}


def _parse_pruner(check, data):
    pruner = check.table(data, "pruner", SECTIONS["pruner"])
    return {
        "pruner": check.choice("pruner.name", pruner.get("name", "median"), PRUNERS),
        "pruner_startup_trials": check.integer("pruner.startup_trials", pruner.get("startup_trials", 4), 0, MAX_TRIALS),
        "pruner_warmup_epochs": check.integer("pruner.warmup_epochs", pruner.get("warmup_epochs", 3), 0, MAX_EPOCHS),
        "pruner_among_stack": check.boolean("pruner.among_stack", pruner.get("among_stack", False)),
    }


def _parse_objective(check, data):
    objective = check.table(data, "objective", SECTIONS["objective"])
    metric = check.choice("objective.metric", objective.get("metric", "val_accuracy"), tuple(OBJECTIVES))
    direction = check.choice(
        "objective.direction", objective.get("direction", OBJECTIVES[metric]), ("maximize", "minimize")
    )
    if direction != OBJECTIVES[metric]:
        check.fail("objective.direction", direction, f"{metric} must be {OBJECTIVES[metric]}d")
    target = objective.get("target_accuracy", 0.95)
    if not 0 < check.number("objective.target_accuracy", target) <= 1:
        check.fail("objective.target_accuracy", target, "must be in (0, 1]")
    return {"objective": metric, "direction": direction, "target_accuracy": float(target)}


def _parse_confirm(check, data, fixed):
    confirm = check.table(data, "confirm", SECTIONS["confirm"])
    vary = confirm.get("vary", ["init"])
    if (
        not isinstance(vary, list)
        or "init" not in vary
        or any(v not in VARY for v in vary)
        or len(set(vary)) < len(vary)
    ):
        check.fail("confirm.vary", vary, 'expected ["init"] or ["init", "split"]')
    if "split" in vary and "data_seed" in fixed:
        check.fail("confirm.vary", vary, f"fixed.data_seed = {fixed['data_seed']} fixes the split; remove one of them")
    return {
        "confirm_vary": list(vary),
        "confirm_seeds": check.integer("confirm.seeds", confirm.get("seeds", 5), 1, MAX_CONFIRM_SEEDS),
        "confirm_models": check.choice("confirm.models", confirm.get("models", "first"), ("first", "every")),
        "search_seed": check.integer("search_seed", data.get("search_seed", 0), 0, SEED_MAX - MAX_CONFIRM_SEEDS - 1),
    }


def _parse_analysis(check, data):
    """How the comparison reads the results: the learning-rate tolerance and the equivalence margin."""
    analysis = check.table(data, "analysis", SECTIONS["analysis"])
    tolerance = analysis.get("tolerance")
    if tolerance is not None and not check.number("analysis.tolerance", tolerance) > 0:
        check.fail("analysis.tolerance", tolerance, "must be > 0, in the objective's units")
    margin = analysis.get("margin", 0.01)
    if not 0 < check.number("analysis.margin", margin) < 1:
        check.fail("analysis.margin", margin, "must be in (0, 1), in test accuracy (0.01 = 1 point)")
    return {"analysis_tolerance": None if tolerance is None else float(tolerance), "analysis_margin": float(margin)}


def _parse_conditions(check, table, fixed, custom=False):
    """The grid of conditions: every combination of one level per axis of [conditions]."""
    if not table:
        check.fail("conditions", table, 'list at least one setting to compare, e.g. loss = ["mse"]')
    axes = [_parse_axis(check, axis, levels, fixed, custom) for axis, levels in table.items()]
    count = math.prod(len(axis) for axis in axes)
    if count > MAX_CONDITIONS:
        sizes = " x ".join(f"{len(axis):,}" for axis in axes) + " = " if len(axes) > 1 else ""
        check.fail("conditions", table, f"makes {sizes}{count:,} conditions; at most {MAX_CONDITIONS:,}")
    conditions, named = [], {}
    for combination in itertools.product(*axes):
        settings, names, factors = {}, [], {}
        for axis, level, values in combination:
            names.append(level)
            factors[axis] = level
            for setting, value in values.items():
                if setting in settings and settings[setting] != value:
                    check.fail(
                        f"conditions.{'/'.join(names)}",
                        value,
                        f"{setting} is set twice in one condition "
                        f"({shown(settings[setting])} and {shown(value)}); set it in one axis only",
                    )
            settings.update(values)
        name = "-".join(names)
        if name in named:
            check.fail(
                "conditions",
                name,
                f"two conditions get this name ({named[name]} and {settings}); "
                "rename a bundle or a value so that names stay distinct",
            )
        named[name] = settings
        conditions.append(Condition(name, settings, factors))
    return conditions


def _parse_axis(check, axis, levels, fixed, custom):
    """One axis of [conditions] as [(axis, level name, settings)]: a list of values of one setting, or a
    table of named bundles of settings."""
    key = f"conditions.{axis}"
    if isinstance(levels, list):
        _is_own(check, key, axis, levels, custom, f"a list axis must be a training setting: {', '.join(SETTING_KEYS)}")
        if not levels:
            check.fail(key, levels, "give at least one value")
        if len(set(map(repr, levels))) != len(levels):
            check.fail(key, levels, "values must differ")
        parsed = [(axis, _level_name(v), {axis: v}) for v in levels]
    elif isinstance(levels, dict):
        if not levels:
            check.fail(key, levels, 'give at least one named bundle, e.g. sgd = { optimizer = "sgd" }')
        parsed = []
        for level, settings in levels.items():
            if not isinstance(settings, dict):
                check.fail(f"{key}.{level}", settings, "expected a table of settings")
            for setting in settings:
                allowed = f"known settings: {', '.join(SETTING_KEYS)}"
                _is_own(check, f"{key}.{level}.{setting}", setting, settings[setting], custom, allowed)
            if not NAME_PATTERN.fullmatch(level):
                check.fail(key, level, "bundle names use 1-64 letters, digits, '_', '.', '-'")
            parsed.append((axis, level, dict(settings)))
    else:
        check.fail(key, levels, "expected a list of values or a table of named settings")
    for setting in {s for _, _, settings in parsed for s in settings} & set(fixed):
        check.fail(
            f"fixed.{setting}",
            fixed[setting],
            f"conditions.{axis} also sets {setting}; a setting is either fixed or compared, remove it from one of them",
        )
    return parsed


def _refuse_identical(check, fixed, conditions, search):
    """Two conditions that train the same thing would compare a setting with itself; a fixed setting
    that no condition uses (momentum with Adam only, a label column without a CSV) would be ignored."""
    params = {p.name: (p.choices[0] if p.choices else p.low) for p in search}
    seen, used = {}, set()
    for condition in conditions:
        config = settings_config({**fixed, **condition.settings, **params}, condition)
        used |= set(config.applicable())
        key = config.to_json()
        if key in seen:
            check.fail(
                "conditions",
                condition.name,
                f"it trains exactly what {seen[key]} trains "
                f"(same settings {condition.settings}); give every condition different settings",
            )
        seen[key] = condition.name
    for key in sorted(set(fixed) - used):
        check.fail(
            f"fixed.{key}", fixed[key], "no condition uses it (it would be ignored); remove it, or set what uses it"
        )


def _level_name(value):
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9_.,]", "_", text)


def _parse_search(check, table, fixed, conditions, custom=False):
    if not table:
        check.fail("search", table, "search at least the learning rate, e.g. lr = { low = 0.001, high = 1.0 }")
    params = []
    for name, spec in table.items():
        key = f"search.{name}"
        if name not in SEARCHABLE:
            if not (custom and _own_name(name)):
                check.fail(key, spec, f"searchable settings: {', '.join(SEARCHABLE)}")
            _check_declared_by_one(check, key, name, spec, conditions)
        if not isinstance(spec, dict):
            check.fail(key, spec, "expected { low = ..., high = ... } or { choices = [...] }")
        unknown = set(spec) - {"low", "high", "log", "choices"}
        if unknown:
            sub = sorted(unknown)[0]
            check.fail(f"{key}.{sub}", spec[sub], "known keys: low, high, log, choices")
        if name in fixed:
            check.fail(f"fixed.{name}", fixed[name], f"{name} is searched; remove it from [fixed]")
        for condition in conditions:
            if name in condition.settings:
                check.fail(
                    f"conditions ({condition.name}).{name}",
                    condition.settings[name],
                    f"{name} is searched; a condition cannot also fix it",
                )
        kind = SEARCHABLE.get(name, float)
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) - {"choices"}:
                check.fail(key, spec, "give either choices or low/high, not both")
            if not isinstance(choices, list) or not choices:
                check.fail(f"{key}.choices", choices, "expected a non-empty list")
            for value in choices:
                _check_search_value(check, f"{key}.choices", name, value)
            params.append(SearchParam(name, choices=list(choices)))
            continue
        for bound in ("low", "high"):
            if bound not in spec:
                raise ConfigError(f"{check.path}: {key}.{bound} is missing; give low and high")
            _check_search_value(check, f"{key}.{bound}", name, spec[bound])
        low, high, log = spec["low"], spec["high"], spec.get("log", name == "lr")
        if not isinstance(log, bool):
            check.fail(f"{key}.log", log, "expected true or false")
        if not low < high:
            check.fail(f"{key}.low", low, f"must be < {key}.high ({high})")
        if log and low <= 0:
            check.fail(f"{key}.low", low, "a log range must start above 0")
        if kind is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            check.fail(key, spec, f"{name} bounds must be integers")
        params.append(SearchParam(name, low=low, high=high, log=log))
    for condition in conditions:
        _check_condition(check.path, {**fixed, **condition.settings}, condition, params)
    _check_own_ranges(check.path, fixed, conditions, params)
    return params


def _check_declared_by_one(check, key, name, spec, conditions):
    """A searched setting of a custom method: the loss or optimizer of at least one condition declares it."""
    if not any(name in condition.declared for condition in conditions):
        declared = sorted({n for condition in conditions for n in condition.declared})
        allowed = f"no condition's loss or optimizer declares {name} (declared: {', '.join(declared) or 'none'})"
        check.fail(key, spec, allowed)


def _check_own_ranges(path, fixed, conditions, params):
    """Every value a custom method's searched setting may take lies in the range its method declares (the
    methods were imported when the conditions were checked)."""
    for condition in conditions:
        for param in params:
            if param.name in FIELD_TYPES or param.name not in condition.declared:
                continue
            for value in param.choices if param.choices is not None else (param.low, param.high):
                try:
                    check_methods(settings_config({**fixed, **condition.settings, param.name: value}, condition))
                except ConfigError as exc:
                    raise ConfigError(f"{path}: condition {condition.name}: search.{exc}") from None


def _check_search_value(check, key, name, value):
    kind = SEARCHABLE.get(name, float)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        check.fail(key, value, f"expected {'an integer' if kind is int else 'a number'}")
    if not math.isfinite(value):
        check.fail(key, value, "must be a finite number")
    if name == "epochs" and value > MAX_EPOCHS:
        check.fail(key, value, f"must be at most {MAX_EPOCHS}")
    minimum = {"lr": 0, "epochs": 1, "batch_size": 1}.get(name)
    if name in ("lr",) and value <= 0:
        check.fail(key, value, "must be > 0")
    if minimum is not None and name != "lr" and value < minimum:
        check.fail(key, value, f"must be >= {minimum}")
    if name in ("momentum", "weight_decay") and value < 0:
        check.fail(key, value, "must be >= 0")
    if name == "momentum" and value >= 1:
        check.fail(key, value, "must be < 1")
