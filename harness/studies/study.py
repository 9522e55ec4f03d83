"""A study as it runs: its conditions, search space, budget and seeds, resolved once with the
command's flags, and the names its Optuna studies and runs carry.
"""

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field

from ..common.errors import ConfigError
from ..engine.config import FIELD_TYPES, MAX_EPOCHS, make_config

SEARCHABLE = {
    "lr": float,
    "epochs": int,
    "momentum": float,
    "batch_size": int,
    "weight_decay": float,
    "beta1": float,
    "beta2": float,
    "rho": float,
    "eps": float,
    "gce_q": float,
}
"""The harness settings a study may search; a custom loss's or optimizer's own settings (``Condition.declared``)
are searched as floats."""

SAMPLERS = ("tpe", "random", "qmc", "grid")

PRUNERS = ("median", "hyperband", "none")

OBJECTIVES = {
    "val_accuracy": "maximize",
    "val_cross_entropy": "minimize",
    "val_mse": "minimize",
    "val_mse_logits": "minimize",
    "val_mae": "minimize",
}

SECTIONS = {
    "name": None,
    "description": None,
    "fixed": None,
    "conditions": None,
    "search": None,
    "budget": {"trials", "timeout_seconds", "stack"},
    "sampler": {"name", "seed"},
    "pruner": {"name", "startup_trials", "warmup_epochs", "among_stack"},
    "objective": {"metric", "direction", "target_accuracy"},
    "confirm": {"seeds", "models", "vary"},
    "record": {"search_curves"},
    "analysis": {"tolerance", "margin"},
    "search_seed": None,
}

DEFAULT_STACK = 8
"""Trials (and confirmation seeds) trained together as one stack. Measured on the quickstart without
pruning (benchmarks/bench_stack.py): stacks of 1 / 4 / 8 / 16 took 14.9 / 12.8 / 11.8 / 11.1 s. 8, not
16, because the sampler learns only from told trials: a stack of a condition's whole budget is asked
before any of it is told. (It was also because Optuna's median pruner never prunes in a condition's first
stack; with ``[pruner] among_stack = true`` the members of a stack are each other's references too.)"""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Study and bundle names (matched whole: no newline, no path separator)."""

NOT_IDENTITY = ("budget", "confirm", "record", "analysis")
"""Sections that change how much is run or recorded, not what is searched: editable on a running study."""
MAX_TRIALS = 100_000

LEGACY_SEARCH = "legacy"
"""The search id of a search begun before runs carried one: its runs, which carry none, belong to it."""

CONFIRM_NAME = re.compile(r"(?P<search>.+)/confirm-after-(?P<budget>\d+)-trials")
"""An Optuna confirm study's name (``Study.optuna_name``): the search it confirms, and that search's budget."""

MAX_CONFIRM_SEEDS = 1_000
MAX_CONDITIONS = 1_000
"""A grid beyond this is a typo (a list of 100,000 values), not a comparison: each condition is a parent
run, an Optuna study and its own search."""

VARY = ("init", "split")
"""What ``[confirm] vary`` may list."""

TOLERANCES = {
    "val_accuracy": 0.01,
    "val_cross_entropy": 0.05,
    "val_mse": 0.01,
    "val_mse_logits": 0.05,
    "val_mae": 0.02,
}
"""Default ``[analysis] tolerance`` per objective: 1 point of accuracy; 0.05 nats of cross-entropy; 0.01 of
the probabilities' squared error; 0.05 of the logits' squared error; 0.02 of the probabilities' absolute
error, 2 (1 - p[y]) per row: 1 point of probability on the true label."""

MAX_STACK = 4_096


@dataclass
class SearchParam:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None

    @property
    def is_int(self):
        return SEARCHABLE.get(self.name) is int


@dataclass
class Condition:
    name: str
    settings: dict
    levels: dict = field(default_factory=dict)  # factor (a [conditions] axis) -> this condition's level
    declared: list = field(default_factory=list)
    """The names of the settings its custom loss and optimizer declare, found when the study is parsed
    (which imports them): a study's key that is no TrainConfig field reaches this condition's runs as
    one of their ``method_settings`` only when it is one of these."""


def settings_config(values, condition):
    """The TrainConfig of a study's flat settings for ``condition``: a key that is no TrainConfig field is a
    custom method's own setting, in ``method_settings`` when the condition's methods declare it, else
    left out (as a built-in setting that a condition's optimizer does not read is idle)."""
    fields = {k: v for k, v in values.items() if k in FIELD_TYPES}
    own = {k: v for k, v in values.items() if k not in FIELD_TYPES and k in condition.declared}
    return make_config({**fields, "method_settings": own} if own else fields)


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
    pruner_among_stack: bool = False
    """The median rule also compares the members of one stack with each other (``sweep.pruning``). Off
    unless asked: it changes what a study finds (the quickstart's best settings moved with it), so a study
    swept before keeps its results and the shipped studies their documented figures."""
    confirm_models: str = "first"
    """Which confirmation runs log an MLflow model: the condition's first seed, or every seed. One
    ``log_model`` costs the recorder about 0.13 s, and 20 of them were 2.5 s of the quickstart's 14 s."""
    search_curves: str = "lean"
    """What a search trial records per epoch: "lean" (objective, train loss, validation loss and accuracy)
    or "all" (the diagnostics too, as a confirmation run records them)."""
    confirm_vary: list = field(default_factory=lambda: ["init"])
    """What a confirmation seed varies: "init" (initialisation and batch order), and "split" (each seed also
    draws its own train/validation/test split, data_seed = the seed)."""
    analysis_tolerance: float | None = None
    """Good learning rates score within this of the data set's best validation score, in the objective's
    units; None: ``TOLERANCES[objective]``."""
    analysis_margin: float = 0.01
    """Equivalence margin of the paired comparisons, in test accuracy (0.01 = 1 point)."""
    search_ids: dict = field(default_factory=dict)
    """{condition: id of its current search} (``sweep.studies.prepare_studies``): runs of an earlier search of
    the same name (its journal deleted, its storage replaced) carry another id and never count. Empty in
    a study not yet prepared, or recorded by an older version: then every run counts."""
    raw: dict = field(default_factory=dict, repr=False)

    def optuna_name(self, condition, phase="search"):
        """``<study>/<condition>`` for the search; its confirmation is tied to the search budget, so
        extending a finished sweep with more trials confirms the new best again."""
        base = f"{self.name}/{condition.name}"
        return base if phase == "search" else f"{base}/confirm-after-{self.trials}-trials"

    def identity(self):
        """What defines the search (not its budget or seeds count), as plain JSON data."""
        content = {k: v for k, v in self.raw.items() if k not in NOT_IDENTITY}
        return json.loads(json.dumps(content, sort_keys=True, default=str))

    def settings_digest(self):
        """Digest of ``identity``, to refuse a silent change of a study's search."""
        content = {k: v for k, v in self.raw.items() if k not in NOT_IDENTITY}
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def config_for(self, condition, params, seed, phase="search"):
        """The run's settings; a confirmation seed of a study that varies the split draws its own split."""
        split = {"data_seed": seed} if phase == "confirm" and "split" in self.confirm_vary else {}
        return settings_config({**self.fixed, **condition.settings, **params, **split, "seed": seed}, condition)

    def largest_config(self, condition):
        """A run of the condition at the high end of every searched range (the largest it can get): its
        data and its memory are those of every run of the condition's search."""
        high = {p.name: p.choices[0] if p.choices else p.high for p in self.search}
        return self.config_for(condition, high, self.search_seed)

    @property
    def tolerance(self):
        return TOLERANCES[self.objective] if self.analysis_tolerance is None else self.analysis_tolerance

    def confirm_seed_values(self):
        """Seeds of the confirmation runs: never the seed the search trained with."""
        return [self.search_seed + 1 + i for i in range(self.confirm_seeds)]

    def logs_model(self, seed):
        """Whether the confirmation run of ``seed`` logs an MLflow model (``confirm.models``)."""
        return self.confirm_models == "every" or seed == self.confirm_seed_values()[0]

    def condition(self, name):
        return next(c for c in self.conditions if c.name == name)

    def to_dict(self):
        """Plain data (JSON): what a sweep recorded as its resolved study, read back by ``compare``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        values = dict(data)
        values["conditions"] = [Condition(**c) for c in values["conditions"]]
        values["search"] = [SearchParam(**p) for p in values["search"]]
        return cls(**values)


def resolve(study, trials=None, epochs=None, confirm_seeds=None, stack=None):
    """The study a sweep runs: the file's settings with the command's flags applied, checked once.

    Workers and later commands receive this object (or its ``to_dict``), never the file again, so a
    flag cannot be lost on the way to a worker.
    """
    changes, raw = {}, dict(study.raw)
    if trials is not None:
        changes["trials"] = _flag("--trials", trials, 1, MAX_TRIALS)
        _check_grid(study, changes["trials"], "--trials")
    if confirm_seeds is not None:
        changes["confirm_seeds"] = _flag("--confirm-seeds", confirm_seeds, 1, MAX_CONFIRM_SEEDS)
        raw["confirm"] = {**raw.get("confirm", {}), "seeds": confirm_seeds}
    if stack is not None:
        changes["stack"] = _flag("--stack", stack, 1, MAX_STACK)
    if epochs is not None:
        _flag("--epochs", epochs, 1, MAX_EPOCHS)
        search = [p for p in study.search if p.name != "epochs"]
        if not search:
            raise ConfigError(f"{study.path}: --epochs leaves nothing to search; add lr to [search]")
        changes["search"] = search
        changes["fixed"] = {**study.fixed, "epochs": epochs}
        raw["fixed"] = {**raw.get("fixed", {}), "epochs": epochs}  # as written: paths stay unresolved
        raw["search"] = {k: v for k, v in raw.get("search", {}).items() if k != "epochs"}
    if changes.get("search") is not None:
        for condition in study.conditions:  # the fixed epoch count must make a valid run everywhere
            _check_condition(study.path, {**changes["fixed"], **condition.settings}, condition, changes["search"])
    return dataclasses.replace(study, raw=raw, **changes)


def _flag(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} = {value} is not allowed; must be an integer in [{low}, {high}]")
    return value


def _check_grid(study, trials, where):
    if study.sampler == "grid":
        points = math.prod(len(p.choices) for p in study.search)
        if trials > points:
            raise ConfigError(
                f"{where} = {trials} is not allowed; the grid has {points} points; ask for at most that many"
            )


def _check_condition(path, settings, condition, params):
    """Every condition, at both ends of the search ranges, must make a valid run."""
    for pick in (0, 1):
        values = {p.name: (p.choices[0] if p.choices else (p.low, p.high)[pick]) for p in params}
        try:
            settings_config({**settings, **values}, condition)
        except ConfigError as exc:
            raise ConfigError(f"{path}: condition {condition.name}: {exc}") from None
