"""The training loop: epochs of seeded, shuffled mini-batches; returns curves, never logs.

One step, as a reader should see it: forward and backward through the network under the training
loss (``MLP.loss_and_grad``), then one optimizer update at the epoch's scheduled learning rate. After
each epoch the network is scored on the training and validation splits under every loss, and the
curves grow by one point. Callbacks see each epoch's metrics and may stop the run (pruning).
A non-finite loss or weight ends the run as *diverged*; that is a result, not an exception.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from .losses import LOSSES, accuracy, evaluate
from .network import MLP
from .optimizers import build_optimizer
from .schedules import learning_rate

COMPLETE, DIVERGED, STOPPED = "complete", "diverged", "stopped"


@dataclass
class TrainResult:
    status: str
    epochs_run: int
    history: dict = field(default_factory=dict)
    diverged_epoch: int | None = None
    last_finite_loss: float | None = None
    network: MLP | None = None
    final: dict = field(default_factory=dict)


def seeded_generators(seed):
    """Independent streams for initialisation and batch order, both derived from one seed."""
    init_seq, order_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_seq), np.random.default_rng(order_seq)


def build_network(config, split):
    init_rng, _ = seeded_generators(config.seed)
    return MLP(split.n_features, config.hidden, split.n_classes, config.activation, config.dtype,
               rng=init_rng)


def epoch_metrics(network, split):
    """End-of-epoch accuracy on the whole training split, and every yardstick on validation."""
    metrics = {"train_accuracy": accuracy(network.logits(split.x_train), split.y_train)}
    val = evaluate(network.logits(split.x_val), split.y_val)
    metrics.update({f"val_{k}": v for k, v in val.items()})
    return metrics


def final_metrics(network, split, include_test=True):
    parts = [("val", split.x_val, split.y_val)]
    if include_test:
        parts.append(("test", split.x_test, split.y_test))
    out = {}
    for prefix, x, y in parts:
        out.update({f"{prefix}_{k}": v for k, v in evaluate(network.logits(x), y).items()})
    return out


def train(config, split, callbacks=(), initial_params=None, include_test=True):
    """Train one network as ``config`` says on ``split``; return its curves and final scores.

    ``callbacks`` are called as ``cb(epoch, metrics)`` after every epoch; one returning True stops
    the run (status ``stopped``). ``initial_params`` (weights, biases) replaces the seeded
    initialisation, which the scikit-learn parity test needs.
    """
    with threadpool_limits(config.blas_threads, user_api="blas"), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _train(config, split, callbacks, initial_params, include_test)


def _train(config, split, callbacks, initial_params, include_test):
    network = build_network(config, split)
    if initial_params is not None:
        network.load(*initial_params)
    _, order_rng = seeded_generators(config.seed)
    optimizer = build_optimizer(config, network)
    loss = LOSSES[config.loss]

    x, labels = np.ascontiguousarray(split.x_train, dtype=network.dtype), split.y_train
    n = x.shape[0]
    onehot = np.zeros((n, split.n_classes), dtype=network.dtype)
    onehot[np.arange(n), labels] = 1.0
    batch = n if config.batch_size == "full" else min(int(config.batch_size), n)
    x_epoch, y_epoch = np.empty_like(x), np.empty_like(onehot)
    history, last_finite = {}, None

    for epoch in range(1, config.epochs + 1):
        lr = learning_rate(config, epoch - 1, n)
        if config.shuffle:
            order = order_rng.permutation(n)
            np.take(x, order, axis=0, out=x_epoch)
            np.take(onehot, order, axis=0, out=y_epoch)
        else:
            x_epoch, y_epoch = x, onehot
        loss_sum = grad_norm_sum = 0.0
        n_batches = 0
        for start in range(0, n, batch):
            xb, yb = x_epoch[start:start + batch], y_epoch[start:start + batch]
            value = network.loss_and_grad(xb, yb, loss)
            if not math.isfinite(value):
                return _diverged(network, history, epoch, last_finite)
            loss_sum += value * xb.shape[0]
            grad_norm_sum += math.sqrt(float(np.dot(network.grad, network.grad)))
            n_batches += 1
            optimizer.step(network.params, network.grad, lr)
            last_finite = value
        weight_norm = math.sqrt(float(np.dot(network.params, network.params)))
        if not math.isfinite(weight_norm):
            return _diverged(network, history, epoch, last_finite)
        metrics = {"train_loss": loss_sum / n, "lr": lr, "grad_norm": grad_norm_sum / n_batches,
                   "weight_norm": weight_norm, **epoch_metrics(network, split)}
        if not all(math.isfinite(v) for v in metrics.values()):
            return _diverged(network, history, epoch, last_finite)
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        last_finite = metrics["train_loss"]
        if any(cb(epoch, metrics) for cb in callbacks):
            return TrainResult(STOPPED, epoch, history, network=network,
                               final=final_metrics(network, split, include_test))
    return TrainResult(COMPLETE, config.epochs, history, network=network,
                       final=final_metrics(network, split, include_test))


def _diverged(network, history, epoch, last_finite):
    return TrainResult(DIVERGED, epoch - 1, history, diverged_epoch=epoch,
                       last_finite_loss=last_finite, network=network)
