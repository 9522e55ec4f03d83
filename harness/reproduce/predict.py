"""Load a logged run's network (a run in the store, or an export) and predict CSV rows."""

import numpy as np

from ..common.errors import ConfigError, HarnessError
from ..records.runs import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT
from ..records.tags import STATE
from ..records.weights import LoggedModel, parse_config, parse_weights


def load_logged_model(source, uri):
    """The network of a run in the store at ``uri``, or of an export file (which needs no store)."""
    from ..records.logged import ExportedRun, StoredRun, is_export

    if is_export(source):
        logged = ExportedRun(source)
    else:
        from ..records.recorder import InlineRecorder
        from ..records.store import check_exists

        check_exists(uri, f"run {source!r}")
        logged = StoredRun(InlineRecorder(uri), source)
    config_bytes, weights_bytes = logged.artifact(CONFIG_ARTIFACT), logged.artifact(WEIGHTS_ARTIFACT)
    if config_bytes is None or weights_bytes is None:
        raise HarnessError(
            f"{logged.where} has no {CONFIG_ARTIFACT} or {WEIGHTS_ARTIFACT} artifact "
            f"(state {logged.run['tags'].get(STATE, 'unknown')}): nothing to load"
        )
    config = parse_config(config_bytes, f"{logged.where} {CONFIG_ARTIFACT}")
    return LoggedModel(config, parse_weights(weights_bytes, f"{logged.where} {WEIGHTS_ARTIFACT}"))


def read_rows(path, label_column, n_features):
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
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ConfigError(f"{path}: column {non_numeric[0]!r} is not numeric")
    if frame.shape[1] != n_features:
        raise ConfigError(f"{path}: has {frame.shape[1]} feature columns; the model takes {n_features}")
    rows = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(rows).all():
        raise ConfigError(f"{path}: holds empty cells or infinite values; every feature must be a finite number")
    return rows
