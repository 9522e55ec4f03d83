"""Optimizers over a stack of flat parameter buffers, each a small class with one update rule.

``step(params, grad, lr)`` updates ``params`` (T, P) in place; ``lr`` is a (T, 1) column holding each
model's learning rate for this epoch, and every other setting is a (T, 1) column too, so the models of
a stack may differ in all of them. A user's optimizer may add its own settings (``declared``, each a
:class:`~.declared.Setting`), which arrive as (T, 1) columns the same way. Weight decay is the coupled
L2 form (added to the gradient of the weights, not the biases), as scikit-learn's ``alpha``. Update
rules follow scikit-learn's ``_stochastic_optimizers.py`` so the SGD path can be checked against
``MLPClassifier``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike, NDArray

    from .config import TrainConfig
    from .declared import Setting
    from .network import StackedMLP


def as_column(values: ArrayLike, dtype: DTypeLike) -> NDArray[Any]:
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


class Optimizer:
    """The base of every optimizer. What a subclass's ``update`` may use (docs/benchmark.md):

    - ``state``: names of per-model (T, P) arrays, zeroed here and compacted when models leave the stack;
    - ``settings``: names of harness settings (``TrainConfig`` fields) it reads, each a (T, 1) column
      attribute; ``declared``: its own settings (``Setting``), each a (T, 1) column attribute as well;
    - ``self._tmp``: a (T, P) scratch buffer of the parameters' dtype, free for ``update`` to overwrite;
    - ``self.steps``: how many times ``step`` ran, this one included (1 at the first update): one count
      for the stack, since every model of it steps together (Adam's bias corrections);
    - ``self.dtype``, ``self.decay_mask`` (P,: 1 on weights, 0 on biases).
    """

    state: tuple[str, ...] = ()  # names of per-model state arrays, compacted when models leave the stack
    settings: tuple[str, ...] = ("weight_decay",)
    declared: tuple[Setting, ...] = ()  # a user's own settings, each a (T, 1) column attribute by its name
    update: Callable[[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]], None]

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: DTypeLike,
        weight_decay: float | Sequence[float] | NDArray[np.floating] = 0.0,
        decay_mask: NDArray[np.floating] | None = None,
        **settings: ArrayLike,
    ) -> None:
        self.dtype = dtype
        self.weight_decay = as_column(weight_decay, dtype) if np.ndim(weight_decay) else weight_decay
        self.decay_mask = decay_mask
        for name, value in settings.items():
            setattr(self, name, as_column(value, dtype) if np.ndim(value) else value)
        for name in self.state:
            setattr(self, name, np.zeros(shape, dtype=dtype))
        self._tmp = np.zeros(shape, dtype=dtype)
        self.steps = 0

    def step(self, params: NDArray[np.floating], grad: NDArray[np.floating], lr: NDArray[np.floating]) -> None:
        self.steps += 1
        if np.any(self.weight_decay):
            # weight_decay: a scalar or a (T, 1) column; decay_mask: always given by build_optimizer
            grad += self.weight_decay * self.decay_mask * params  # type: ignore[operator]
        self.update(params, grad, lr)

    def keep(self, rows: list[int]) -> None:
        for name in (*self.state, "_tmp"):
            setattr(self, name, getattr(self, name)[rows])
        for name in (*self.settings, *(setting.name for setting in self.declared)):
            value = getattr(self, name)
            if np.ndim(value):
                setattr(self, name, value[rows])


class SGD(Optimizer):
    """v <- momentum v - lr g;  p <- p + v, or with Nesterov p <- p + momentum v - lr g."""

    state = ("velocity", "_update")
    settings = ("weight_decay", "momentum")
    shared = ("nesterov",)  # one value for the whole stack
    momentum: NDArray[np.floating] | float
    velocity: NDArray[np.floating]
    _update: NDArray[np.floating]

    def __init__(
        self, shape: tuple[int, ...], dtype: DTypeLike, momentum: ArrayLike = 0.0, nesterov: bool = False, **kw: Any
    ) -> None:
        super().__init__(shape, dtype, momentum=momentum, **kw)
        self.nesterov = nesterov

    def update(self, params: NDArray[np.floating], grad: NDArray[np.floating], lr: NDArray[np.floating]) -> None:
        scaled = np.multiply(grad, lr, out=self._tmp)
        self.velocity *= self.momentum
        self.velocity -= scaled
        if self.nesterov:
            np.multiply(self.velocity, self.momentum, out=self._update)
            self._update -= scaled
            params += self._update
        else:
            params += self.velocity


class Adam(Optimizer):
    """m, v moving averages of g and g^2; p <- p - lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)."""

    state = ("m", "v")
    settings = ("weight_decay", "beta1", "beta2", "eps")
    beta1: NDArray[np.floating] | float
    beta2: NDArray[np.floating] | float
    eps: NDArray[np.floating] | float
    m: NDArray[np.floating]
    v: NDArray[np.floating]

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: DTypeLike,
        beta1: ArrayLike = 0.9,
        beta2: ArrayLike = 0.999,
        eps: ArrayLike = 1e-8,
        **kw: Any,
    ) -> None:
        super().__init__(shape, dtype, beta1=beta1, beta2=beta2, eps=eps, **kw)

    def update(self, params: NDArray[np.floating], grad: NDArray[np.floating], lr: NDArray[np.floating]) -> None:
        self.m *= self.beta1
        self.m += (1 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1 - self.beta2) * grad * grad
        lr_t = lr * np.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        denom = np.sqrt(self.v, out=self._tmp)
        denom += self.eps
        params -= lr_t * self.m / denom


class RMSprop(Optimizer):
    """s <- rho s + (1 - rho) g^2;  p <- p - lr g / (sqrt(s) + eps)."""

    state = ("s",)
    settings = ("weight_decay", "rho", "eps")
    rho: NDArray[np.floating] | float
    eps: NDArray[np.floating] | float
    s: NDArray[np.floating]

    def __init__(
        self, shape: tuple[int, ...], dtype: DTypeLike, rho: ArrayLike = 0.9, eps: ArrayLike = 1e-8, **kw: Any
    ) -> None:
        super().__init__(shape, dtype, rho=rho, eps=eps, **kw)

    def update(self, params: NDArray[np.floating], grad: NDArray[np.floating], lr: NDArray[np.floating]) -> None:
        self.s *= self.rho
        self.s += (1 - self.rho) * grad * grad
        denom = np.sqrt(self.s, out=self._tmp)
        denom += self.eps
        params -= lr * grad / denom


class Adagrad(Optimizer):
    """s <- s + g^2;  p <- p - lr g / (sqrt(s) + eps)."""

    state = ("s",)
    settings = ("weight_decay", "eps")
    eps: NDArray[np.floating] | float
    s: NDArray[np.floating]

    def __init__(self, shape: tuple[int, ...], dtype: DTypeLike, eps: ArrayLike = 1e-8, **kw: Any) -> None:
        super().__init__(shape, dtype, eps=eps, **kw)

    def update(self, params: NDArray[np.floating], grad: NDArray[np.floating], lr: NDArray[np.floating]) -> None:
        self.s += grad * grad
        denom = np.sqrt(self.s, out=self._tmp)
        denom += self.eps
        params -= lr * grad / denom


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


def build_optimizer(configs: Sequence[TrainConfig], network: StackedMLP) -> Optimizer:
    """The optimizer the configs name (one kind per stack), each model with its own settings: the harness's
    and the optimizer's declared ones (a config's ``method_settings``, else the declared default)."""
    from .methods import resolve_optimizer

    kind = resolve_optimizer(configs[0].optimizer)
    per_model = {name: [getattr(c, name) for c in configs] for name in kind.settings}
    per_model.update({s.name: [c.method_settings.get(s.name, s.default) for c in configs] for s in kind.declared})
    shared = {name: getattr(configs[0], name) for name in getattr(kind, "shared", ())}
    return kind(network.params.shape, network.dtype, decay_mask=network.decay_mask, **per_model, **shared)
