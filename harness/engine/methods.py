"""A user's own loss or optimizer, named ``"module:Class"`` (or registered), checked before it trains.

The interface is the engine's own: an optimizer class is built as ``Class(shape, dtype, decay_mask=...,
**settings)`` over a stack of T flat parameter buffers (T, P), each setting a (T, 1) column, and
``step(params, grad, lr)`` updates ``params`` in place (subclass :class:`~.optimizers.Optimizer`); a
loss has ``value_and_grad(z, y, out)`` returning the T per-model batch losses and writing dL/dz into
``out``. An optimizer reads harness settings by their names (``beta1``, ``beta2``, ``rho``, ``eps``,
``momentum``, ``weight_decay``: ``settings``), and either may declare settings of its own
(``declared = (Setting("focal_gamma", 2.0, 0.0, 10.0),)``, :class:`~.declared.Setting`): a study fixes
or searches both kinds like the built-ins', and a run records them as params.

A custom method is checked once per process before anything trains (:func:`check_loss`,
:func:`check_optimizer`), a loss at its declared defaults and at each declared setting's ends; a
config's values of declared settings are checked against the ranges then (:func:`check_method_settings`).
Its module's source has a sha256 digest (:func:`module_source`), which runs record and workers compare.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ..common.errors import ConfigError, shown
from .declared import MAX_METHOD_SETTINGS, Setting
from .losses import LOSSES, GeneralizedCrossEntropy
from .optimizers import OPTIMIZERS, Optimizer

OPTIMIZER_SETTINGS = ("weight_decay", "momentum", "beta1", "beta2", "rho", "eps")
"""The names a custom optimizer's settings may take: the settings a run records and a study searches."""

_REGISTERED: dict[str, dict[str, Any]] = {"optimizer": {}, "loss": {}}
_CHECKED: dict[tuple[str, str], Any] = {}


def is_custom(name: str) -> bool:
    return ":" in name or name in _REGISTERED["optimizer"] or name in _REGISTERED["loss"]


def register_optimizer(name: str, cls: type) -> None:
    """Give your own optimizer class a name in this process, for ``optimizer = name``.

    Spawned sweep workers and later commands do not see the name (``run_sweep(..., workers=1)``); a
    ``"module:Class"`` name is the one a record can be reproduced from.

    Parameters
    ----------
    name : str
        The name a study (``optimizer = "lion"``), ``harness.train(optimizer=...)`` or ``run_sweep`` uses.
    cls : type
        The optimizer class (a subclass of ``harness.engine.optimizers.Optimizer``), checked at first use.

    Returns
    -------
    None

    Examples
    --------
    >>> harness.register_optimizer("lion", Lion)  # doctest: +SKIP
    >>> harness.train(dataset="iris", optimizer="lion", lr=1e-3)  # doctest: +SKIP
    """
    _REGISTERED["optimizer"][name] = cls
    _CHECKED.pop(("optimizer", name), None)


def register_loss(name: str, loss: Any) -> None:
    """Give your own loss a name in this process, for ``loss = name``.

    As ``register_optimizer``: this process only; a ``"module:Class"`` name is the one to record.

    Parameters
    ----------
    name : str
        The name a study (``loss = "focal"``), ``harness.train(loss=...)`` or ``run_sweep`` uses.
    loss : object or type
        An object with ``value_and_grad(z, y, out)``, or a class making one; checked at first use.

    Returns
    -------
    None

    Examples
    --------
    >>> harness.register_loss("focal", FocalLoss)  # doctest: +SKIP
    >>> harness.train(dataset="iris", loss="focal", method_settings={"focal_gamma": 1.5})  # doctest: +SKIP
    """
    _REGISTERED["loss"][name] = loss
    _CHECKED.pop(("loss", name), None)


def add_search_folder(folder: str) -> None:
    """A study's folder, where its ``module:Class`` names are looked for first (spawned workers inherit it)."""
    folder = os.path.abspath(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def split_name(kind: str, name: str) -> tuple[str, str]:
    module, _, attr = name.partition(":")
    if not module or not attr or not all(part.isidentifier() for part in (*module.split("."), attr)):
        raise ConfigError(
            f"{kind} = {name!r} is not allowed; choose a built-in ({', '.join(_builtins(kind))}) "
            "or name your own as 'module:Class'"
        )
    return module, attr


def _builtins(kind: str) -> tuple[str, ...]:
    return tuple(OPTIMIZERS if kind == "optimizer" else LOSSES)


def _search_working_folder() -> None:
    """The working folder is searched for a 'module:Class' (after sys.path), as the docs say."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())


def module_file(name: str) -> str | None:
    """The source file ``import name`` would run, found by the import system's finders without running
    any module's code (None when there is none): a name a logged run gives is compared by its file's
    digest before anything of it is imported."""
    if name in sys.modules:
        return getattr(sys.modules[name], "__file__", None)
    _search_working_folder()
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: the finders only look, nothing runs
        for part in rest:  # not importlib.util.find_spec(name): it would import the parents
            locations = spec.submodule_search_locations if spec is not None else None
            spec = importlib.machinery.PathFinder.find_spec(part, list(locations)) if locations else None
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None and spec.has_location else None
    return origin if origin and origin.endswith(".py") and os.path.isfile(origin) else None


def _import(kind: str, name: str) -> Any:
    if name in _REGISTERED[kind]:
        return _REGISTERED[kind][name]
    module_name, attr = split_name(kind, name)
    _search_working_folder()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is said in one line
        raise ConfigError(f"{kind} = {name!r}: cannot import module {module_name!r} ({_one_line(exc)})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{kind} = {name!r}: module {module_name!r} ({module.__file__}) has no {attr!r}")
    return getattr(module, attr)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def resolve_optimizer(name: str) -> type[Optimizer]:
    """The optimizer class a config names: a built-in, or a user's, checked once per process."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    key = ("optimizer", name)
    if key not in _CHECKED:
        cls = _import("optimizer", name)
        check_optimizer(name, cls)
        _CHECKED[key] = cls
    return _CHECKED[key]


class _Loss(NamedTuple):
    """A user's loss as checked: what its name gives (a class or an object), an instance at the declared
    defaults, and its declared settings."""

    found: Any
    instance: Any
    declared: tuple[Setting, ...]


def resolve_loss(name: str, gce_q: float | None = None, settings: Mapping[str, float] | None = None) -> Any:
    """The loss object a config names: a built-in (``gce`` at ``gce_q``, the config's; its default q when
    None), or a user's, checked once. A user's loss that declares settings is a fresh instance with each
    as a float attribute: its value in ``settings`` (a config's ``method_settings``), else its default."""
    if name == "gce" and gce_q is not None:
        return GeneralizedCrossEntropy(gce_q)
    if name in LOSSES:
        return LOSSES[name]
    key = ("loss", name)
    if key not in _CHECKED:
        found = _import("loss", name)
        where = f"loss = {name!r}"
        declared = _check_declared(where, found, reserved=())
        defaults, *ends = _check_points(declared)
        instance = _loss_at(name, found, declared, defaults)
        check_loss(name, instance)
        for values in ends:  # each declared setting at its low and its high end, the others at their defaults
            at = " at " + ", ".join(f"{k} = {v:g}" for k, v in values.items() if v != defaults[k])
            check_loss(name, _loss_at(name, found, declared, values), at=at)
        _CHECKED[key] = _Loss(found, instance, declared)
    loss = _CHECKED[key]
    if not loss.declared:
        return loss.instance
    return _loss_at(name, loss.found, loss.declared, settings or {})


def _loss_at(name: str, found: Any, declared: tuple[Setting, ...], values: Mapping[str, float]) -> Any:
    """A loss to train with: the class instantiated (or the object registered, copied when it declares
    settings), each declared setting set as a float attribute."""
    try:
        loss = found() if inspect.isclass(found) else (copy.copy(found) if declared else found)
        for setting in declared:
            setattr(loss, setting.name, float(values.get(setting.name, setting.default)))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"loss = {name!r}: {name.split(':')[-1]}() failed ({_one_line(exc)})") from None
    return loss


def _check_points(declared: tuple[Setting, ...]) -> list[dict[str, float]]:
    """The settings a loss is checked at: every default, then each setting at its low and its high end."""
    defaults = {s.name: s.default for s in declared}
    points = [defaults]
    for setting in declared:
        points += [{**defaults, setting.name: end} for end in (setting.low, setting.high) if end != setting.default]
    return points


OPTIMIZER_RESERVED = ("steps", "dtype", "decay_mask", "state", "settings", "shared", "declared")
"""Attributes of an optimizer a declared setting of the same name would overwrite."""


def _check_declared(where: str, target: Any, reserved: tuple[str, ...]) -> tuple[Setting, ...]:
    """A method's ``declared``: a tuple of distinct ``Setting``s, none named as a harness setting (a
    ``TrainConfig`` field) or as one of the method's own attributes it would overwrite."""
    from .config import FIELD_TYPES

    declared = getattr(target, "declared", ())
    if not isinstance(declared, (tuple, list)) or not all(isinstance(s, Setting) for s in declared):
        raise ConfigError(
            f"{where}: declared = {shown(declared)} is not allowed; list harness.engine.methods.Setting(name, "
            "default, low, high) items, e.g. declared = (Setting('focal_gamma', 2.0, 0.0, 10.0),)"
        )
    if len(declared) > MAX_METHOD_SETTINGS:
        raise ConfigError(f"{where}: declares {len(declared)} settings; at most {MAX_METHOD_SETTINGS}")
    names: set[str] = set()
    for setting in declared:
        if setting.name in FIELD_TYPES:
            raise ConfigError(
                f"{where}: declares {setting.name!r}, the name of a harness setting; give its own a name of its own "
                f"(such as 'my_{setting.name}')"
            )
        if setting.name in names:
            raise ConfigError(f"{where}: declares {setting.name!r} twice")
        state = getattr(target, "state", ()) if reserved else ()
        if setting.name in (*reserved, *state) or callable(getattr(target, setting.name, None)):
            raise ConfigError(f"{where}: declares {setting.name!r}, which would replace its attribute of that name")
        names.add(setting.name)
    return tuple(declared)


def declared_settings(kind: str, name: str) -> tuple[Setting, ...]:
    """The settings a config's loss or optimizer declares: none for a built-in; a user's is imported and
    checked (once per process), as ``resolve_*`` do."""
    if kind == "optimizer":
        return tuple(resolve_optimizer(name).declared)
    if name in LOSSES:
        return ()
    resolve_loss(name)
    return _CHECKED[("loss", name)].declared


def check_method_settings(config: Any) -> None:
    """Each of a config's ``method_settings`` is declared by its loss or its optimizer (one of them only)
    and lies in the declared range; one line naming the setting, the method and the range. Imports the
    config's methods (``check_methods`` does, before this)."""
    owners: dict[str, tuple[Setting, str]] = {}
    for kind, name in (("loss", config.loss), ("optimizer", config.optimizer)):
        for setting in declared_settings(kind, name):
            if setting.name in owners:
                raise ConfigError(
                    f"{setting.name}: declared by both loss {config.loss!r} and optimizer {config.optimizer!r}; "
                    "a name means one setting: rename it in one of them"
                )
            owners[setting.name] = (setting, f"{kind} {name!r}")
    for key, value in config.method_settings.items():
        if key not in owners:
            offered = ", ".join(f"{n} in {s.allowed()} ({owner})" for n, (s, owner) in owners.items())
            raise ConfigError(
                f"{key} = {shown(value)} is not allowed; neither loss {config.loss!r} nor optimizer "
                f"{config.optimizer!r} declares it (declared: {offered or 'none'})"
            )
        setting, owner = owners[key]
        if not setting.low <= value <= setting.high:
            raise ConfigError(f"{key} = {shown(value)} is not allowed; {owner} takes {key} in {setting.allowed()}")


def method_values(config: Any) -> dict[str, float]:
    """Every declared setting of a config's loss and optimizer at the value it trains with (the config's,
    else the default): the params a run records. The config's own values alone for a method that cannot
    be resolved here (the caller has trained or checked it: nothing new is imported for a run's record)."""
    values: dict[str, float] = {}
    for kind, name in (("loss", config.loss), ("optimizer", config.optimizer)):
        try:
            values.update({s.name: s.default for s in declared_settings(kind, name)})
        except ConfigError:
            pass
    values.update(config.method_settings)
    return values


def loss_settings(config: Any) -> dict[str, float]:
    """The ``method_settings`` a config's loss reads, which every model of a stack shares (an optimizer's
    are per-model columns). Imports nothing unless both the loss and the optimizer are a user's."""
    if not config.method_settings or config.loss in LOSSES:
        return {}
    if config.optimizer in OPTIMIZERS:
        return dict(config.method_settings)
    try:
        own = {s.name for s in declared_settings("optimizer", config.optimizer)}
    except ConfigError:
        own = set()
    return {k: v for k, v in config.method_settings.items() if k not in own}


def optimizer_settings(name: str) -> tuple[str, ...]:
    """The settings an optimizer reads (every optimizer setting when its module cannot be imported here)."""
    try:
        cls = resolve_optimizer(name)
    except ConfigError:
        return OPTIMIZER_SETTINGS
    return (*getattr(cls, "settings", ()), *getattr(cls, "shared", ()))


def check_loss(name: str, loss: Any, rng_seed: int = 0, at: str = "") -> None:
    """Values (T,) finite, dL/dz written with the logits' shape and equal to central differences (``at``:
    the declared settings checked, as the message says them)."""
    where = f"loss = {name!r}{at}"
    if not callable(getattr(loss, "value_and_grad", None)):
        raise ConfigError(f"{where}: has no value_and_grad(z, y, out) method")
    rng = np.random.default_rng(rng_seed)
    t, b, c = 3, 5, 4
    z = rng.normal(size=(t, b, c))
    y = np.eye(c)[rng.integers(0, c, size=(t, b))]
    out = np.zeros_like(z)
    values = _call(where, "value_and_grad", loss.value_and_grad, z.copy(), y, out)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (t,):
        raise ConfigError(f"{where}: value_and_grad returned shape {values.shape} for {t} models; must be ({t},)")
    if not (np.isfinite(values).all() and np.isfinite(out).all()):
        raise ConfigError(f"{where}: value_and_grad gave a non-finite value or gradient on random logits")
    h, numeric = 1e-5, np.zeros_like(z)
    scratch = np.zeros_like(z)
    for index in np.ndindex(b, c):
        for sign in (1, -1):
            shifted = z.copy()
            shifted[(slice(None), *index)] += sign * h
            numeric[(slice(None), *index)] += sign * np.asarray(loss.value_and_grad(shifted, y, scratch)) / (2 * h)
    error = np.abs(numeric - out).max() / max(np.abs(numeric).max(), 1e-8)
    if not error < 1e-4:
        raise ConfigError(
            f"{where}: the gradient written into out differs from finite differences of the value "
            f"(largest relative error {error:.2g}; must be < 1e-4)"
        )


def check_optimizer(name: str, cls: Any) -> None:
    """A few steps on a quadratic for a stack of 3 models, then 2 after ``keep``: no error, finite, right
    shapes, and each model where it would be trained alone."""
    where = f"optimizer = {name!r}"
    if not (inspect.isclass(cls) and issubclass(cls, Optimizer)):
        raise ConfigError(f"{where}: must be a class derived from harness.engine.optimizers.Optimizer")
    unknown = [s for s in (*cls.settings, *getattr(cls, "shared", ())) if s not in (*OPTIMIZER_SETTINGS, "nesterov")]
    if unknown:
        allowed = ", ".join(OPTIMIZER_SETTINGS)
        raise ConfigError(
            f"{where}: setting {unknown[0]!r} is not a harness setting; use {allowed}, or declare it as your "
            f"own: declared = (Setting({unknown[0]!r}, default, low, high),)"
        )
    _check_declared(where, cls, reserved=OPTIMIZER_RESERVED)
    final = _quadratic_steps(where, cls, np.arange(1.0, 4.0), keep=[0, 2])
    for row, model in enumerate((1.0, 3.0)):  # the models of a stack are independent: each as if alone
        alone = _quadratic_steps(where, cls, np.array([model]), keep=[0])
        if not np.allclose(final[row], alone[0], rtol=1e-6, atol=1e-9):
            raise ConfigError(
                f"{where}: model {row} of a stack of 3 ends elsewhere than the same model trained alone: "
                "an update mixes the models' rows (use the (T, P) arrays row-wise, settings as (T, 1) columns)"
            )


def _quadratic_steps(where: str, cls: Any, starts: Any, keep: list[int] | None = None) -> Any:
    """3 steps on 0.5 sum(a p^2) from ``starts`` (one model each), ``keep`` rows, 3 more; the parameters."""
    defaults = {"weight_decay": 0.0, "momentum": 0.9, "beta1": 0.9, "beta2": 0.99, "rho": 0.9, "eps": 1e-8}
    t, p = len(starts), 6
    per_model = {s: [defaults[s]] * t for s in cls.settings}
    per_model.update({s.name: [s.default] * t for s in cls.declared})
    shared = {s: False for s in getattr(cls, "shared", ())}
    optimizer = _call(where, "its constructor", cls, (t, p), np.float64, decay_mask=np.ones(p), **per_model, **shared)
    curvature = np.linspace(0.5, 2.0, p)
    params = np.outer(starts, np.ones(p))
    for rows in (list(range(t)), keep):
        if rows is None:
            continue
        if len(rows) < len(params):
            _call(where, "keep", optimizer.keep, rows)
            params = params[rows].copy()
        lr = np.full((len(rows), 1), 0.01)
        for _ in range(3):
            before = params.shape
            _call(where, "step", optimizer.step, params, curvature * params, lr)
            if params.shape != before:
                raise ConfigError(f"{where}: step changed the parameters' shape {before} to {params.shape}")
            if not np.isfinite(params).all():
                raise ConfigError(f"{where}: step made a parameter non-finite on a small quadratic (lr 0.01)")
    return params


def _call(where: str, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code: one line naming it and what failed
        raise ConfigError(f"{where}: {what} raised {_one_line(exc)} on a stack of 3 models") from None


def custom_modules(config: Any) -> dict[str, str]:
    """{module name: its file} of the custom methods a config names (registered ones: their class's module)."""
    found = {}
    for kind, name in (("optimizer", config.optimizer), ("loss", config.loss)):
        if not is_custom(name):
            continue
        target = resolve_optimizer(name) if kind == "optimizer" else resolve_loss(name)
        module = sys.modules.get(getattr(target, "__module__", None) or type(target).__module__)
        path = getattr(module, "__file__", None)
        if module is not None and path:
            found[module.__name__] = path
    return found


def module_source(path: str) -> tuple[bytes, str]:
    """A module's source and its sha256 digest."""
    with open(path, "rb") as fh:
        content = fh.read()
    return content, hashlib.sha256(content).hexdigest()


_SOURCES: dict[str, tuple[bytes, str]] = {}


def loaded_source(path: str) -> tuple[bytes, str]:
    """``module_source`` read once per process, near the import: the source every run of this process
    logs is the code it imported, even when the file is edited while a sweep runs."""
    if path not in _SOURCES:
        _SOURCES[path] = module_source(path)
    return _SOURCES[path]


def method_digests(config: Any) -> dict[str, str]:
    return {name: loaded_source(path)[1] for name, path in custom_modules(config).items()}


def load_logged_module(module_name: str, path: str) -> None:
    """Make ``module_name`` the logged source at ``path`` (its own module is gone or changed)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot load module {module_name!r} from it")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        del sys.modules[module_name]
        raise ConfigError(f"{path}: the logged source of {module_name!r} fails to import ({_one_line(exc)})") from None
    for key in [k for k in _CHECKED if k[1].split(":")[0] == module_name]:
        del _CHECKED[key]


def changed_module(expected: dict[str, str]) -> str | None:
    """The first module whose source here differs from ``expected`` ({module: sha256}), said in a line."""
    for name, digest in sorted(expected.items()):
        try:
            module = importlib.import_module(name)
            path = module.__file__ or ""
            here = loaded_source(path)[1]
        except Exception as exc:  # noqa: BLE001
            return f"module {name!r} cannot be imported here ({_one_line(exc)})"
        if here != digest:
            return f"module {name!r} ({path}) differs from the study's (sha256 {here[:12]} here, {digest[:12]} there)"
    return None
