"""Study files: parse and validate a TOML study definition into a ``Study``.

A study compares *conditions* (the scientific settings: loss, optimizer, ...) at their own best
*nuisance* settings (learning rate, epochs, ...), which are searched separately for each condition with
the same budget. Everything is checked before anything is created; every error is one line naming
the file, the key and what is allowed.
"""
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field

from .config import FIELD_TYPES, make_config
from .errors import ConfigError

SEARCHABLE = {"lr": float, "epochs": int, "momentum": float, "batch_size": int, "weight_decay": float}
SAMPLERS = ("tpe", "random", "qmc", "grid")
PRUNERS = ("median", "hyperband", "none")
OBJECTIVES = {"val_accuracy": "maximize", "val_cross_entropy": "minimize", "val_mse": "minimize",
              "val_mse_logits": "minimize"}
SECTIONS = {
    "name": None, "description": None, "fixed": None, "conditions": None, "search": None,
    "budget": {"trials", "timeout_seconds", "stack"},
    "sampler": {"name", "seed"},
    "pruner": {"name", "startup_trials", "warmup_epochs"},
    "objective": {"metric", "direction", "target_accuracy"},
    "confirm": {"seeds"},
    "search_seed": None,
}
DEFAULT_STACK = 8
"""Trials (and confirmation seeds) trained together as one stack. Measured on the quickstart without
pruning (benchmarks/bench_stack.py): stacks of 1 / 4 / 8 / 16 took 14.9 / 12.8 / 11.8 / 11.1 s. But
Optuna's median pruner compares a trial only with *finished* trials, so nothing in the first stack of
a condition can be pruned: with 16 trials, a stack of 16 switched pruning off entirely. 8 keeps it for
the second half of the budget."""
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SearchParam:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None

    @property
    def is_int(self):
        return SEARCHABLE[self.name] is int


@dataclass
class Condition:
    name: str
    settings: dict


@dataclass
class Study:
    name: str
    path: str
    description: str
    fixed: dict
    conditions: list
    search: list
    trials: int
    timeout_seconds: float | None
    sampler: str
    sampler_seed: int
    pruner: str
    pruner_startup_trials: int
    pruner_warmup_epochs: int
    objective: str
    direction: str
    target_accuracy: float
    confirm_seeds: int
    search_seed: int = 0
    stack: int = DEFAULT_STACK
    raw: dict = field(default_factory=dict, repr=False)

    def optuna_name(self, condition, phase="search", budget=None):
        """``<study>/<condition>`` for the search; its confirmation is tied to the search budget, so
        extending a finished sweep with more trials confirms the new best again."""
        base = f"{self.name}/{condition.name}"
        return base if phase == "search" else f"{base}/confirm-after-{budget}-trials"

    def settings_digest(self):
        """Digest of what defines the search (not its budget or seeds count), to refuse a silent change."""
        content = {k: v for k, v in self.raw.items() if k not in ("budget", "confirm")}
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def config_for(self, condition, params, seed):
        return make_config({**self.fixed, **condition.settings, **params, "seed": seed})

    def confirm_seed_values(self):
        """Seeds of the confirmation runs: never the seed the search trained with."""
        return [self.search_seed + 1 + i for i in range(self.confirm_seeds)]


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, key, value, allowed):
        raise ConfigError(f"{self.path}: {key} = {value!r} is not allowed; {allowed}")

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

    def integer(self, key, value, minimum):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(key, value, f"must be an integer >= {minimum}")
        return value

    def number(self, key, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(key, value, "must be a number")
        return float(value)

    def choice(self, key, value, names):
        if value not in names:
            self.fail(key, value, f"choose one of: {', '.join(names)}")
        return value


_HELP = {
    "name": "give the study a name (letters, digits, '_', '.', '-')",
    "conditions": "add a [conditions] table, e.g. loss = [\"mse\", \"cross_entropy\"]",
    "search": "add a [search] table, e.g. lr = { low = 0.001, high = 1.0, log = true }",
}


def load_study(path):
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_study(data, str(path))


def parse_study(data, path):
    check = _Checker(path)
    for key in data:
        if key not in SECTIONS:
            check.fail(key, data[key], f"known keys: {', '.join(SECTIONS)}")
    name = data.get("name")
    if name is None:
        raise ConfigError(f"{path}: name is missing; {_HELP['name']}")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        check.fail("name", name, "use 1-64 letters, digits, '_', '.', '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        check.fail("description", description, "expected a string")

    fixed = check.table(data, "fixed", known=set(FIELD_TYPES) - {"seed"})
    conditions = _parse_conditions(check, check.table(data, "conditions", required=True))
    search = _parse_search(check, check.table(data, "search", required=True), fixed, conditions)

    budget = check.table(data, "budget", SECTIONS["budget"])
    trials = check.integer("budget.trials", budget.get("trials", 12), 1)
    stack = check.integer("budget.stack", budget.get("stack", DEFAULT_STACK), 1)
    timeout = budget.get("timeout_seconds")
    if timeout is not None and check.number("budget.timeout_seconds", timeout) <= 0:
        check.fail("budget.timeout_seconds", timeout, "must be > 0 (or left out)")

    sampler = check.table(data, "sampler", SECTIONS["sampler"])
    sampler_name = check.choice("sampler.name", sampler.get("name", "tpe"), SAMPLERS)
    sampler_seed = check.integer("sampler.seed", sampler.get("seed", 0), 0)
    if sampler_name == "grid":
        for param in search:
            if param.choices is None:
                check.fail(f"search.{param.name}", {"low": param.low, "high": param.high},
                           "the grid sampler needs choices = [...] for every searched setting")
        points = math.prod(len(p.choices) for p in search)
        if trials > points:
            check.fail("budget.trials", trials, f"the grid has {points} points; ask for at most that many")

    pruner = check.table(data, "pruner", SECTIONS["pruner"])
    pruner_name = check.choice("pruner.name", pruner.get("name", "median"), PRUNERS)
    startup = check.integer("pruner.startup_trials", pruner.get("startup_trials", 4), 0)
    warmup = check.integer("pruner.warmup_epochs", pruner.get("warmup_epochs", 3), 0)

    objective = check.table(data, "objective", SECTIONS["objective"])
    metric = check.choice("objective.metric", objective.get("metric", "val_accuracy"), tuple(OBJECTIVES))
    direction = check.choice("objective.direction", objective.get("direction", OBJECTIVES[metric]),
                             ("maximize", "minimize"))
    if direction != OBJECTIVES[metric]:
        check.fail("objective.direction", direction, f"{metric} must be {OBJECTIVES[metric]}d")
    target = objective.get("target_accuracy", 0.95)
    if not 0 < check.number("objective.target_accuracy", target) <= 1:
        check.fail("objective.target_accuracy", target, "must be in (0, 1]")

    confirm = check.table(data, "confirm", SECTIONS["confirm"])
    seeds = check.integer("confirm.seeds", confirm.get("seeds", 5), 1)
    search_seed = check.integer("search_seed", data.get("search_seed", 0), 0)

    return Study(name=name, path=path, description=description, fixed=fixed, conditions=conditions,
                 search=search, trials=trials, timeout_seconds=timeout, sampler=sampler_name,
                 sampler_seed=sampler_seed, pruner=pruner_name, pruner_startup_trials=startup,
                 pruner_warmup_epochs=warmup, objective=metric, direction=direction,
                 target_accuracy=float(target), confirm_seeds=seeds, search_seed=search_seed, stack=stack,
                 raw=data)


def _parse_conditions(check, table):
    if not table:
        check.fail("conditions", table, "list at least one setting to compare, e.g. loss = [\"mse\"]")
    axes = []
    for axis, levels in table.items():
        key = f"conditions.{axis}"
        if isinstance(levels, list):
            if axis not in FIELD_TYPES or axis == "seed":
                check.fail(key, levels, f"a list axis must be a training setting: {', '.join(FIELD_TYPES)}")
            if not levels:
                check.fail(key, levels, "give at least one value")
            if len(set(map(repr, levels))) != len(levels):
                check.fail(key, levels, "values must differ")
            axes.append([(_level_name(v), {axis: v}) for v in levels])
        elif isinstance(levels, dict):
            if not levels:
                check.fail(key, levels, "give at least one named bundle, e.g. sgd = { optimizer = \"sgd\" }")
            bundles = []
            for level, settings in levels.items():
                if not isinstance(settings, dict):
                    check.fail(f"{key}.{level}", settings, "expected a table of settings")
                for setting in settings:
                    if setting not in FIELD_TYPES or setting == "seed":
                        check.fail(f"{key}.{level}.{setting}", settings[setting],
                                   f"known settings: {', '.join(FIELD_TYPES)}")
                if not NAME_PATTERN.match(level):
                    check.fail(key, level, "bundle names use letters, digits, '_', '.', '-'")
                bundles.append((level, dict(settings)))
            axes.append(bundles)
        else:
            check.fail(key, levels, "expected a list of values or a table of named settings")
    conditions = []
    for combination in itertools.product(*axes):
        settings, names = {}, []
        for level, values in combination:
            names.append(level)
            settings.update(values)
        conditions.append(Condition("-".join(names), settings))
    return conditions


def _level_name(value):
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9_.,]", "_", text)


def _parse_search(check, table, fixed, conditions):
    if not table:
        check.fail("search", table, "search at least the learning rate, e.g. lr = { low = 0.001, high = 1.0 }")
    params = []
    for name, spec in table.items():
        key = f"search.{name}"
        if name not in SEARCHABLE:
            check.fail(key, spec, f"searchable settings: {', '.join(SEARCHABLE)}")
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
                check.fail(f"conditions ({condition.name}).{name}", condition.settings[name],
                           f"{name} is searched; a condition cannot also fix it")
        kind = SEARCHABLE[name]
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
    # every condition, at both ends of the ranges, must make a valid run
    for condition in conditions:
        for pick in (0, 1):
            values = {p.name: (p.choices[0] if p.choices else (p.low, p.high)[pick]) for p in params}
            try:
                make_config({**fixed, **condition.settings, **values})
            except ConfigError as exc:
                raise ConfigError(f"{check.path}: condition {condition.name}: {exc}") from None
    return params


def _check_search_value(check, key, name, value):
    kind = SEARCHABLE[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        check.fail(key, value, f"expected {'an integer' if kind is int else 'a number'}")
    minimum = {"lr": 0, "epochs": 1, "batch_size": 1}.get(name)
    if name in ("lr",) and value <= 0:
        check.fail(key, value, "must be > 0")
    if minimum is not None and name != "lr" and value < minimum:
        check.fail(key, value, f"must be >= {minimum}")
    if name in ("momentum", "weight_decay") and value < 0:
        check.fail(key, value, "must be >= 0")
    if name == "momentum" and value >= 1:
        check.fail(key, value, "must be < 1")
