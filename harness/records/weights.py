"""A run's final network as logged (``weights.npz`` and ``config.json``): read back checked, without
pickle; an edited or damaged file gets one line naming the run, the file and what is wrong.
"""

import io
import json
import math
import zipfile
import zlib

import numpy as np

from ..common.errors import ConfigError, HarnessError
from ..engine.config import make_config
from ..engine.network import Model
from .runs import WEIGHTS_ARTIFACT


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
        names = arrays.get("features")
        self.features = None if names is None else [str(n) for n in names]
        """The training file's feature columns in the network's input order (None: a run logged before
        they were kept, matched by count alone)."""

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


def parse_config(content, where):
    """A logged ``config.json`` as a validated TrainConfig, or one line naming ``where``."""
    try:
        values = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise HarnessError(f"{where}: expected a JSON object of settings, found {type(values).__name__}")
    return make_config(values, source=where)


HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def declared_arrays(content, where, limit=None):
    """{member: (shape, dtype)} of an npz, read from each .npy header before any array is allocated:
    a crafted file may declare an array of terabytes in a few bytes. Refused when the arrays would
    hold more than ``limit`` bytes together (default: the weights' limit), or a member is no array."""
    from .logged import LIMITS

    limit = LIMITS[WEIGHTS_ARTIFACT] if limit is None else limit
    declared, total = {}, 0
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise HarnessError(f"{where}: {info.filename} is not a .npy array")
                with archive.open(info) as stream:
                    version = np.lib.format.read_magic(stream)
                    if version not in HEADER_READERS:
                        raise ValueError(f"{info.filename}: .npy format {version}")
                    shape, _, dtype = HEADER_READERS[version](stream)
                if any(n < 0 for n in shape):
                    raise ValueError(f"{info.filename}: shape {shape}")
                name = info.filename.removesuffix(".npy")
                if dtype.hasobject:
                    raise ValueError(f"{name} holds Python objects, which are never unpickled")
                total += math.prod(shape) * dtype.itemsize
                if total > limit:
                    raise HarnessError(
                        f"{where}: {name} declares shape {shape} of {dtype}; the arrays may hold at most "
                        f"{limit} bytes together"
                    )
                declared[name] = (shape, dtype)
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        raise HarnessError(f"{where}: not a readable weights file ({str(exc).splitlines()[0][:200]})") from None
    return declared


def parse_weights(content, where):
    """A logged ``weights.npz`` as checked plain arrays (no pickle), or one line naming ``where``."""
    declared_arrays(content, where)
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise HarnessError(f"{where}: not a readable weights file ({str(exc).splitlines()[0][:200]})") from None
    layers = len([k for k in arrays if k.startswith("weight_")])
    if layers == 0 or "classes" not in arrays:
        raise HarnessError(f"{where}: holds no network (weight_0.., bias_0.., classes)")
    previous = None
    for i in range(layers):
        w, b = arrays.get(f"weight_{i}"), arrays.get(f"bias_{i}")
        if (
            w is None
            or b is None
            or w.ndim != 2
            or b.ndim != 1
            or w.shape[1] != b.shape[0]
            or w.dtype.kind != "f"
            or b.dtype.kind != "f"
            or (previous is not None and w.shape[0] != previous)
        ):
            raise HarnessError(f"{where}: layer {i} has inconsistent shapes or types")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise HarnessError(f"{where}: layer {i} holds non-finite weights")
        previous = w.shape[1]
    classes = arrays["classes"]
    if classes.ndim != 1 or len(classes) != previous:
        raise HarnessError(f"{where}: classes of shape {classes.shape}; the network has {previous} outputs")
    features = arrays["weight_0"].shape[0]
    names = arrays.get("features")
    if names is not None and (names.shape != (features,) or names.dtype.kind != "U" or len(set(names)) != features):
        raise HarnessError(f"{where}: features does not hold one distinct name per input feature ({features})")
    for key in ("scaler_mean", "scaler_scale"):
        value = arrays.get(key)
        if value is None:
            continue
        if value.shape != (features,) or value.dtype.kind != "f" or not np.isfinite(value).all():
            raise HarnessError(f"{where}: {key} does not hold one finite number per input feature ({features})")
        if key == "scaler_scale" and not (value > 0).all():
            raise HarnessError(f"{where}: scaler_scale holds a value <= 0; a feature's scale is positive")
    return arrays
