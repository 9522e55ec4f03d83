"""The harness from Python (a notebook): the same work as the commands, results as pandas DataFrames.

    import harness
    study = harness.load_study("quickstart")          # a finished sweep, read from ./mlruns
    study.summary                                      # one row per condition (what `compare` prints)
    study.trials                                       # one row per run, as mlflow.search_runs gives runs
    study.curves("val_accuracy")                       # per-epoch values of every confirmation run
    harness.run_sweep("studies/quickstart.toml", trials=4)
    harness.train(dataset="iris", loss="mse", epochs=20)

The tables follow ``mlflow.search_runs`` and pandas: times as UTC datetimes, numbers as numbers (counts
as nullable ``Int64``), a run's values under ``metrics.``, ``params.`` and ``tags.``. Importing
``harness`` imports none of this (nor mlflow, optuna or scikit-learn) until it is used, and a call
leaves the caller's environment variables, logging levels and warning filters as it found them.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from .analysis.comparisons import Analysis
    from .sweep.lifecycle import SweepResult


@contextmanager
def _settings_kept(*modules: str) -> Iterator[None]:
    """The caller's environment variables, logging levels and warning filters, as they were, after the
    block: the harness sets MLflow's variables and quiets MLflow and Optuna for its own work only.

    ``modules``: libraries the block imports anyway, imported first, so that their own logging set-up
    at import (``import mlflow`` configures its logger) is what stays, as after the caller's own import.
    """
    environ = dict(os.environ)
    for module in modules:
        importlib.import_module(module)
    levels = {name: (logger.level, logger.disabled) for name, logger in _loggers()}
    try:
        with warnings.catch_warnings():
            yield
    finally:
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        for name, value in environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        for name, logger in _loggers():
            if name in levels and (logger.level, logger.disabled) != levels[name]:
                logger.setLevel(levels[name][0])
                logger.disabled = levels[name][1]


def _loggers() -> Iterator[tuple[str, logging.Logger]]:
    yield "", logging.getLogger()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            yield name, logger


@dataclass
class StudyRecords:
    """A swept study as its records hold it (``load_study``).

    Attributes
    ----------
    name : str
        The study's name (its MLflow experiment).
    summary : pandas.DataFrame
        One row per condition, what ``harness compare`` prints: best settings, test accuracy and its
        95% interval, ``seeds_reached_target`` of ``seeds_confirmed`` seeds, ... (docs/results.md).
    pairs : pandas.DataFrame
        Paired differences of test accuracy between conditions, with their tests (docs/statistics.md).
    trials : pandas.DataFrame
        One row per run that counts (search trials, confirmation seeds): ``run_id``, ``experiment_id``,
        ``status``, ``start_time``, ``end_time``, ``condition``, ``phase``, ``trial``, ``seed``, ... then
        ``metrics.*``, ``params.*`` and ``tags.*`` as ``mlflow.search_runs`` names them.
    parents : dict of str to str
        Condition -> the run id of its parent run.
    analysis : harness.analysis.comparisons.Analysis or None
        Every statistic of the comparison (budget curves, effects, ranks, findings).

    Examples
    --------
    >>> study = harness.load_study("quickstart")  # doctest: +SKIP
    >>> study.trials.groupby("condition")["metrics.test_accuracy"].mean()  # doctest: +SKIP
    """

    name: str
    summary: pd.DataFrame
    pairs: pd.DataFrame
    trials: pd.DataFrame
    parents: dict[str, str] = field(default_factory=dict)
    _recorder: Any = None
    analysis: Analysis | None = None

    @property
    def findings(self) -> list[Any]:
        """The comparison in sentences, each with its evidence (``Finding`` objects; [] without records)."""
        return self.analysis.findings if self.analysis else []

    @property
    def budget_curves(self) -> dict[str, list[float]]:
        """Condition -> expected best validation score after k = 1..n search trials (Dodge et al. 2019)."""
        return self.analysis.budget_curves if self.analysis else {}

    def curves(self, *keys: str, phase: str = "confirm") -> pd.DataFrame:
        """Per-epoch values of metrics of the study's runs.

        Parameters
        ----------
        *keys : str
            Metric names (``val_accuracy``, ``train_loss``, ...); none: ``val_accuracy``.
        phase : {"confirm", "search", "all"}
            The runs: confirmation seeds, search trials, or both.

        Returns
        -------
        pandas.DataFrame
            One row per run, key and epoch: ``run_id``, ``condition``, ``phase``, ``trial``, ``seed``,
            ``epoch`` (nullable Int64, from 1), ``key``, ``value`` (float64).

        Examples
        --------
        >>> curves = study.curves("val_accuracy")  # doctest: +SKIP
        >>> curves.groupby(["condition", "epoch"])["value"].mean().unstack(0)  # doctest: +SKIP
        """
        if phase not in ("confirm", "search", "all"):
            raise ValueError(f"phase={phase!r} is not allowed; choose 'confirm', 'search' or 'all'")
        columns = ["run_id", "condition", "phase", "trial", "seed", "epoch", "key", "value"]
        runs = self.trials if phase == "all" else self.trials[self.trials["phase"] == phase]
        rows = []
        with _settings_kept():
            from .records.table import Curves

            curve = Curves(self._recorder)
            for run in runs.itertuples():
                for key in keys or ("val_accuracy",):
                    for epoch, value in enumerate(curve(run.run_id, key), start=1):
                        rows.append([run.run_id, run.condition, run.phase, run.trial, run.seed, epoch, key, value])
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"trial": "Int64", "seed": "Int64", "epoch": "Int64", "value": "float64"})


def load_study(name: str, tracking_uri: str | None = None) -> StudyRecords:
    """The records of a swept study, as DataFrames.

    Parameters
    ----------
    name : str
        The study's name (``name`` in its study file).
    tracking_uri : str, optional
        The MLflow tracking store, as ``--tracking-uri`` takes it; default ``$MLFLOW_TRACKING_URI``, else
        ``./mlruns``.

    Returns
    -------
    StudyRecords
        ``.summary``, ``.pairs``, ``.trials``, ``.curves()``, ``.findings``, ``.budget_curves``.

    Raises
    ------
    harness.common.errors.HarnessError
        When the store does not exist or cannot be opened.

    Examples
    --------
    >>> import harness
    >>> study = harness.load_study("quickstart")  # doctest: +SKIP
    >>> study.summary[["condition", "test_accuracy_mean", "seeds_reached_target"]]  # doctest: +SKIP
    """
    with _settings_kept("mlflow"):  # the modules' own imports (threadpoolctl sets a variable) included
        from .analysis.comparisons import analyze
        from .analysis.study_comparison import recorded_study
        from .records import table as records
        from .records.recorder import InlineRecorder
        from .records.store import check_exists, resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        check_exists(uri, f"study {name!r}")
        recorder = InlineRecorder(uri)
        _, runs = recorder.call("study_runs", name)
        frame = records.records_frame(runs)
        study = recorded_study(recorder, name, frame)
        frame = records.fill_targets(recorder, study, frame)
        search, confirm = records.current(study, frame)
        trials = records.trials_table(pd.concat([search, confirm], ignore_index=True), runs)
        analysis = analyze(study, frame)
    summary, pairs = _typed_summary(analysis.table), _typed_pairs(analysis.pairs)
    return StudyRecords(name, summary, pairs, trials, records.parents(frame), recorder, analysis)


def run_sweep(
    study_file: str | os.PathLike[str],
    tracking_uri: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    *,
    trials: int | None = None,
    epochs: int | None = None,
    confirm_seeds: int | None = None,
    stack: int | None = None,
) -> SweepResult:
    """Run (or resume) a study file, as ``harness sweep`` does.

    Parameters
    ----------
    study_file : str or path
        The study's TOML file.
    tracking_uri : str, optional
        The MLflow tracking store (``--tracking-uri``); default ``$MLFLOW_TRACKING_URI``, else ``./mlruns``.
    storage : str, optional
        Optuna's storage (``--storage``); default a journal file beside the store.
    workers : int, default 1
        Processes that train at once (``--workers``).
    trials, epochs, confirm_seeds, stack : int, optional
        As the flags of the same names; none: the study file's.

    Returns
    -------
    harness.sweep.lifecycle.SweepResult
        ``.table`` (the summary, typed as ``StudyRecords.summary``), ``.plan.parent_runs``, ``.stats``.

    Examples
    --------
    >>> result = harness.run_sweep("studies/quickstart.toml", trials=4)  # doctest: +SKIP
    >>> result.table[["condition", "test_accuracy_mean"]]  # doctest: +SKIP
    """
    with _settings_kept("optuna"):
        from .records.store import resolve_tracking_uri
        from .studies.parse import read_study
        from .studies.study import resolve
        from .sweep.lifecycle import SweepOptions, sweep_study

        study = resolve(read_study(study_file), trials=trials, epochs=epochs, confirm_seeds=confirm_seeds, stack=stack)
        options = SweepOptions(tracking_uri=resolve_tracking_uri(tracking_uri), storage=storage, workers=workers)
        result = sweep_study(study, options)
    return dataclasses.replace(result, table=_typed_summary(result.table))


@dataclass
class TrainedRun:
    """One trained and recorded network (``train``).

    Attributes
    ----------
    run_id : str
        Its MLflow run.
    status : str
        How training ended: ``complete``, ``diverged``, ...
    metrics : dict of str to float
        Final values: test accuracy, epochs run, ...
    history : pandas.DataFrame
        One row per epoch (index ``epoch`` from 1), one column per curve.
    """

    run_id: str
    status: str
    metrics: dict[str, float]
    history: pd.DataFrame


def train(tracking_uri: str | None = None, experiment: str = "train", **settings: Any) -> TrainedRun:
    """Train and record one network, as ``harness train`` does.

    Parameters
    ----------
    tracking_uri : str, optional
        The MLflow tracking store; default ``$MLFLOW_TRACKING_URI``, else ``./mlruns``.
    experiment : str, default "train"
        The MLflow experiment the run goes to.
    **settings
        As ``harness train``'s flags (``dataset="iris"``, ``lr=0.1``, ``hidden=[32]``, ...); a custom
        method's own as ``method_settings={"focal_gamma": 1.5}``.

    Returns
    -------
    TrainedRun
        ``.run_id``, ``.status``, ``.metrics``, ``.history``.

    Examples
    --------
    >>> run = harness.train(dataset="iris", loss="mse", epochs=20)  # doctest: +SKIP
    >>> run.metrics["test_accuracy"], run.history["val_accuracy"].iloc[-1]  # doctest: +SKIP
    """
    with _settings_kept():
        from .engine.config import check_methods, make_config
        from .engine.data import load_split
        from .engine.training import check_memory
        from .records.recorder import RecorderProcess
        from .records.runs import outcome_metrics, train_and_record
        from .records.store import check_server, check_writable, resolve_tracking_uri

        config = make_config(settings)
        check_methods(config)
        uri = resolve_tracking_uri(tracking_uri)
        check_server(uri)
        check_writable(uri)
        with RecorderProcess(uri) as recorder:
            split = load_split(config)
            check_memory(config, split)
            run_id, result, _ = train_and_record(config, split, recorder, experiment)
    history = pd.DataFrame(result.history)
    history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
    return TrainedRun(run_id, result.status, outcome_metrics(result), history)


# --- the tables' types ----------------------------------------------------------------------------------------
COUNT_COLUMNS = {"val_rows", "test_rows", "seeds_needed", "seeds_for_equivalence"}
"""Counts the analysis holds as floats (NaN: unknown) or None (not computed): nullable Int64."""
FLOAT_COLUMNS = {"ci_low", "ci_high", "p_value", "p_holm", "p_equivalence", "p_equivalence_holm", "detectable"}
"""Statistics that are None when not computed (fewer than 3 seeds): float64, NaN."""


def _typed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as the notebook gets it: ``target_reached`` ("4/5") as two counts,
    ``seeds_reached_target`` and ``seeds_confirmed``, and every column in its type (``_typed``)."""
    from .analysis.study_comparison import reached_as_counts

    return _typed(reached_as_counts(table))


def _typed_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The paired comparisons with their statistics as float64 (NaN: not computed) and counts as Int64."""
    return _typed(pairs)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Known counts as nullable Int64, known statistics as float64, and any other column of Python objects
    typed by its values (all numbers: Int64 or float64; all booleans: boolean); text stays text."""
    table = table.copy()
    for name in table.columns:
        column = table[name]
        if name in COUNT_COLUMNS:
            table[name] = pd.to_numeric(column, errors="coerce").astype("Int64")
        elif name in FLOAT_COLUMNS:
            table[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        elif column.dtype == object:
            table[name] = _by_values(column)
    return table


def _by_values(column: pd.Series) -> pd.Series:
    known = column.dropna()
    if not len(known):
        return column
    if known.map(lambda v: isinstance(v, bool)).all():
        return column.astype("boolean")
    if known.map(lambda v: isinstance(v, int) and not isinstance(v, bool)).all():
        return column.astype("Int64")
    if known.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
        return column.astype("float64")
    return column
