"""A logged harness network without the harness: the numpy forward pass and MLflow's pyfunc wrapper.

MLflow copies this folder beside every model the harness logs (``code_paths``), so
``mlflow.pyfunc.load_model(uri).predict(frame)`` works where only MLflow, numpy and pandas are installed.
It imports nothing from ``harness``; ``tests/test_mlflow_model.py`` loads a model with ``harness`` hidden.
"""

import numpy as np

ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}


def label_type(classes):
    """MLflow's column type of the labels: ``long`` when every class name is an integer (digits' 0..9, a CSV's
    integer labels), else ``string``; predictions are returned as that type."""
    try:
        return "long" if all(str(int(str(c))) == str(c) for c in classes) else "string"
    except ValueError:
        return "string"


class Network:
    """The network of a logged ``weights.npz`` (read without pickle) and its ``config.json`` activation."""

    def __init__(self, weights_path, activation):
        with np.load(weights_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        layers = len([k for k in arrays if k.startswith("weight_")])
        self.weights = [arrays[f"weight_{i}"] for i in range(layers)]
        self.biases = [arrays[f"bias_{i}"].reshape(-1) for i in range(layers)]
        self.mean, self.scale = arrays.get("scaler_mean"), arrays.get("scaler_scale")
        names = [str(c) for c in arrays["classes"]]
        self.classes = [int(c) for c in names] if label_type(names) == "long" else names
        self.activation = ACTIVATIONS[activation]

    def predict(self, rows):
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weights[0].shape[0]:
            raise ValueError(f"expected rows of {self.weights[0].shape[0]} features, got shape {x.shape}")
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        a = x.astype(self.weights[0].dtype)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = a @ w + b
            if i < len(self.weights) - 1:
                a = self.activation(a)
        return [self.classes[i] for i in a.argmax(axis=1)]
