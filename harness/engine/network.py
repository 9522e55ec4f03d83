"""Multi-layer perceptrons in numpy with a softmax output, trained as a *stack* of T models at once.

Every parameter array carries a leading model axis: all T models' parameters live in one (T, P)
buffer with a (T, in, out) weight view and a (T, 1, out) bias view per layer, and the gradient in a
second buffer of the same layout. One batched matmul then does the work of T small ones; at digits
sizes a step is bound by numpy's per-call overhead, so T models cost little more than one. Training
one model is the T = 1 case of the same code. Each model's slices are computed exactly as they would
be alone (the batched matmul runs one gemm per model), so a model's curves do not depend on its
stack-mates. The per-batch work allocates nothing beyond small temporaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .activations import ACTIVATIONS

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike, NDArray

    from .losses import CrossEntropy, MSELogits, MSEProbabilities


def _layer_views(buffer, sizes):
    """(T, in, out) weight and (T, 1, out) bias views into a (T, P) buffer."""
    weights, biases, offset, models = [], [], 0, buffer.shape[0]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights.append(buffer[:, offset : offset + fan_in * fan_out].reshape(models, fan_in, fan_out))
        offset += fan_in * fan_out
        biases.append(buffer[:, offset : offset + fan_out].reshape(models, 1, fan_out))
        offset += fan_out
    return weights, biases


def n_parameters(sizes: Sequence[int]) -> int:
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


def glorot(rng: np.random.Generator, sizes: Sequence[int], activation: str, dtype: DTypeLike) -> NDArray[np.floating]:
    """One model's flat parameters: scikit-learn's Glorot-uniform scheme, from a numpy Generator."""
    factor = 2.0 if activation == "sigmoid" else 6.0
    parts = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        parts.append(rng.uniform(-bound, bound, size=fan_in * fan_out))
        parts.append(rng.uniform(-bound, bound, size=fan_out))
    return np.concatenate(parts).astype(dtype)


class StackedMLP:
    def __init__(self, params: ArrayLike, sizes: Sequence[int], activation: str = "relu") -> None:
        """``params``: (T, P) array holding T models' flat parameters (copied)."""
        self.sizes = [int(s) for s in sizes]
        self.activation = ACTIVATIONS[activation]
        self.params = np.array(params, copy=True, order="C")
        self.dtype = self.params.dtype
        self.grad = np.zeros_like(self.params)
        self.weights, self.biases = _layer_views(self.params, self.sizes)
        self.weight_grads, self.bias_grads = _layer_views(self.grad, self.sizes)
        # 1 on weights, 0 on biases: weight decay applies to weights only (as scikit-learn's alpha).
        mask = np.zeros((1, self.params.shape[1]), dtype=self.dtype)
        for w in _layer_views(mask, self.sizes)[0]:
            w[...] = 1.0
        self.decay_mask = mask
        self._views: dict[int, tuple[list[NDArray[Any]], list[NDArray[Any]], list[NDArray[Any]]]] = {}

    @property
    def models(self) -> int:
        return self.params.shape[0]

    def keep(self, rows: list[int]) -> StackedMLP:
        """The stack without the models that left it (finished, diverged, pruned), mid-step included."""
        kept = StackedMLP(self.params[rows], self.sizes, self.activation.name)
        kept.grad[...] = self.grad[rows]
        return kept

    def logits(self, x: ArrayLike) -> NDArray[np.floating]:
        """(T, n, classes) outputs for rows ``x`` (n, in) shared by every model."""
        a = np.asarray(x, dtype=self.dtype)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = np.matmul(a, w)
            a += b
            if i < last:
                self.activation.forward(a)
        return a

    def _buffers(self, batch):
        views = self._views.get(batch)
        if views is None:
            t = self.models
            acts = [np.empty((t, batch, n), dtype=self.dtype) for n in self.sizes[1:]]
            deltas = [np.empty((t, batch, n), dtype=self.dtype) for n in self.sizes[1:]]
            scratch = bool if self.activation.scratch_is_bool else self.dtype
            scratch = [np.empty((t, batch, n), dtype=scratch) for n in self.sizes[1:-1]]
            views = self._views[batch] = (acts, deltas, scratch)
        return views

    def loss_and_grad(
        self, x: NDArray[np.floating], y: NDArray[np.floating], loss: CrossEntropy | MSEProbabilities | MSELogits
    ) -> NDArray[np.floating]:
        """Per-model mean batch losses (T,); leaves dLoss/dparams in ``self.grad``.

        x: (T, b, in) and y: one-hot (T, b, classes), each model its own rows.
        """
        acts, deltas, scratch = self._buffers(x.shape[1])
        weights, biases, forward = self.weights, self.biases, self.activation.forward
        last = len(weights) - 1
        a = x
        for i in range(last):
            np.matmul(a, weights[i], out=acts[i])
            acts[i] += biases[i]
            forward(acts[i])
            a = acts[i]
        np.matmul(a, weights[last], out=acts[last])
        acts[last] += biases[last]
        values = loss.value_and_grad(acts[last], y, deltas[last])
        for i in range(last, 0, -1):
            np.matmul(acts[i - 1].transpose(0, 2, 1), deltas[i], out=self.weight_grads[i])
            np.add.reduce(deltas[i], axis=1, keepdims=True, out=self.bias_grads[i])
            np.matmul(deltas[i], weights[i].transpose(0, 2, 1), out=deltas[i - 1])
            self.activation.backward(acts[i - 1], deltas[i - 1], scratch[i - 1])
        np.matmul(x.transpose(0, 2, 1), deltas[0], out=self.weight_grads[0])
        np.add.reduce(deltas[0], axis=1, keepdims=True, out=self.bias_grads[0])
        return values


class Model:
    """One trained network for scoring and prediction, from plain (in, out) weights and (out,) biases.

    It scores through a one-model stack: the same batched matmul as training, so scores match bit for bit.
    """

    def __init__(self, weights: Sequence[ArrayLike], biases: Sequence[ArrayLike], activation: str) -> None:
        self.weights = [np.asarray(w) for w in weights]
        self.biases = [np.asarray(b).reshape(-1) for b in biases]
        self.sizes = [self.weights[0].shape[0], *[w.shape[1] for w in self.weights]]
        flat = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(self.weights, self.biases)])
        self.stack = StackedMLP(flat[None, :], self.sizes, activation)
        self.dtype = self.stack.dtype

    @classmethod
    def from_stack(cls, stack: StackedMLP, t: int) -> Model:
        return cls([w[t] for w in stack.weights], [b[t, 0] for b in stack.biases], stack.activation.name)

    def logits(self, x: ArrayLike) -> NDArray[np.floating]:
        return self.stack.logits(x)[0]
