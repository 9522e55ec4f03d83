"""A worked custom optimizer and loss for the harness: ``optimizer = "my_methods:Lion"``,
``loss = "my_methods:LabelSmoothedCrossEntropy"`` (docs/benchmark.md).

Both work on a stack of T models at once: parameters are (T, P) buffers, every setting a (T, 1) column
(or a scalar), logits (T, batch, classes).
"""

import numpy as np

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
