"""Labeled data sets, split and scaled the same way for every run, with a digest of what was seen.

Built-in sets ship with scikit-learn (no download); generated sets take a size so runs can be scaled
to 10^5..10^6 rows; a user's CSV needs a label column and numeric features. The split is stratified
from ``data_seed``; scaling is fitted on the training rows only.

Data regimes (``imbalance``, ``label_noise``) change the training rows (and, with noise, the validation
labels) after the split, from their own streams of ``data_seed``: test rows stay as the clean split has them.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.errors import ConfigError

if TYPE_CHECKING:
    from .config import TrainConfig

DATA_SETTINGS = (
    "dataset",
    "csv",
    "label_column",
    "n_samples",
    "val_fraction",
    "test_fraction",
    "data_seed",
    "dtype",
    "label_noise",
    "noise_kind",
    "clean_validation",
    "imbalance",
)
"""The settings that decide a run's split: runs equal in these see the same arrays."""


GENERATED = ("moons", "circles", "blobs", "classification")
"""Data sets made on the fly, whose size ``n_samples`` sets."""


def data_key(config: TrainConfig) -> tuple[Any, ...]:
    return tuple(getattr(config, k) for k in DATA_SETTINGS)


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list
    digest: str
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None
    feature_names: list[str] | None = None
    noisy_train: int = 0
    """Training rows whose label ``label_noise`` changed (they are trained on the wrong label)."""
    noisy_val: int = 0
    """Validation rows whose label was changed (0 with ``clean_validation``)."""
    train_class_counts: list[int] = field(default_factory=list)
    """Training rows per label as trained on (``y_train``'s counts: after ``imbalance`` and noise)."""

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _builtin(loader_name):
    def load(config):
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        return bunch.data, bunch.target, [str(name) for name in bunch.feature_names]

    return load


def _generated(maker):
    def load(config):
        import sklearn.datasets

        n, seed = config.n_samples, config.data_seed
        if maker == "moons":
            x, y = sklearn.datasets.make_moons(n_samples=n, noise=0.2, random_state=seed)
        elif maker == "circles":
            x, y = sklearn.datasets.make_circles(n_samples=n, noise=0.1, factor=0.5, random_state=seed)
        elif maker == "blobs":
            x, y = sklearn.datasets.make_blobs(n_samples=n, centers=4, n_features=8, cluster_std=2.0, random_state=seed)
        else:
            x, y = sklearn.datasets.make_classification(
                n_samples=n, n_features=20, n_informative=10, n_classes=4, random_state=seed
            )
        return x, y, [f"x{i}" for i in range(x.shape[1])]

    return load


def _csv(config):
    """(x, labels, feature names) of a user's CSV: a header row, a label column, numeric features.

    Only an empty cell is missing: "NA", "None" or "null" in the label column are class names as written
    (pandas would read them as missing), and in a feature column they are text, refused as not numeric."""
    import io

    import pandas as pd

    from ..common.files import CSV_LIMIT, read_local_file

    content = read_local_file(config.csv, f"csv = {config.csv!r}", CSV_LIMIT, "CSV file")
    try:
        frame = pd.read_csv(io.BytesIO(content), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"csv = {config.csv!r}: not a readable CSV file ({_first_line(exc)})") from None
    _check_columns(config, frame, _header(content))
    labels = frame.pop(config.label_column)
    _check_cells(config.csv, frame, labels)
    x = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        column = frame.columns[int(np.argwhere(~np.isfinite(x))[0][1])]
        raise ConfigError(
            f"{config.csv}: column {column!r} holds an infinite value (inf, -inf or a number "
            "beyond 1.8e308); features must be finite"
        )
    return x, labels.to_numpy(), [str(name) for name in frame.columns]


def _check_columns(config, frame, header):
    """Every column named once, the label column among them, at least one feature, and a data row."""
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ConfigError(
            f"{config.csv}: column name {duplicated[0]!r} appears more than once in the header; "
            "every column needs its own name (the first row is the header)"
        )
    if config.label_column not in frame.columns:
        raise ConfigError(
            f"{config.csv}: label_column = {config.label_column!r} is not a column; "
            f"columns are: {', '.join(map(str, frame.columns))[:300]} (the first row is the header; "
            "columns are separated by commas)"
        )
    if frame.empty:  # pandas reads no rows as text columns ("not numeric"): said as what it is
        raise too_few_rows(config.csv, 0, 2, config)
    if frame.shape[1] == 1:
        raise ConfigError(f"{config.csv}: has no feature columns besides {config.label_column!r}")


def _check_cells(source, features, labels):
    """No empty cell anywhere, and numbers only in the features: the first offence named by column and
    data row (1 is the row after the header)."""
    import pandas as pd

    for name, column in [*features.items(), (labels.name, labels)]:
        empty = np.flatnonzero(column.isna().to_numpy())
        if len(empty):
            raise ConfigError(
                f"{source}: column {name!r} has an empty cell in data row {empty[0] + 1}; "
                "fill it or drop the rows with empty cells first"
            )
    for name, column in features.items():
        if not pd.api.types.is_numeric_dtype(column):
            text = pd.to_numeric(column, errors="coerce").isna().to_numpy()
            row = int(np.argmax(text))
            raise ConfigError(
                f"{source}: column {name!r} is not numeric (data row {row + 1} holds {str(column.iloc[row])[:40]!r}); "
                "features must be numbers (encode categories first)"
            )


def _header(content):
    """The header's column names as written (pandas renames a repeated name to ``name.1``)."""
    import csv
    import io

    text = io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", errors="replace", newline="")
    return next(csv.reader(text), [])


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


MNIST1D_ROWS = 5000
"""MNIST-1D as its paper made it (Greydanus 2020, ``mnist1d.get_dataset_args()``): 5,000 rows of 40
features, 10 classes; split here like every other set (60/20/20 by default, stratified)."""


def cache_folder() -> str:
    """Where generated data sets are kept: $HARNESS_CACHE, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    import os

    if os.environ.get("HARNESS_CACHE"):
        return os.environ["HARNESS_CACHE"]
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "harness")


def mnist1d_settings() -> dict[str, Any]:
    """The generator's settings (its download URL aside): what the cached file's name digests."""
    from mnist1d.data import get_dataset_args

    return {k: v for k, v in get_dataset_args(as_dict=True).items() if k != "url"}


MNIST1D_DIGESTS = {"5c9c9f8289509c7b": "c51d78dc4f97488cd65a5f3a0bf82c351acb8c185b895243f60652b0cdb5f2d0"}
"""The generated set's ``digest`` per generator settings (their key; mnist1d 0.0.2): the same here with
every BLAS kernel and without AVX-512. A cached file is used only when it holds exactly this set."""


def _mnist1d(config):
    """Generated offline by the ``mnist1d`` package (about 2 s), cached by its settings' digest. The cache
    is not trusted: a file that does not hold the set the settings make (``MNIST1D_DIGESTS``; changed,
    damaged, or settings with no shipped digest) is not used, and the set is generated again."""
    import json
    import os

    settings = mnist1d_settings()
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_folder(), f"mnist1d-{key}.npz")
    expected = MNIST1D_DIGESTS.get(key)
    cached = _cached_mnist1d(path) if expected else None
    if cached is not None and digest(cached) == expected:
        x, y = cached
    else:
        x, y = _make_mnist1d(settings)
        if digest([x, y]) == expected:
            _keep_mnist1d(path, x, y)
    return x, y, [f"t{i}" for i in range(x.shape[1])]


def _cached_mnist1d(path):
    """(x, y) from the cache file, None when there is none or it cannot be read as one."""
    import os
    import zipfile

    try:
        if os.path.getsize(path) > 64 << 20:  # the set is 1.6 MB
            return None
        with np.load(path, allow_pickle=False) as saved:
            return [saved["x"], saved["y"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _keep_mnist1d(path, x, y):
    """Written whole or not at all: a killed or concurrent writer leaves no partial file."""
    import os
    import tempfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".mnist1d-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as fh:
            np.savez(fh, x=x, y=y)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _make_mnist1d(settings):
    """Both of the package's parts as one set of rows; the global random state it seeds is restored."""
    import random

    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(settings)))
    finally:
        np.random.set_state(state)
        random.setstate(py_state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


LOADERS = {
    "digits": _builtin("load_digits"),
    "iris": _builtin("load_iris"),
    "wine": _builtin("load_wine"),
    "breast_cancer": _builtin("load_breast_cancer"),
    "moons": _generated("moons"),
    "circles": _generated("circles"),
    "blobs": _generated("blobs"),
    "classification": _generated("classification"),
    "mnist1d": _mnist1d,
    "csv": _csv,
}


def digest(arrays: Iterable[np.ndarray]) -> str:
    """sha256 over dtype, shape and bytes of each array, in order: what exactly a run saw."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_split(config: TrainConfig) -> Split:
    """Load the data set a config names and split it train/validation/test, stratified."""
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    x, labels, names = LOADERS[config.dataset](config)
    encoder = LabelEncoder()
    y = encoder.fit_transform(labels)
    source = str(config.csv) if config.dataset == "csv" else f"dataset {config.dataset!r}"
    classes = len(encoder.classes_)
    if len(y) < rows_needed(max(classes, 2), config):
        raise too_few_rows(source, len(y), max(classes, 2), config)
    if classes < 2:
        raise ConfigError(f"{source}: needs at least 2 classes, found {classes}")
    parts = _stratified(x, y, config)
    if parts is None or any(len(np.unique(part)) < classes for part in parts[1::2]):
        raise _rare_class(source, encoder.classes_, y)
    x_train, y_train, x_val, y_val, x_test, y_test = parts
    x_train, y_train, y_val, noisy = _apply_regimes(config, source, classes, x_train, y_train, y_val)
    dtype = np.dtype(config.dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # an overflow is said below, naming its column
        warnings.simplefilter("ignore", RuntimeWarning)
        scaler = StandardScaler().fit(x_train)
        xs = [np.ascontiguousarray(scaler.transform(a), dtype=dtype) for a in (x_train, x_val, x_test)]
    _check_scaled(source, names, x, xs)
    ys = [np.ascontiguousarray(a, dtype=np.int64) for a in (y_train, y_val, y_test)]
    arrays = [xs[0], ys[0], xs[1], ys[1], xs[2], ys[2]]
    # the six arrays fill x_train..y_test: a length mypy cannot see in a list
    return Split(  # type: ignore[misc]
        *arrays,  # type: ignore[arg-type]
        classes=[str(c) for c in encoder.classes_],
        digest=digest(arrays),
        scaler_mean=scaler.mean_,
        scaler_scale=scaler.scale_,
        feature_names=names,
        noisy_train=noisy[0],
        noisy_val=noisy[1],
        train_class_counts=[int(n) for n in np.bincount(ys[0], minlength=classes)],
    )


REGIME_STREAMS = {"imbalance": 0, "train_noise": 1, "val_noise": 2}
"""Each regime's stream of ``data_seed``: ``SeedSequence(data_seed, spawn_key=(REGIME_KEY, stream))``."""
REGIME_KEY = 0x64617461
"""Sets the regimes' streams apart from the streams a run's ``seed`` spawns (spawn keys (0,) and (1,)),
which would otherwise coincide with them whenever ``data_seed`` equals ``seed``."""


def regime_rng(data_seed: int, stream: str) -> np.random.Generator:
    """The seeded generator of one regime (see ``REGIME_STREAMS``): independent of every other stream."""
    return np.random.default_rng(np.random.SeedSequence(data_seed, spawn_key=(REGIME_KEY, REGIME_STREAMS[stream])))


def kept_per_class(counts: Iterable[int], ratio: float) -> list[int]:
    """Rows class k of K keeps of its ``counts[k]``: ``floor(n_k * ratio**(-k/(K-1)))``, at least 1.

    The exponential profile of Cao et al. 2019 and Buda et al. 2018: class 0 keeps all, the last
    1/ratio. Rounded down, as their code does (a product within 1e-9 of a whole number is that number,
    so that 20 * 5**-1 keeps 4 rows, not 3, whatever the last bit of the float).
    """
    counts = [int(n) for n in counts]
    last = max(len(counts) - 1, 1)
    return [max(1, min(n, math.floor(n * ratio ** (-k / last) + 1e-9))) for k, n in enumerate(counts)]


def imbalanced_rows(y: np.ndarray, ratio: float, rng: np.random.Generator, n_classes: int | None = None) -> np.ndarray:
    """Indices of the rows of ``y`` (labels 0..K-1) an imbalance ``ratio`` keeps, ascending (the kept
    rows keep their order); which rows of a class are kept is drawn from ``rng``, class by class."""
    y = np.asarray(y)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    keep = np.zeros(len(y), dtype=bool)
    counts = np.bincount(y, minlength=n_classes)
    for k, kept in enumerate(kept_per_class(counts, ratio)):
        rows = np.flatnonzero(y == k)
        if len(rows):
            keep[rng.choice(rows, size=min(kept, len(rows)), replace=False)] = True
    return np.flatnonzero(keep)


def noise_bound(kind: str, n_classes: int) -> float:
    """The rate below which the true class stays each row's most likely label: (K-1)/K for symmetric
    noise (the true class against each of K-1 others at rate/(K-1)), 1/2 for pairwise (against k+1)."""
    return (n_classes - 1) / n_classes if kind == "symmetric" else 0.5


def noisy_labels(y: np.ndarray, rate: float, kind: str, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``y`` in which each row, independently with probability ``rate``, gets a wrong label:
    ``symmetric``, a uniformly drawn other class; ``pairwise``, class k becomes k+1 (mod K)."""
    y = np.asarray(y)
    flip = rng.random(len(y)) < rate
    if kind == "symmetric":
        wrong = (y + rng.integers(1, n_classes, size=len(y))) % n_classes
    elif kind == "pairwise":
        wrong = (y + 1) % n_classes
    else:
        raise ValueError(f"noise kind {kind!r}: choose symmetric or pairwise")
    return np.where(flip, wrong, y).astype(y.dtype, copy=False)


def _apply_regimes(
    config: TrainConfig, source: str, classes: int, x_train: np.ndarray, y_train: np.ndarray, y_val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(x_train, y_train, y_val, (noisy_train, noisy_val)) under the config's imbalance and label noise.
    A clean, balanced config draws nothing: its split is exactly the one made before regimes existed."""
    if config.imbalance != 1.0:
        rows = imbalanced_rows(y_train, config.imbalance, regime_rng(config.data_seed, "imbalance"), classes)
        x_train, y_train = x_train[rows], y_train[rows]
    if config.label_noise == 0:
        return x_train, y_train, y_val, (0, 0)
    bound = noise_bound(config.noise_kind, classes)
    if config.label_noise >= bound:
        raise ConfigError(
            f"{source}: label_noise = {config.label_noise:g} is not allowed; {config.noise_kind} noise over "
            f"{classes} classes needs label_noise < {bound:.4g} (at that rate the true class stops being the most "
            "likely label)"
        )
    rate, kind = config.label_noise, config.noise_kind
    noisy_train = noisy_labels(y_train, rate, kind, classes, regime_rng(config.data_seed, "train_noise"))
    noisy_val = y_val
    if not config.clean_validation:
        noisy_val = noisy_labels(y_val, rate, kind, classes, regime_rng(config.data_seed, "val_noise"))
    counts = (int((noisy_train != y_train).sum()), int((noisy_val != y_val).sum()))
    return x_train, noisy_train, noisy_val, counts


def _check_scaled(source: str, names: list[str], x: np.ndarray, xs: list[np.ndarray]) -> None:
    """Features near the float range (1e308) overflow the scaling's mean or variance: the network would
    see NaN and the run be called diverged. Said here, naming the first column it happened in."""
    finite = np.logical_and.reduce([np.isfinite(a).all(axis=0) for a in xs])
    if finite.all():
        return
    column = int(np.argmin(finite))
    largest = float(np.abs(x[:, column]).max())
    raise ConfigError(
        f"{source}: column {names[column]!r} cannot be scaled: its values reach {largest:.3g}, and the "
        "variance squares them (a float overflows beyond about 1.3e154); rescale that column first"
    )


def _stratified(x: np.ndarray, y: np.ndarray, config: TrainConfig) -> list[np.ndarray] | None:
    """[x_train, y_train, x_val, y_val, x_test, y_test], or None when a class is too rare to split."""
    from sklearn.model_selection import train_test_split

    held_out = config.val_fraction + config.test_fraction
    try:
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, test_size=held_out, stratify=y, random_state=config.data_seed
        )
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, test_size=config.test_fraction / held_out, stratify=y_rest, random_state=config.data_seed
        )
    except ValueError:
        return None
    return [x_train, y_train, x_val, y_val, x_test, y_test]


def rows_needed(classes: int, config: TrainConfig) -> int:
    """The fewest rows whose stratified split gives train, validation and test one row of each of
    ``classes`` balanced classes, counted as scikit-learn counts them (the test part rounded up)."""
    held_out = config.val_fraction + config.test_fraction
    n = 3 * classes
    while True:
        rest = math.ceil(held_out * n)
        test = math.ceil(config.test_fraction / held_out * rest)
        if min(n - rest, rest - test, test) >= classes:
            return n
        n += 1


def too_few_rows(source: str, rows: int, classes: int, config: TrainConfig) -> ConfigError:
    """Said before the split: scikit-learn's own message names test sizes, not the file's rows."""
    return ConfigError(
        f"{source}: has {rows} data row{'s' * (rows != 1)}; a train/validation/test split of {classes} classes, "
        f"one row of each in every part, needs at least {rows_needed(classes, config)} "
        f"(val_fraction {config.val_fraction:g}, test_fraction {config.test_fraction:g})"
    )


def _rare_class(source: str, names: np.ndarray, y: np.ndarray) -> ConfigError:
    """Enough rows, but one class too rare to reach every part: it would be missing from validation or test."""
    counts = np.bincount(y, minlength=len(names))
    rare = int(np.argmin(counts))
    return ConfigError(
        f"{source}: class {str(names[rare])!r} has {counts[rare]} of the {len(y)} rows, too few for one row in "
        "each of train, validation and test; give it more rows (or leave it out)"
    )


def model_example(split: Split, rows: int = 5) -> dict[str, Any]:
    """What a logged model is described with: its input columns and a few raw test rows."""
    raw = split.x_test[:rows].astype(np.float64)
    if split.scaler_mean is not None and split.scaler_scale is not None:
        raw = raw * split.scaler_scale + split.scaler_mean
    names = split.feature_names or [f"x{i}" for i in range(split.n_features)]
    return {"features": names, "example": raw.tolist()}
