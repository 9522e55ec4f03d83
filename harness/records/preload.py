"""What the recorders' forkserver imports once (``recorder.PRELOADED``), so that a recorder forked from it
starts ready instead of doing it again: MLflow's store, its pyfunc flavour, and the map of installed
packages that MLflow builds when a process saves its first model (to check the model's pinned
requirements against this environment: a scan of every installed distribution, about 0.4 CPU-s here)."""

import mlflow.pyfunc  # noqa: F401 - imported for the recorders forked from here
from mlflow.store.tracking import sqlalchemy_store  # noqa: F401 - the slow import
from mlflow.utils import requirements_utils

try:
    requirements_utils._init_modules_to_packages_map()
except Exception:  # noqa: BLE001
    # A forkserver whose preload raises forks no recorder at all. A model's save builds the map itself and
    # says what is wrong, for that run alone; an MLflow without this function saves models all the same
    # (tests/test_internals.py says it changed).
    pass
