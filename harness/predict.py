"""Load a logged run's final network and predict classes for new rows (no pickle anywhere)."""
import io
import json

import numpy as np

from .config import make_config
from .errors import ConfigError, HarnessError
from .network import Model
from .recorded import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT
from .tracking import fetch_run, open_client, read_artifact


class LoggedModel:
    """A run's network with its feature scaling and class names."""

    def __init__(self, config, arrays):
        self.config = config
        layers = len([k for k in arrays if k.startswith("weight_")])
        weights = [arrays[f"weight_{i}"] for i in range(layers)]
        biases = [arrays[f"bias_{i}"] for i in range(layers)]
        self.classes = [str(c) for c in arrays["classes"]]
        self.network = Model(weights, biases, config.activation)
        self.mean, self.scale = arrays.get("scaler_mean"), arrays.get("scaler_scale")

    @property
    def n_features(self):
        return self.network.sizes[0]

    def predict_indices(self, raw):
        x = np.asarray(raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ConfigError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        return self.network.logits(x.astype(self.network.dtype)).argmax(axis=1)

    def predict(self, raw):
        return [self.classes[i] for i in self.predict_indices(raw)]


def load_logged_model(run_id, uri):
    client = open_client(uri)
    run = fetch_run(client, run_id)
    config_bytes = read_artifact(client, run_id, CONFIG_ARTIFACT)
    weights_bytes = read_artifact(client, run_id, WEIGHTS_ARTIFACT)
    if config_bytes is None or weights_bytes is None:
        raise HarnessError(f"run {run_id} has no {CONFIG_ARTIFACT} or {WEIGHTS_ARTIFACT} artifact "
                           f"(state {run.data.tags.get('state', 'unknown')}): nothing to load")
    config = make_config(json.loads(config_bytes), source=f"run {run_id} {CONFIG_ARTIFACT}")
    with np.load(io.BytesIO(weights_bytes), allow_pickle=False) as arrays:
        return LoggedModel(config, dict(arrays))


def read_rows(path, label_column, n_features):
    import pandas as pd
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    if label_column in frame.columns:
        frame = frame.drop(columns=[label_column])
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ConfigError(f"{path}: column {non_numeric[0]!r} is not numeric")
    if frame.shape[1] != n_features:
        raise ConfigError(f"{path}: has {frame.shape[1]} feature columns; the model takes {n_features}")
    return frame.to_numpy(dtype=np.float64)
