"""Optuna's own plots of each condition's search, as PNGs for the comparison report."""

from __future__ import annotations

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
    for condition in study.conditions:
        try:
            optuna_study = optuna.load_study(study_name=study.optuna_name(condition), storage=storage)
        except KeyError:
            continue
        found += 1
        safe = condition.name.replace("/", "_")
        for name, plot in (("history", plots.plot_optimization_history), ("importances", plots.plot_param_importances)):
            try:
                ax = plot(optuna_study)
            except (ValueError, RuntimeError):
                continue  # too few finished trials for this plot
            retitle(ax, condition.name)
            path = folder / f"optuna_{name}_{safe}.png"
            # a plot's axes belong to a Figure, not a SubFigure
            ax.figure.savefig(path, bbox_inches="tight")  # type: ignore[union-attr]
            plt.close(ax.figure)  # type: ignore[arg-type]
            made.append(path)
    if not found:
        print(
            f"warning: {redact(url)} holds no search of study {study.name!r}: the report has no Optuna plots (for "
            "them, name the storage the sweep used with --storage: the sweep's first line says which)",
            file=sys.stderr,
        )
    return made


def check_storage(storage_address: str, study_name: str) -> None:
    """A storage the user named for Optuna's plots (``compare --storage``) must open: checked before the
    comparison is written, in one line (left unsaid, the report would silently lack the plots)."""
    url = storage_url(storage_address, study_name)
    if url.startswith("journal:") and not Path(url[len("journal:") :]).is_file():
        raise HarnessError(f"--storage {storage_address}: no such journal file (the sweep's Optuna storage)")
    open_storage(url, study_name)  # its error names --storage and why
