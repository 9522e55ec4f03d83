"""Load a logged run's network (a run in the store, or an export) and predict CSV rows."""

import numpy as np

from ..common.errors import ConfigError, HarnessError
from ..records.runs import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT
from ..records.tags import STATE
from ..records.weights import LoggedModel, parse_config, parse_weights


def open_logged(source, uri):
    """The logged run ``source`` names: a run in the store at ``uri``, or an export file (which needs no store)."""
    from ..records.logged import ExportedRun, StoredRun, is_export

    if is_export(source):
        return ExportedRun(source)
    from ..records.recorder import InlineRecorder
    from ..records.store import check_exists

    check_exists(uri, f"run {source!r}")
    return StoredRun(InlineRecorder(uri), source)


def model_of(logged):
    """A logged run's network, read back checked from its ``config.json`` and ``weights.npz``."""
    config_bytes, weights_bytes = logged.artifact(CONFIG_ARTIFACT), logged.artifact(WEIGHTS_ARTIFACT)
    if config_bytes is None or weights_bytes is None:
        raise HarnessError(
            f"{logged.where} has no {CONFIG_ARTIFACT} or {WEIGHTS_ARTIFACT} artifact "
            f"(state {logged.run['tags'].get(STATE, 'unknown')}): nothing to load"
        )
    config = parse_config(config_bytes, f"{logged.where} {CONFIG_ARTIFACT}")
    return LoggedModel(config, parse_weights(weights_bytes, f"{logged.where} {WEIGHTS_ARTIFACT}"))


def load_logged_model(source, uri):
    """The network of a run in the store at ``uri``, or of an export file."""
    return model_of(open_logged(source, uri))


def typed_classes(classes):
    """The class names in the labels' own type: integers when every name is one (digits' 0..9, a CSV's
    integer labels), else the strings; the rule the logged MLflow model types its predictions by."""
    from harness_model import label_type

    return [int(c) for c in classes] if label_type(classes) == "long" else list(classes)


def read_rows(path, label_column, model):
    """The rows of a CSV as the network's inputs: columns matched to the training file's by name (so a
    file with its columns in another order predicts the same), or by count for a run logged without names."""
    import io

    import pandas as pd

    from ..common.files import CSV_LIMIT, read_local_file

    content = read_local_file(path, path, CSV_LIMIT, "CSV file")
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0][:200]})") from None
    if label_column in frame.columns:
        frame = frame.drop(columns=[label_column])
    if model.features is not None:
        frame = _in_model_order(frame, model.features, path)
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ConfigError(f"{path}: column {non_numeric[0]!r} is not numeric")
    if frame.shape[1] != model.n_features:
        raise ConfigError(f"{path}: has {frame.shape[1]} feature columns; the model takes {model.n_features}")
    rows = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(rows).all():
        raise ConfigError(f"{path}: holds empty cells or infinite values; every feature must be a finite number")
    return rows


def _in_model_order(frame, features, path):
    """``frame``'s columns in the order the network was trained on; a missing or unknown column is refused
    (a guess by position would predict from the wrong features and still exit 0)."""
    columns = [str(c) for c in frame.columns]
    missing = [name for name in features if name not in columns]
    unknown = [name for name in columns if name not in features]
    if missing or unknown:
        said = []
        if missing:
            said.append(
                f"lacks {len(missing)} of the model's feature columns ({', '.join(map(repr, missing[:5]))}"
                + (", ..." if len(missing) > 5 else "")
                + ")"
            )
        if unknown:
            said.append(
                f"has {len(unknown)} column(s) the model was not trained on ({', '.join(map(repr, unknown[:5]))}"
                + (", ..." if len(unknown) > 5 else "")
                + ")"
            )
        raise ConfigError(
            f"{path}: {'; '.join(said)}; the header must name the training file's feature columns "
            f"({', '.join(features[:5])}{', ...' if len(features) > 5 else ''}), in any order"
        )
    frame.columns = columns
    return frame[features]
