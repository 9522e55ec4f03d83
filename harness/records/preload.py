"""What the recorders' forkserver imports once (``recorder.PRELOADED``), so that a recorder forked from it
starts ready instead of doing it again: MLflow's store, its pyfunc flavour, and the map of installed
packages that MLflow builds when a process saves its first model (to check the model's pinned
requirements against this environment: a scan of every installed distribution, about 0.4 CPU-s here)."""

import mlflow.pyfunc  # noqa: F401 - imported for the recorders forked from here
from mlflow.store.tracking import sqlalchemy_store  # noqa: F401 - the slow import
from mlflow.utils import requirements_utils

_build_map = getattr(requirements_utils, "_init_modules_to_packages_map", None)
if _build_map is not None:  # an MLflow without it saves models all the same (tests/test_internals.py says so)
    try:
        _build_map()
    except Exception:  # noqa: BLE001 - a forkserver whose preload raises forks no recorder at all; a model's
        pass  # save builds the map again and says what is wrong, for that run alone
