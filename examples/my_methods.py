"""A worked custom optimizer and losses for the harness: ``optimizer = "my_methods:Lion"``,
``loss = "my_methods:LabelSmoothedCrossEntropy"``, ``loss = "my_methods:FocalLoss"`` (docs/benchmark.md).

All work on a stack of T models at once: parameters are (T, P) buffers, every setting a (T, 1) column
(or a scalar), logits (T, batch, classes).
"""

import numpy as np

from harness.engine.methods import Setting
from harness.engine.optimizers import Optimizer


class Lion(Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
    c = beta1 m + (1 - beta1) g;  p <- p - lr sign(c);  m <- beta2 m + (1 - beta2) g.

    Its steps have size lr in every coordinate, so it wants a learning rate 3-10x smaller than Adam's.
    ``weight_decay`` is the harness's coupled L2 (added to the gradient), not Lion's decoupled one.
    """

    state = ("m",)  # per-model arrays (T, P), zeroed at the start and compacted when models leave the stack
    settings = ("weight_decay", "beta1", "beta2")  # harness settings, each a (T, 1) column here

    def update(self, params, grad, lr):
        c = np.multiply(self.beta1, self.m, out=self._tmp)
        c += (1 - self.beta1) * grad
        params -= lr * np.sign(c)
        self.m *= self.beta2
        self.m += (1 - self.beta2) * grad


class LabelSmoothedCrossEntropy:
    """Cross-entropy against (1 - eps) y + eps / C (Szegedy et al. 2016), eps = 0.1.

    L = (1/B) sum_i -sum_c q_ic log p_ic;  dL/dz = (p - q) / B.
    """

    smoothing = 0.1

    def value_and_grad(self, z, y, out):
        """Per-model mean batch losses (T,); writes dL/dz into ``out``. z, y, out: (T, batch, classes)."""
        b, classes = z.shape[1], z.shape[2]
        q = (1 - self.smoothing) * y + self.smoothing / classes
        shifted = z - z.max(axis=2, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
        values = -(q * log_p).sum(axis=(1, 2)) / b
        np.exp(log_p, out=out)
        out -= q
        out /= b
        return values


class FocalLoss:
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), p_y the softmax probability
    of the label: L = (1/B) sum_i -(1 - p_y)^gamma log p_y. gamma = 0 is cross-entropy; a larger gamma
    down-weights the rows already classified well.

    dL/dz = (1/B) w (p - y), w = (1 - p_y)^gamma - gamma p_y (1 - p_y)^(gamma - 1) log p_y, computed as
    (1 - p_y)^gamma (1 - gamma p_y r) with r = log p_y / (1 - p_y) (-1 in the limit p_y -> 1).
    """

    declared = (Setting("focal_gamma", default=2.0, low=0.0, high=10.0),)  # set as self.focal_gamma
    focal_gamma = 2.0

    def value_and_grad(self, z, y, out):
        b, gamma = z.shape[1], self.focal_gamma
        shifted = z - z.max(axis=2, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
        log_p_y = (log_p * y).sum(axis=2, keepdims=True)  # (T, batch, 1), finite where p_y underflows
        rest = -np.expm1(log_p_y)  # 1 - p_y, exact near p_y = 1
        r = np.divide(log_p_y, rest, out=np.full_like(rest, -1.0), where=rest > 0)
        weight = rest**gamma
        values = -(weight * log_p_y).sum(axis=(1, 2)) / b
        np.exp(log_p, out=out)
        out -= y
        out *= weight * (1 - gamma * np.exp(log_p_y) * r) / b
        return values
