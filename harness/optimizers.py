"""Optimizers over one flat parameter buffer, each a small class with one update rule.

``step(params, grad, lr)`` updates ``params`` in place; ``lr`` is the learning rate the schedule gives
for this epoch. Weight decay is the coupled L2 form (added to the gradient of the weights, not the
biases), as scikit-learn's ``alpha``. Update rules follow scikit-learn's
``_stochastic_optimizers.py`` so the SGD path can be checked against ``MLPClassifier``.
"""
import numpy as np


class Optimizer:
    def __init__(self, n_params, dtype, weight_decay=0.0, decay_mask=None):
        self.weight_decay = weight_decay
        self.decay_mask = decay_mask
        self._tmp = np.zeros(n_params, dtype=dtype)

    def step(self, params, grad, lr):
        if self.weight_decay:
            np.multiply(params, self.decay_mask, out=self._tmp)
            self._tmp *= self.weight_decay
            grad += self._tmp
        self.update(params, grad, lr)


class SGD(Optimizer):
    """v <- momentum v - lr g;  p <- p + v, or with Nesterov p <- p + momentum v - lr g."""

    def __init__(self, n_params, dtype, momentum=0.0, nesterov=False, **kw):
        super().__init__(n_params, dtype, **kw)
        self.momentum, self.nesterov = momentum, nesterov
        self.velocity = np.zeros(n_params, dtype=dtype)
        self._update = np.zeros(n_params, dtype=dtype) if nesterov else None

    def update(self, params, grad, lr):
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

    def __init__(self, n_params, dtype, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(n_params, dtype, **kw)
        self.beta1, self.beta2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = np.zeros(n_params, dtype=dtype)
        self.v = np.zeros(n_params, dtype=dtype)

    def update(self, params, grad, lr):
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1 - self.beta2) * grad * grad
        lr_t = lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        denom = np.sqrt(self.v, out=self._tmp)
        denom += self.eps
        params -= lr_t * self.m / denom


class RMSprop(Optimizer):
    """s <- rho s + (1 - rho) g^2;  p <- p - lr g / (sqrt(s) + eps)."""

    def __init__(self, n_params, dtype, rho=0.9, eps=1e-8, **kw):
        super().__init__(n_params, dtype, **kw)
        self.rho, self.eps = rho, eps
        self.s = np.zeros(n_params, dtype=dtype)

    def update(self, params, grad, lr):
        self.s *= self.rho
        self.s += (1 - self.rho) * grad * grad
        denom = np.sqrt(self.s, out=self._tmp)
        denom += self.eps
        params -= lr * grad / denom


class Adagrad(Optimizer):
    """s <- s + g^2;  p <- p - lr g / (sqrt(s) + eps)."""

    def __init__(self, n_params, dtype, eps=1e-8, **kw):
        super().__init__(n_params, dtype, **kw)
        self.eps = eps
        self.s = np.zeros(n_params, dtype=dtype)

    def update(self, params, grad, lr):
        self.s += grad * grad
        denom = np.sqrt(self.s, out=self._tmp)
        denom += self.eps
        params -= lr * grad / denom


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


def build_optimizer(config, network):
    """The optimizer a config names, with only the settings that optimizer uses."""
    common = dict(weight_decay=config.weight_decay, decay_mask=network.decay_mask)
    n, dtype = network.params.size, network.dtype
    if config.optimizer == "sgd":
        return SGD(n, dtype, momentum=config.momentum, nesterov=config.nesterov, **common)
    if config.optimizer == "adam":
        return Adam(n, dtype, beta1=config.beta1, beta2=config.beta2, eps=config.eps, **common)
    if config.optimizer == "rmsprop":
        return RMSprop(n, dtype, rho=config.rho, eps=config.eps, **common)
    return Adagrad(n, dtype, eps=config.eps, **common)
