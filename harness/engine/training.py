"""The training loop: epochs of seeded, shuffled mini-batches; returns curves, never logs.

It trains a *stack* of models at once (see ``network``): each model has its own initial weights
(seed), batch order, learning rate and schedule, optimizer settings and epoch budget, and leaves the
stack when it finishes, diverges or is stopped by a callback, without disturbing the others. Training
one model is the T = 1 case of the same loop.

One step, as a reader should see it: gather each model's next batch, forward and backward through all
models under the training loss (``StackedMLP.loss_and_grad``), one optimizer update at each model's
scheduled learning rate. After each epoch every model is scored on the training and validation splits
under every loss and its curves grow by one point; callbacks see those metrics and may stop a model
(pruning). A non-finite loss or weight ends a model as *diverged*: a result, not an exception; so does a
finite loss that explodes (``EXPLODED``).

A run may ask for fewer curves (``curves``: a lean search trial keeps three or four): the training-split scoring
and the gradient norms are then skipped unless their curve is wanted, and every other curve is computed
but not kept. What decides the run is unchanged: the training loss, the weight norm, every validation
yardstick and whether each batch's gradient norm was finite (``finite_norms``) are still checked, so a lean
run stops, diverges and scores exactly where and as the full one does, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..common.errors import ConfigError
from .calibration import Quality, assess
from .data import DATA_SETTINGS
from .losses import accuracy, evaluate
from .methods import check_method_settings, loss_settings, resolve_loss
from .network import Model, StackedMLP, glorot, n_parameters
from .optimizers import as_column, build_optimizer
from .schedules import learning_rate

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .config import TrainConfig
    from .data import Split

COMPLETE, DIVERGED, STOPPED = "complete", "diverged", "stopped"
SHARED = (
    *DATA_SETTINGS,
    "hidden",
    "activation",
    "loss",
    "gce_q",
    "optimizer",
    "nesterov",
    "batch_size",
    "shuffle",
    "blas_threads",
)
"""Settings every model of one stack must share; all others may differ per model (a custom loss's own
settings are shared too: ``stack_key``)."""

EXPLODED = 100.0
"""A model whose epoch training loss or validation cross-entropy exceeds this multiple of its first epoch's
value has diverged, though the value is finite: an exploded run (validation cross-entropy 1e141 after an
MSE-trained softmax saturates) would otherwise score as a result and be averaged."""
EXPLODED_KEYS = ("train_loss", "val_cross_entropy")


def stack_key(config: TrainConfig) -> list[Any]:
    """What the models of one stack share: the ``SHARED`` settings and a custom loss's own settings (one
    loss object trains the stack; a custom optimizer's own settings are per-model columns)."""
    return [*(getattr(config, name) for name in SHARED), loss_settings(config)]


@dataclass
class TrainResult:
    status: str
    epochs_run: int
    history: dict = field(default_factory=dict)
    diverged_epoch: int | None = None
    last_finite_loss: float | None = None
    network: Model | None = None
    final: dict = field(default_factory=dict)
    epoch_times: list = field(default_factory=list)
    """Wall-clock time (seconds since the epoch) at the end of each recorded epoch."""
    quality: Quality | None = None
    """Probability quality on validation and test (runs scored on test); its figures are in ``final`` too."""


def seeded_generators(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for initialisation and batch order, both derived from one seed."""
    init_seq, order_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seq), np.random.default_rng(order_seq)


def sizes_of(config: TrainConfig, split: Split) -> list[int]:
    return [split.n_features, *config.hidden, split.n_classes]


def initial_params(config: TrainConfig, split: Split) -> NDArray[np.floating]:
    init_rng, _ = seeded_generators(config.seed)
    return glorot(init_rng, sizes_of(config, split), config.activation, config.dtype)


def bytes_per_model(config: TrainConfig, split: Split) -> int:
    """Memory one model adds to a stack: parameters, gradient, optimizer state, batch order, buffers."""
    itemsize = np.dtype(config.dtype).itemsize
    sizes = sizes_of(config, split)
    batch = len(split.y_train) if config.batch_size == "full" else int(config.batch_size)
    params = n_parameters(sizes)
    activations = 3 * batch * sum(sizes[1:]) + batch * (sizes[0] + sizes[-1])
    evaluation = (len(split.y_train) + len(split.y_val)) * max(sizes[1:])
    return itemsize * (6 * params + activations + evaluation) + 8 * len(split.y_train)


def check_memory(config: TrainConfig, split: Split) -> None:
    """Refuse, in one line, a run this machine cannot hold, before its first allocation."""
    from .config import physical_memory

    need = bytes_per_model(config, split)
    if need > physical_memory():
        raise ConfigError(
            f"hidden = {config.hidden} on {len(split.y_train)} training rows needs "
            f"{need / 2**30:.1f} GiB per model; this machine has {physical_memory() / 2**30:.0f} GiB"
        )


def max_stack(config: TrainConfig, split: Split, memory_bytes: int = 2 * 1024**3) -> int:
    """Largest stack that keeps the per-model memory within ``memory_bytes`` (2 GiB by default)."""
    return max(1, int(memory_bytes // bytes_per_model(config, split)))


def epoch_metrics(
    logits_train: NDArray[np.floating] | None,
    logits_val: NDArray[np.floating],
    split: Split,
    own: tuple[str, Any] | None = None,
) -> dict[str, float]:
    """End-of-epoch accuracy on the whole training split (unless ``logits_train`` is None: not wanted), and
    every yardstick on validation, with the run's own training loss ``own`` (``own_loss``) among them."""
    metrics = {} if logits_train is None else {"train_accuracy": accuracy(logits_train, split.y_train)}
    metrics.update({f"val_{k}": v for k, v in evaluate(logits_val, split.y_val, own).items()})
    return metrics


def exploded(history: dict[str, list[float]], metrics: dict[str, float]) -> bool:
    """Whether an epoch's training loss or validation cross-entropy is above ``EXPLODED`` x its first value."""
    return any(
        key in metrics and history.get(key) and metrics[key] > EXPLODED * abs(history[key][0]) for key in EXPLODED_KEYS
    )


def finite_norms(grad: NDArray[np.floating], limit: float) -> NDArray[np.bool_]:
    """Per model, whether ``sqrt(sum(grad * grad))``, the batch's ``grad_norm`` term, is finite, at a quarter
    of its cost when it is: one dot product per model, no (T, P) temporary. Below ``limit``
    (``finite_limit``) that sum cannot overflow in any order of summation; above it, or not finite, the
    norm itself decides. An inf gradient, or a finite one whose squares overflow (float32 from 1.8e19) while
    the weights stay finite (Adam's inf second moment freezes them), ends a lean run in the epoch it ends a full one."""
    if np.all(np.vecdot(grad, grad) <= limit):  # NaN compares False
        return np.ones(grad.shape[0], dtype=bool)
    return np.isfinite(np.sqrt(np.add.reduce(grad * grad, axis=1)))


def finite_limit(dtype: np.dtype, n_params: int) -> float:
    """A computed sum of ``n_params`` squares at or below this is at least (1 - u)^(n+2) of the exact sum,
    u the unit roundoff, whatever the order of summation (each product and addition of non-negative terms
    rounds by at most u, plus a conversion); the sum as ``grad_norm`` computes it is at most (1 + u)^(n+2)
    of the exact sum and so stays below the largest finite number."""
    info = np.finfo(dtype)
    u = float(info.eps) / 2
    return float(info.max) * ((1 - u) / (1 + u)) ** (n_params + 2)


def own_loss(config: TrainConfig, loss: Any) -> tuple[str, Any]:
    """A run's training loss as ``evaluate`` scores it: keyed by the config's loss name as written (so
    ``val_<loss>`` is its validation curve, the one a search trial's lean curves keep), with the loss
    object it trains under (``gce`` at the run's q, a user's loss)."""
    return config.loss, loss


def final_metrics(
    model: Model, split: Split, include_test: bool = True, own: tuple[str, Any] | None = None
) -> dict[str, float]:
    """Every yardstick, and the run's own loss ``own``, on validation and (``include_test``) test."""
    parts = [("val", split.x_val, split.y_val)]
    if include_test:
        parts.append(("test", split.x_test, split.y_test))
    out: dict[str, float] = {}
    for prefix, x, y in parts:
        out.update({f"{prefix}_{k}": v for k, v in evaluate(model.logits(x), y, own).items()})
    return out


def scored(
    model: Model, split: Split, include_test: bool, own: tuple[str, Any] | None
) -> tuple[dict[str, float], Quality | None]:
    """(final metrics, probability quality): a run scored on test (a confirmation's or a single run's, not a
    search trial's) also says how far its probabilities hold, its figures among the final metrics."""
    final = final_metrics(model, split, include_test, own)
    if not include_test:
        return final, None
    quality = assess(model.logits(split.x_val), split.y_val, model.logits(split.x_test), split.y_test)
    final.update({k: v for k, v in quality.metrics.items() if math.isfinite(v)})
    return final, quality


def epochs_to_target(history: dict[str, list[float]], target: float) -> int | None:
    """First epoch whose validation accuracy reaches ``target``; None when it never does (censored)."""
    for epoch, value in enumerate(history.get("val_accuracy", []), start=1):
        if value >= target:
            return epoch
    return None


def train_model(
    config: TrainConfig,
    split: Split,
    callbacks: Iterable[Callable[[int, dict[str, float]], bool | None]] = (),
    initial_params: tuple[Sequence[ArrayLike], Sequence[ArrayLike]] | None = None,
    include_test: bool = True,
    curves: Collection[str] | None = None,
) -> TrainResult:
    """Train one model: the one-model stack. ``callbacks`` are ``cb(epoch, metrics) -> stop?``.

    ``initial_params`` (weights, biases) replaces the seeded initialisation (scikit-learn parity test);
    ``curves`` as ``train_stack``'s.
    """
    start = None
    if initial_params is not None:
        weights, biases = initial_params
        start = [np.concatenate([np.concatenate([np.ravel(w), np.ravel(b)]) for w, b in zip(weights, biases)])]
    stack_callbacks = [lambda t, epoch, metrics, cb=cb: cb(epoch, metrics) for cb in callbacks]
    return train_stack([config], split, stack_callbacks, start, include_test, curves)[0]


def train_stack(
    configs: Sequence[TrainConfig],
    split: Split,
    callbacks: Sequence[Callable[[int, int, dict[str, float]], bool | None]] = (),
    starts: Sequence[NDArray[np.floating]] | None = None,
    include_test: bool = True,
    curves: Collection[str] | None = None,
    on_epoch: Callable[[int, dict[int, dict[str, float]]], None] | None = None,
) -> list[TrainResult]:
    """Train ``configs`` (one model each) as one stack; returns one TrainResult per config, in order.

    ``callbacks`` are called as ``cb(t, epoch, metrics)`` for model ``t`` after each of its epochs;
    one returning True stops that model (status ``stopped``). ``on_epoch(epoch, {t: metrics})`` is called
    once per epoch before them, with the metrics of every model that trained the epoch and did not diverge
    in it: a rule across the stack (pruning among its members) sees the whole epoch before it decides.

    ``curves``: the per-epoch curves wanted (a lean search trial's, ``records.runs.lean_curves``), None for
    every one. The histories, the metrics callbacks see and the final validation scores hold only those;
    the rest is not computed where nothing else needs it (the module's docstring says what still is).
    """
    first = configs[0]
    for config in configs:
        if config.method_settings:  # declared by its methods, in range (check_methods said so before, if called)
            check_method_settings(config)
    for config in configs[1:]:
        for name, mine, theirs in zip((*SHARED, "the loss's own settings"), stack_key(first), stack_key(config)):
            if mine != theirs:
                raise ConfigError(f"models of one stack must share {name}: {mine!r} vs {theirs!r}")
    with (
        threadpool_limits(first.blas_threads, user_api="blas"),
        np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
    ):
        return _train_stack(configs, split, callbacks, starts, include_test, curves, on_epoch)


def _train_stack(configs, split, callbacks, starts, include_test, curves, on_epoch=None):
    first = configs[0]
    dtype = np.dtype(first.dtype)
    params = np.stack(starts if starts is not None else [initial_params(c, split) for c in configs]).astype(dtype)
    network = StackedMLP(params, sizes_of(first, split), first.activation)
    optimizer = build_optimizer(configs, network)
    loss = resolve_loss(first.loss, first.gce_q, first.method_settings)
    own = own_loss(first, loss)
    order_rngs = [seeded_generators(c.seed)[1] for c in configs]
    wanted = None if curves is None else frozenset(curves)
    score_train = wanted is None or "train_accuracy" in wanted
    norms = wanted is None or "grad_norm" in wanted  # else only whether they are finite
    limit = finite_limit(dtype, network.params.shape[1])

    x = np.ascontiguousarray(split.x_train, dtype=dtype)
    n = x.shape[0]
    onehot = np.zeros((n, split.n_classes), dtype=dtype)
    onehot[np.arange(n), split.y_train] = 1.0
    batch = n if first.batch_size == "full" else min(int(first.batch_size), n)

    results = [None] * len(configs)
    histories = [{} for _ in configs]
    firsts = [{} for _ in configs]  # each model's first-epoch EXPLODED_KEYS values, its curves or not (``exploded``)
    last_finite = [None] * len(configs)
    times = [[] for _ in configs]
    active = list(range(len(configs)))  # original index of each row of the stack

    def leave(rows_leaving):
        nonlocal network, active
        keep = [r for r in range(len(active)) if r not in rows_leaving]
        network = network.keep(keep)
        optimizer.keep(keep)
        active = [active[r] for r in keep]

    def diverge(row, epoch):
        t = active[row]
        results[t] = TrainResult(
            DIVERGED,
            epoch - 1,
            histories[t],
            diverged_epoch=epoch,
            last_finite_loss=last_finite[t],
            network=Model.from_stack(network, row),
            epoch_times=times[t],
        )

    for epoch in range(1, max(c.epochs for c in configs) + 1):
        lrs = as_column([learning_rate(configs[t], epoch - 1, n) for t in active], dtype)
        if first.shuffle:
            orders = np.stack([order_rngs[t].permutation(n) for t in active])
        else:
            orders = np.broadcast_to(np.arange(n), (len(active), n))
        loss_sum = np.zeros(len(active))
        grad_norm_sum = np.zeros(len(active))
        grads_finite = np.ones(len(active), dtype=bool)
        n_batches = 0
        for begin in range(0, n, batch):
            rows = orders[:, begin : begin + batch]
            xb, yb = np.take(x, rows, axis=0), np.take(onehot, rows, axis=0)
            values = network.loss_and_grad(xb, yb, loss)
            bad = [r for r in range(len(active)) if not math.isfinite(values[r])]
            if bad:
                for r in bad:
                    diverge(r, epoch)
                good = [r for r in range(len(active)) if r not in bad]
                leave(bad)
                if not active:
                    return results
                orders, lrs, values = orders[good], lrs[good], values[good]
                loss_sum, grad_norm_sum, grads_finite = loss_sum[good], grad_norm_sum[good], grads_finite[good]
            loss_sum += values * rows.shape[1]
            if norms:
                grad_norm_sum += np.sqrt(np.add.reduce(network.grad * network.grad, axis=1))
            else:
                grads_finite &= finite_norms(network.grad, limit)
            n_batches += 1
            optimizer.step(network.params, network.grad, lrs)
            for r, t in enumerate(active):
                last_finite[t] = float(values[r])
        weight_norms = np.sqrt(np.add.reduce(network.params * network.params, axis=1))
        logits_train = network.logits(split.x_train) if score_train else None
        logits_val = network.logits(split.x_val)
        leaving, stopped, diverged, unwanted, epoch_rows = [], [], [], set(), []
        for r, t in enumerate(active):
            metrics = {
                "train_loss": loss_sum[r] / n,
                "lr": float(lrs[r, 0]),
                **({"grad_norm": grad_norm_sum[r] / n_batches} if norms else {}),
                "weight_norm": float(weight_norms[r]),
                **epoch_metrics(None if logits_train is None else logits_train[r], logits_val[r], split, own),
            }
            metrics = {k: float(v) for k, v in metrics.items()}
            finite = grads_finite[r] and all(math.isfinite(v) for v in metrics.values())
            if not finite or exploded(firsts[t], metrics):
                diverged.append(r)
                continue
            firsts[t] = firsts[t] or {k: [metrics[k]] for k in EXPLODED_KEYS if k in metrics}
            last_finite[t] = metrics["train_loss"]
            if wanted is not None:
                unwanted = metrics.keys() - wanted
                metrics = {k: v for k, v in metrics.items() if k in wanted}
            for key, value in metrics.items():
                histories[t].setdefault(key, []).append(value)
            times[t].append(time.time())
            epoch_rows.append((r, t, metrics))
        if on_epoch is not None and epoch_rows:  # the whole epoch, before any model's callbacks decide
            on_epoch(epoch, {t: metrics for _, t, metrics in epoch_rows})
        for r, t, metrics in epoch_rows:
            if any(cb(t, epoch, metrics) for cb in callbacks):
                stopped.append(r)
            elif epoch >= configs[t].epochs:
                leaving.append(r)
        for r in diverged:
            diverge(r, epoch)
        for r in stopped + leaving:
            t = active[r]
            model = Model.from_stack(network, r)
            final, quality = scored(model, split, include_test, own)
            final = {k: v for k, v in final.items() if k not in unwanted}  # a lean run's: its curves' last points
            results[t] = TrainResult(
                STOPPED if r in stopped else COMPLETE,
                epoch,
                histories[t],
                network=model,
                final=final,
                quality=quality,
                epoch_times=times[t],
            )
        if diverged or stopped or leaving:
            leave(diverged + stopped + leaving)
        if not active:
            break
    return results
