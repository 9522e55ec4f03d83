"""harness: what training does, and how much the loss and the optimizer matter, measured.

From Python: ``harness.load_study``, ``harness.run_sweep``, ``harness.train`` (see ``harness.api``), and
``harness.register_optimizer`` / ``harness.register_loss`` (a name for your own method in this process),
imported on first use so that ``import harness`` stays cheap and changes nothing.
"""

from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time each is imported on first use
    from .api import StudyRecords, TrainedRun, load_study, run_sweep, train
    from .engine.methods import register_loss, register_optimizer

try:
    __version__ = metadata.version("harness")  # one version, pyproject.toml's
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "load_study",
    "run_sweep",
    "train",
    "StudyRecords",
    "TrainedRun",
    "register_optimizer",
    "register_loss",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in ("load_study", "run_sweep", "train", "StudyRecords", "TrainedRun"):
        from . import api

        return getattr(api, name)
    if name in ("register_optimizer", "register_loss"):
        from .engine import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
