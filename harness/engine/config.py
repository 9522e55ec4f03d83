"""The resolved settings of one training run, validated before anything is created.

A ``TrainConfig`` is what a run records as its config artifact and what ``reproduce`` rebuilds, so
every field is plain data (str, int, float, bool, list, and ``method_settings``: {name: number}) and
round-trips through JSON and TOML. A custom method's own settings (``method_settings``) are checked here
for their form only; against what the method declares in ``check_methods``, which imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import ConfigError, shown
from .activations import ACTIVATIONS
from .data import GENERATED, LOADERS
from .declared import MAX_METHOD_SETTINGS, SETTING_NAME
from .losses import LOSSES
from .methods import (
    check_method_settings,
    is_custom,
    method_values,
    optimizer_settings,
    resolve_loss,
    resolve_optimizer,
    split_name,
)
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULE_SETTINGS, SCHEDULES

DTYPE_NAMES = ("float64", "float32")
SEED_MAX = 2**32 - 1
"""numpy and scikit-learn take seeds in [0, 2**32 - 1]."""
MAX_SAMPLES = 10_000_000
MAX_EPOCHS = 100_000
MAX_LAYERS = 1_000
"""Far beyond what a small MLP trains well; a longer list is a typo or a crafted config (one 1 MB
config could list 200,000 layers)."""
FLOAT_KEYS = (
    "lr",
    "momentum",
    "weight_decay",
    "gamma",
    "power_t",
    "beta1",
    "beta2",
    "rho",
    "eps",
    "val_fraction",
    "test_fraction",
    "gce_q",
    "label_noise",
    "imbalance",
)
NOISE_KINDS = ("symmetric", "pairwise")
"""Label noise: ``symmetric`` moves a noisy label to any other class alike; ``pairwise`` (class-dependent)
moves class k to class k+1 (the last to the first)."""
MAX_IMBALANCE = 1000.0


@dataclass
class TrainConfig:
    dataset: str = "digits"
    csv: str | None = None
    label_column: str = "label"
    n_samples: int = 1000
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    data_seed: int = 0
    label_noise: float = 0.0
    noise_kind: str = "symmetric"
    clean_validation: bool = False
    imbalance: float = 1.0
    hidden: list = field(default_factory=lambda: [64])
    activation: str = "relu"
    loss: str = "cross_entropy"
    gce_q: float = 0.7
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int | str = 32
    epochs: int = 30
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.5
    power_t: float = 0.5
    warmup_epochs: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    eps: float = 1e-8
    seed: int = 0
    dtype: str = "float64"
    shuffle: bool = True
    blas_threads: int = 1
    method_settings: dict[str, float] = field(default_factory=dict)
    """A custom loss's or optimizer's own settings ({name: value}, each declared by the method with its
    default and range: ``methods.Setting``); a declared setting left out takes its default."""

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``method_settings`` only when it holds any (a config.json stays as it was before
        methods declared settings, so a logged config compares equal to a rebuilt one)."""
        values = dataclasses.asdict(self)
        if not values["method_settings"]:
            del values["method_settings"]
        return values

    def applicable(self) -> dict[str, Any]:
        """The settings that affect this run: no Adam betas on SGD, no CSV path on digits, no step size
        without a step schedule. (``to_dict`` keeps every field, for rebuilding the run.)"""
        idle = {
            "csv",
            "label_column",
            "n_samples",
            "momentum",
            "nesterov",
            "beta1",
            "beta2",
            "rho",
            "eps",
            "step_size",
            "gamma",
            "power_t",
            "gce_q",
            "label_noise",
            "noise_kind",
            "clean_validation",
            "imbalance",
        }
        used = set(optimizer_settings(self.optimizer)) | set(SCHEDULE_SETTINGS[self.schedule])
        if self.dataset == "csv":
            used |= {"csv", "label_column"}
        if self.dataset in GENERATED:
            used.add("n_samples")
        if self.loss == "gce":
            used.add("gce_q")
        if self.label_noise > 0:  # a clean run's params stay as they were before data regimes existed
            used |= {"label_noise", "noise_kind", "clean_validation"}
        if self.imbalance != 1.0:
            used.add("imbalance")
        values = {k: v for k, v in self.to_dict().items() if (k not in idle or k in used) and k != "method_settings"}
        return {**values, **method_values(self)}  # a custom method's own settings, each by its name

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def run_name(self) -> str:
        """Readable name such as ``mse-sgd-m0.9-nesterov-lr0.1``."""
        parts = [self.loss.rpartition(":")[2], self.optimizer.rpartition(":")[2]]
        if self.optimizer == "sgd" and self.momentum:
            parts.append(f"m{self.momentum:g}")
        if self.optimizer == "sgd" and self.nesterov:
            parts.append("nesterov")
        parts.append(f"lr{self.lr:g}")
        if self.batch_size != 32:
            parts.append(f"b{self.batch_size}")
        if self.schedule != "constant":
            parts.append(self.schedule)
        return "-".join(parts)


FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _fail(source, key, value, allowed):
    where = f"{source}: " if source else ""
    raise ConfigError(f"{where}{key} = {shown(value)} is not allowed; {allowed}")


def _check_type(source, key, value):
    kind = FIELD_TYPES[key]
    ok = {
        "str": isinstance(value, str),
        "str | None": value is None or isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, list),
        "int | str": isinstance(value, (int, str)) and not isinstance(value, bool),
        "dict[str, float]": isinstance(value, dict),
    }[kind]
    if not ok:
        _fail(source, key, value, f"expected {kind.replace('str | None', 'a path')}")


def make_config(values: Mapping[str, Any], source: str = "") -> TrainConfig:
    """Build and validate a TrainConfig from a mapping (flags, TOML or a logged config)."""
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        _fail(source, unknown[0], values[unknown[0]], f"known keys: {', '.join(FIELD_TYPES)}")
    for key, value in values.items():
        _check_type(source, key, value)
    values = dict(values)
    if values.get("csv") and "dataset" not in values:  # a CSV given is the data set meant
        values["dataset"] = "csv"
    for key in FLOAT_KEYS:
        if key in values:
            values[key] = float(values[key])
            if not math.isfinite(values[key]):
                _fail(source, key, values[key], "must be a finite number")
    if "method_settings" in values:
        values["method_settings"] = _method_settings(source, values["method_settings"])
    config = TrainConfig(**values)
    validate(config, source)
    return config


def _method_settings(source: str, settings: dict) -> dict[str, float]:
    """A custom method's own settings, by their form only (nothing is imported): at most
    ``MAX_METHOD_SETTINGS`` names, each a setting name that is no TrainConfig field, each value a finite
    number; sorted by name, as floats."""
    if len(settings) > MAX_METHOD_SETTINGS:
        _fail(source, "method_settings", settings, f"holds {len(settings):,} settings; at most {MAX_METHOD_SETTINGS}")
    checked = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not SETTING_NAME.fullmatch(key):
            _fail(source, "method_settings", key, "a setting's name is a letter, then up to 63 letters, digits, '_'")
        if key in FIELD_TYPES:
            _fail(source, key, value, "it is a harness setting, not a method's own: give it as one (--lr, lr = ...)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(source, key, value, "a method's own setting must be a finite number")
        checked[key] = float(value)
    return dict(sorted(checked.items()))


def _choice(source, key, value, names):
    if value not in names:
        _fail(source, key, value, f"choose one of: {', '.join(names)}")


def validate(c: TrainConfig, source: str = "") -> None:
    _check_data(source, c)
    _check_method_names(source, c)
    _choice(source, "activation", c.activation, tuple(ACTIVATIONS))
    _choice(source, "schedule", c.schedule, tuple(SCHEDULES))
    _choice(source, "dtype", c.dtype, DTYPE_NAMES)
    if not 0 < c.gce_q <= 1:
        _fail(source, "gce_q", c.gce_q, "must be in (0, 1] (GCE's q: near 0 is cross-entropy, 1 is MAE)")
    if not (math.isfinite(c.lr) and c.lr > 0):
        _fail(source, "lr", c.lr, "must be a number > 0")
    if not 0 <= c.momentum < 1:
        _fail(source, "momentum", c.momentum, "must be in [0, 1)")
    if not (math.isfinite(c.weight_decay) and c.weight_decay >= 0):
        _fail(source, "weight_decay", c.weight_decay, "must be >= 0")
    if not 1 <= c.epochs <= MAX_EPOCHS:
        _fail(source, "epochs", c.epochs, f"must be an integer in [1, {MAX_EPOCHS}]")
    if isinstance(c.batch_size, str) and c.batch_size != "full":
        _fail(source, "batch_size", c.batch_size, "must be an integer >= 1 or 'full'")
    if isinstance(c.batch_size, int) and c.batch_size < 1:
        _fail(source, "batch_size", c.batch_size, "must be an integer >= 1 or 'full'")
    if not c.hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in c.hidden):
        _fail(source, "hidden", c.hidden, "must be a non-empty list of layer sizes >= 1")
    if len(c.hidden) > MAX_LAYERS:
        _fail(source, "hidden", c.hidden, f"lists {len(c.hidden):,} layers; at most {MAX_LAYERS}")
    if c.step_size < 1:
        _fail(source, "step_size", c.step_size, "must be an integer >= 1")
    if not 0 < c.gamma <= 1:
        _fail(source, "gamma", c.gamma, "must be in (0, 1]")
    if c.power_t < 0:
        _fail(source, "power_t", c.power_t, "must be >= 0")
    if c.warmup_epochs < 0:
        _fail(source, "warmup_epochs", c.warmup_epochs, "must be an integer >= 0")
    for key in ("beta1", "beta2", "rho"):
        if not 0 <= getattr(c, key) < 1:
            _fail(source, key, getattr(c, key), "must be in [0, 1)")
    if not c.eps > 0:
        _fail(source, "eps", c.eps, "must be > 0")
    for key in ("seed", "data_seed"):
        if not 0 <= getattr(c, key) <= SEED_MAX:
            _fail(source, key, getattr(c, key), f"must be an integer in [0, {SEED_MAX}]")
    if not 1 <= c.blas_threads <= 256:
        _fail(source, "blas_threads", c.blas_threads, "must be an integer in [1, 256]")
    if isinstance(c.batch_size, int) and c.batch_size > MAX_SAMPLES:
        _fail(source, "batch_size", c.batch_size, f"must be at most {MAX_SAMPLES} (or 'full')")
    weights = 8 * 6 * sum(a * b for a, b in zip(c.hidden[:-1], c.hidden[1:])) + 8 * 6 * 4 * sum(c.hidden)
    if weights > physical_memory():
        _fail(
            source,
            "hidden",
            c.hidden,
            f"needs at least {weights / 2**30:.0f} GiB for its weights alone; "
            f"this machine has {physical_memory() / 2**30:.0f} GiB",
        )


def _check_data(source: str, c: TrainConfig) -> None:
    """The settings that make the split (``data.DATA_SETTINGS``), data regimes included; a noise rate
    too high for the data set's number of classes is refused when the data is loaded (``load_split``)."""
    _choice(source, "dataset", c.dataset, tuple(LOADERS))
    if c.dataset == "csv" and not c.csv:
        _fail(source, "csv", c.csv, "dataset 'csv' needs the path of a CSV file")
    if c.dataset != "csv" and c.csv:
        _fail(source, "csv", c.csv, f"dataset is {c.dataset!r}, which reads no CSV: set dataset = 'csv' or remove csv")
    if not 10 <= c.n_samples <= MAX_SAMPLES:
        _fail(source, "n_samples", c.n_samples, f"must be an integer in [10, {MAX_SAMPLES}]")
    for key in ("val_fraction", "test_fraction"):
        if not 0 < getattr(c, key) < 0.5:
            _fail(source, key, getattr(c, key), "must be in (0, 0.5)")
    _choice(source, "noise_kind", c.noise_kind, NOISE_KINDS)
    if not 0 <= c.label_noise < 1:
        _fail(source, "label_noise", c.label_noise, "must be in [0, 1) (the share of training labels made wrong)")
    if not 1 <= c.imbalance <= MAX_IMBALANCE:
        allowed = f"must be in [1, {MAX_IMBALANCE:g}] (most / fewest training rows per class)"
        _fail(source, "imbalance", c.imbalance, allowed)


def _check_method_names(source: str, c: TrainConfig) -> None:
    """A built-in, a registered name or a 'module:Class' (its form only: importing it is check_methods');
    a method's own settings only with a method of one's own."""
    for kind, name, builtins in (("loss", c.loss, LOSSES), ("optimizer", c.optimizer, OPTIMIZERS)):
        if name in builtins:
            continue
        if ":" in name:
            split_name(kind, name)
        elif not is_custom(name):
            _fail(source, kind, name, f"choose one of: {', '.join(builtins)}, or name your own as 'module:Class'")
    if c.method_settings and not (is_custom(c.loss) or is_custom(c.optimizer)):
        key = next(iter(c.method_settings))
        _fail(
            source,
            key,
            c.method_settings[key],
            f"loss {c.loss!r} and optimizer {c.optimizer!r} are built-ins; a setting that is no harness setting "
            "must be declared by your own loss or optimizer ('module:Class')",
        )


def check_methods(c: TrainConfig, source: str = "") -> None:
    """Import and check a config's own loss and optimizer (once per process), and its ``method_settings``
    against what they declare: before anything is created."""
    try:
        resolve_loss(c.loss)
        resolve_optimizer(c.optimizer)
        check_method_settings(c)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None


def physical_memory() -> int:
    """Bytes of RAM, the bound a run's memory is checked against before anything is allocated."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40
