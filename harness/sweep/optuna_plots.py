"""Optuna's own plots of each condition's search, as PNGs for the comparison report."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from ..common.errors import HarnessError
from ..common.urls import redact
from .storages import open_storage, storage_url

if TYPE_CHECKING:
    from ..studies.study import Study


def retitle(ax, prefix):
    """One title, prefixed: Optuna's plots put theirs on the left or in the centre, never both."""
    title = next((ax.get_title(loc=loc) for loc in ("left", "center", "right") if ax.get_title(loc=loc)), "")
    for loc in ("left", "center", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(f"{prefix}: {title}" if title else prefix, loc="left")


def optuna_plots(study: Study, storage_address: str | None, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances per condition, as PNGs in ``folder``.
    The storage is only read: a journal file that does not exist is not created."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    url = storage_url(storage_address, study.name)
    if url.startswith("journal:") and not Path(url[len("journal:") :]).is_file():
        return []
    try:
        storage, _ = open_storage(url, study.name)
    except HarnessError:
        return []
    found = 0
    warnings.filterwarnings("ignore", message="Target and region quantiles")  # few trials: equal shares
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "trial omitted: value is inf" for diverged ones
    made: list[Path] = []
    drawn = DrawnPlots(study.name)
    for condition in study.conditions:
        try:
            optuna_study = optuna.load_study(study_name=study.optuna_name(condition), storage=storage)
        except KeyError:
            continue
        found += 1
        safe = condition.name.replace("/", "_")
        digest = trials_digest(optuna_study, condition.name)
        for name, plot in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances)):
            path = folder / f"optuna_{name}_{safe}.png"
            known = drawn.get(f"{name}_{safe}", digest)
            if known is not None:  # these trials' plot, drawn by an earlier comparison (or known not drawable)
                if known:
                    path.write_bytes(known)
                    made.append(path)
                continue
            try:
                ax = plot(optuna_study)
            except (ValueError, RuntimeError):
                drawn.keep(f"{name}_{safe}", digest, None)
                continue  # too few finished trials for this plot
            retitle(ax, condition.name)
            # a plot's axes belong to a Figure, not a SubFigure
            ax.figure.savefig(path, bbox_inches="tight")  # type: ignore[union-attr]
            plt.close(ax.figure)  # type: ignore[arg-type]
            drawn.keep(f"{name}_{safe}", digest, path)
            made.append(path)
    if not found:
        print(
            f"warning: {redact(url)} holds no search of study {study.name!r}: the report has no Optuna plots (for "
            "them, name the storage the sweep used with --storage: the sweep's first line says which)",
            file=sys.stderr,
        )
    return made


def trials_digest(optuna_study: optuna.Study, title: str) -> str:
    """What a condition's Optuna plots are drawn from: its trials' numbers, states, values, params and
    distributions, the direction, the title and the drawing libraries' versions."""
    import hashlib

    import matplotlib

    trials = [
        (
            t.number,
            t.state.name,
            t.values,
            sorted(t.params.items()),
            sorted((k, repr(d)) for k, d in t.distributions.items()),
        )
        for t in optuna_study.get_trials(deepcopy=False)
    ]
    directions = [d.name for d in optuna_study.directions]
    text = repr((title, directions, trials, optuna.__version__, matplotlib.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _named(text: str) -> str:
    """A file name for any text (a condition's name may hold what a file name or a glob cannot)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DrawnPlots:
    """The plots of a study's last comparison, kept in the cache folder under the digest of what they were
    drawn from (``trials_digest``): a comparison of the same trials copies them instead of drawing them
    again (Optuna's plots were half of ``compare``'s time on the benchmark). One file per plot and study:
    a new digest replaces the old file. A plot that could not be drawn (too few trials) is kept empty."""

    def __init__(self, study_name: str) -> None:
        from ..engine.data import cache_folder

        self.folder = Path(cache_folder()) / "optuna_plots" / _named(study_name)

    def get(self, plot: str, digest: str) -> bytes | None:
        """The PNG of the plot drawn from these trials; b"" if it could not be drawn; None if not known (or
        not a regular file of at most 64 MB: the folder is read, not trusted, and a FIFO would never end)."""
        from ..common.files import MB, RefusedFile, read_local_file

        try:
            return read_local_file(str(self.folder / f"{_named(plot)}.{digest}.png"), "a kept plot", 64 * MB)
        except RefusedFile:
            return None

    def keep(self, plot: str, digest: str, path: Path | None) -> None:
        """Keep the plot just drawn (``path``; None: it could not be) for these trials, in place of older."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for old in self.folder.glob(f"{_named(plot)}.*.png"):
                old.unlink(missing_ok=True)
            partial = self.folder / f".{_named(plot)}.{digest}.{os.getpid()}"
            partial.write_bytes(path.read_bytes() if path is not None else b"")
            partial.replace(self.folder / f"{_named(plot)}.{digest}.png")  # whole or not at all
        except OSError:
            pass  # a cache that cannot be written is drawn again next time


def check_storage(storage_address: str, study_name: str) -> None:
    """A storage the user named for Optuna's plots (``compare --storage``) must open: checked before the
    comparison is written, in one line (left unsaid, the report would silently lack the plots)."""
    url = storage_url(storage_address, study_name)
    if url.startswith("journal:") and not Path(url[len("journal:") :]).is_file():
        raise HarnessError(f"--storage {storage_address}: no such journal file (the sweep's Optuna storage)")
    open_storage(url, study_name)  # its error names --storage and why
