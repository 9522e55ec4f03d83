"""A user's own loss or optimizer, named ``"module:Class"`` (or registered), checked before it trains.

The interface is the engine's own: an optimizer class is built as ``Class(shape, dtype, decay_mask=...,
**settings)`` over a stack of T flat parameter buffers (T, P), each setting a (T, 1) column, and
``step(params, grad, lr)`` updates ``params`` in place (subclass :class:`~.optimizers.Optimizer`); a
loss has ``value_and_grad(z, y, out)`` returning the T per-model batch losses and writing dL/dz into
``out``. Its settings are the harness's own names (``beta1``, ``beta2``, ``rho``, ``eps``, ``momentum``,
``weight_decay``), so a study fixes or searches them like the built-ins'.

A custom method is checked once per process before anything trains (:func:`check_loss`,
:func:`check_optimizer`); its module's source has a sha256 digest (:func:`module_source`), which runs
record and workers compare.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from typing import Any

import numpy as np

from ..common.errors import ConfigError
from .losses import LOSSES, GeneralizedCrossEntropy
from .optimizers import OPTIMIZERS, Optimizer

OPTIMIZER_SETTINGS = ("weight_decay", "momentum", "beta1", "beta2", "rho", "eps")
"""The names a custom optimizer's settings may take: the settings a run records and a study searches."""

_REGISTERED: dict[str, dict[str, Any]] = {"optimizer": {}, "loss": {}}
_CHECKED: dict[tuple[str, str], Any] = {}


def is_custom(name: str) -> bool:
    return ":" in name or name in _REGISTERED["optimizer"] or name in _REGISTERED["loss"]


def register_optimizer(name: str, cls: type) -> None:
    """``optimizer = name`` in a study (or ``harness train``) means ``cls``; checked at first use."""
    _REGISTERED["optimizer"][name] = cls
    _CHECKED.pop(("optimizer", name), None)


def register_loss(name: str, loss: Any) -> None:
    """``loss = name`` means ``loss`` (an object with ``value_and_grad``, or a class making one)."""
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


def resolve_loss(name: str, gce_q: float | None = None) -> Any:
    """The loss object a config names: a built-in (``gce`` at ``gce_q``, the config's; its default q when
    None), or a user's (a class is instantiated), checked once."""
    if name == "gce" and gce_q is not None:
        return GeneralizedCrossEntropy(gce_q)
    if name in LOSSES:
        return LOSSES[name]
    key = ("loss", name)
    if key not in _CHECKED:
        found = _import("loss", name)
        where = f"loss = {name!r}"
        try:
            loss = found() if inspect.isclass(found) else found
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{where}: {name.split(':')[-1]}() failed ({_one_line(exc)})") from None
        check_loss(name, loss)
        _CHECKED[key] = loss
    return _CHECKED[key]


def optimizer_settings(name: str) -> tuple[str, ...]:
    """The settings an optimizer reads (every optimizer setting when its module cannot be imported here)."""
    try:
        cls = resolve_optimizer(name)
    except ConfigError:
        return OPTIMIZER_SETTINGS
    return (*getattr(cls, "settings", ()), *getattr(cls, "shared", ()))


def check_loss(name: str, loss: Any, rng_seed: int = 0) -> None:
    """Values (T,) finite, dL/dz written with the logits' shape and equal to central differences."""
    where = f"loss = {name!r}"
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
        raise ConfigError(f"{where}: setting {unknown[0]!r} is not a harness setting; use {allowed}")
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
