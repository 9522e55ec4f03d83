"""The harness from Python (a notebook): the same work as the commands, results as pandas DataFrames.

    import harness
    study = harness.load_study("quickstart")          # a finished sweep, read from ./mlruns
    study.summary                                      # one row per condition (what `compare` prints)
    study.curves("val_accuracy")                       # per-epoch values of every confirmation run
    harness.run_sweep("studies/quickstart.toml", trials=4)
    harness.train(dataset="iris", loss="mse", epochs=20)

Importing ``harness`` imports none of this (nor mlflow, optuna or scikit-learn) until it is used, and
changes no global setting of any library.
"""

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class StudyRecords:
    """A study as its records hold it."""

    name: str
    summary: pd.DataFrame  # one row per condition: best settings, test accuracy and its interval, ...
    pairs: pd.DataFrame  # paired differences of test accuracy between conditions
    trials: pd.DataFrame  # one row per run that counts (search trials, confirmation seeds)
    parents: dict = field(default_factory=dict)  # condition -> parent run id
    _recorder: object = None
    analysis: object = None  # analysis.Analysis: budget_curves, effects, ranks, findings

    @property
    def findings(self):
        """The comparison in sentences, each with its evidence."""
        return self.analysis.findings if self.analysis else []

    @property
    def budget_curves(self):
        """condition -> expected best validation score after k = 1..n search trials (Dodge et al. 2019)."""
        return self.analysis.budget_curves if self.analysis else {}

    def curves(self, *keys, phase="confirm"):
        """Per-epoch values of ``keys`` (default val_accuracy) of the runs of ``phase`` ("confirm",
        "search" or "all"), one row per run and epoch: run_id, condition, trial, seed, epoch, key, value."""
        from .records.table import Curves

        curve = Curves(self._recorder)
        runs = self.trials if phase == "all" else self.trials[self.trials["phase"] == phase]
        rows = []
        for run in runs.itertuples():
            for key in keys or ("val_accuracy",):
                for epoch, value in enumerate(curve(run.run_id, key), start=1):
                    rows.append(
                        {
                            "run_id": run.run_id,
                            "condition": run.condition,
                            "phase": run.phase,
                            "trial": run.trial,
                            "seed": run.seed,
                            "epoch": epoch,
                            "key": key,
                            "value": value,
                        }
                    )
        return pd.DataFrame(rows, columns=["run_id", "condition", "phase", "trial", "seed", "epoch", "key", "value"])


def load_study(name, tracking_uri=None):
    """The records of a swept study (``tracking_uri``: as ``--tracking-uri``; default ./mlruns)."""
    from .analysis.compare import recorded_study
    from .analysis.comparisons import analyze
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
    trials = pd.concat([search, confirm], ignore_index=True)
    analysis = analyze(study, frame)
    return StudyRecords(name, analysis.table, analysis.pairs, trials, records.parents(frame), recorder, analysis)


def run_sweep(study_file, tracking_uri=None, storage=None, workers=1, **flags):
    """Run (or resume) a study file as ``harness sweep`` does; ``flags``: trials, epochs, confirm_seeds,
    stack. Returns the SweepResult: ``.table`` (the summary), ``.plan.parent_runs``, ``.stats``."""
    from .records.store import resolve_tracking_uri
    from .studies.parse import load_study as read_study
    from .studies.study import resolve
    from .sweep.lifecycle import SweepOptions
    from .sweep.lifecycle import run_sweep as sweep

    study = resolve(read_study(study_file), **flags)
    return sweep(study, SweepOptions(tracking_uri=resolve_tracking_uri(tracking_uri), storage=storage, workers=workers))


@dataclass
class TrainedRun:
    run_id: str
    status: str
    metrics: dict  # final values (test accuracy, epochs run, ...)
    history: pd.DataFrame  # one row per epoch, one column per curve


def train(tracking_uri=None, experiment="train", **settings):
    """Train and record one network as ``harness train`` does; ``settings`` as its flags (lr=0.1, ...), a
    custom method's own as ``method_settings={"focal_gamma": 1.5}``."""
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
