"""Hidden-layer activations, each applied in place and differentiated through its own output.

Writing the derivative in terms of the output ``a`` (not the pre-activation) lets the network keep
one buffer per layer: the forward pass overwrites z with a, and the backward pass needs only a.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray


def _relu(z):
    np.maximum(z, 0, out=z)


def _relu_grad(a, delta, scratch):
    np.greater(a, 0, out=scratch)
    np.multiply(delta, scratch, out=delta)


def _tanh(z):
    np.tanh(z, out=z)


def _tanh_grad(a, delta, scratch):
    # d tanh = 1 - a^2
    np.multiply(a, a, out=scratch)
    np.subtract(1, scratch, out=scratch)
    np.multiply(delta, scratch, out=delta)


def _sigmoid(z):
    # Two-sided form keeps exp from overflowing for large |z|.
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)


def _sigmoid_grad(a, delta, scratch):
    # d sigmoid = a (1 - a)
    np.subtract(1, a, out=scratch)
    scratch *= a
    np.multiply(delta, scratch, out=delta)


class Activation:
    def __init__(
        self,
        name: str,
        forward: Callable[[NDArray[Any]], None],
        backward: Callable[[NDArray[Any], NDArray[Any], NDArray[Any]], None],
        scratch_dtype: type,
    ) -> None:
        self.name, self.forward, self.backward = name, forward, backward
        self.scratch_is_bool = scratch_dtype is bool


ACTIVATIONS = {
    "relu": Activation("relu", _relu, _relu_grad, bool),
    "tanh": Activation("tanh", _tanh, _tanh_grad, float),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_grad, float),
}
