"""Fault points, for the tests that prove what survives a kill or a failing training.

Off unless ``$HARNESS_FAULT`` names them, comma-separated:

- ``kill-after-tell=N``: the worker SIGKILLs itself right after Optuna heard its N-th trial (before
  the recorder stored that trial's run): the narrowest window between the two stores.
- ``kill-after-tell-confirm=N``: the same, counting confirmation seeds only.
- ``kill-at=POINT``: SIGKILL at a named point (``after-parents``: the parent runs exist, Optuna has not
  heard of them; ``after-reuse-tag``: a re-used confirmation run is tagged for the larger budget, Optuna
  has not been told).
- ``train-error=CONDITION``: training of that condition raises MemoryError every time.
- ``epoch-delay=SECONDS``: every epoch of a sweep's stack, and of a reproduction's training with rebuilt
  code (``reproduce.rebuild.DRIVER``), takes this much longer (tests that must interrupt a sweep or a reproduction
  in the middle of training, without needing a large data set).
- ``pause-at-epoch=N:FOLDER``: the first time a sweep worker's stack ends its N-th epoch (the pruner
  was asked), the worker writes ``FOLDER/<its pid>`` and waits until that file is deleted: a test
  starts its outage once the sweep is there (mid-stack, the rest of the budget to go), never after a
  sleep that a fast machine outruns and a slow one undershoots, then lets the worker go on into it.
"""

import os
import signal
import time
from pathlib import Path

_counts: dict[str, int] = {}


def _settings():
    spec = os.environ.get("HARNESS_FAULT", "")
    return dict(part.split("=", 1) for part in spec.split(",") if "=" in part)


def active():
    """Whether any fault is asked for: work done ahead of its time (``sweep.speculation``) is not then."""
    return bool(_settings())


def after_tell(phase):
    settings = _settings()
    for name in ("kill-after-tell", f"kill-after-tell-{phase}"):
        if name in settings:
            _counts[name] = _counts.get(name, 0) + 1
            if _counts[name] == int(settings[name]):
                os.kill(os.getpid(), signal.SIGKILL)


def kill_at(point):
    if _settings().get("kill-at") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def before_training(condition):
    if _settings().get("train-error") == condition:
        raise MemoryError(f"injected by HARNESS_FAULT for condition {condition}")


def epoch_hook():
    """A stack callback that delays every epoch (``epoch-delay``) or holds one (``pause-at-epoch``), or None."""
    settings = _settings()
    seconds = float(settings.get("epoch-delay", 0))
    pause = settings.get("pause-at-epoch")
    if not seconds and not pause:
        return None

    def hook(t, epoch, metrics):
        if seconds:
            time.sleep(seconds)
        if pause:
            _pause_at(epoch, pause)
        return False

    return hook


def _pause_at(epoch, spec):
    """Hold this process at its first epoch ``N`` until the test deletes the file that says so."""
    number, _, folder = spec.partition(":")
    if epoch != int(number) or _counts.get("pause-at-epoch"):
        return
    _counts["pause-at-epoch"] = 1
    marker = Path(folder) / str(os.getpid())
    marker.touch()
    while marker.exists():
        time.sleep(0.05)
