"""One training run as one MLflow run: what it records, built the same way for every kind of run.

``harness train``, a sweep's search trials and confirmation seeds, a re-run of a trial whose record
was lost, and ``harness reproduce`` all go through here: the params, the curves as metric points at
each epoch's own time, the final values, the artifacts (config to rebuild it, weights to predict with,
plots for single runs). The writing itself is a recorder's (``recorder``); nothing here imports
mlflow, so the same record can be written in this process or in a recorder process.
"""

import io
import json
import time
from pathlib import Path

import numpy as np

from ..engine.data import model_example
from ..engine.methods import custom_modules, loaded_source, method_digests
from ..engine.training import DIVERGED, train_model
from .notes import NOTE_TAG, escape
from .provenance import DIFF_ARTIFACT, MAX_DIFF_BYTES, blas_info, code_diff, provenance_tags, source_tags
from .quality import quality_records
from .recorder import Ref
from .tags import (
    BEST_SEARCH_TRIAL,
    BLAS_THREADS,
    CLASSES,
    CONDITION,
    DATASET_DIGEST,
    ERROR,
    KIND,
    OPTUNA_STUDY,
    OPTUNA_TRIAL,
    RERUN,
    SEARCH_ID,
    STATE,
    TEST_ROWS,
    VAL_ROWS,
)

CONFIG_ARTIFACT = "config.json"
WEIGHTS_ARTIFACT = "weights.npz"
FINAL_STATES = ("complete", "pruned", "diverged", "stopped")
"""A run whose ``harness.state`` tag is one of these holds its results (the tag is written last)."""


EXECUTION = ("blas_threads",)
"""Settings of how a run is executed, not of what it learns: tags (``tags.BLAS_THREADS``), not params."""


def config_params(config):
    """The run's params: the settings that affect it (``TrainConfig.applicable``) but how it is executed
    (``EXECUTION``); config.json holds all."""
    return {k: param_text(v) for k, v in config.applicable().items() if k not in EXECUTION}


def param_text(value):
    """A setting as a param's text, the same on a run and on its parent: a list as ``64,32`` (not ``[64, 32]``)."""
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else value


def save_weights(network, path, split):
    """Final weights as plain arrays in an .npz (``path`` may be a file object); loads without pickle.
    The feature scaling fitted on the training split goes along, so raw rows can be predicted."""
    arrays = {f"weight_{i}": w for i, w in enumerate(network.weights)}
    arrays.update({f"bias_{i}": b for i, b in enumerate(network.biases)})
    if split.scaler_mean is not None:
        arrays.update(scaler_mean=split.scaler_mean, scaler_scale=split.scaler_scale)
    if split.feature_names:  # predict matches a CSV's columns by these names, not by their order
        arrays.update(features=np.array(split.feature_names, dtype=str))
    np.savez(path, classes=np.array(split.classes, dtype=str), **arrays)


THIS_CHECKOUT = "this checkout"


def run_artifacts(config, split, result, plots=True, diff=THIS_CHECKOUT):
    """A run's files as {name: bytes}: the config to re-run it, the code's uncommitted change (``diff``:
    the one the run was trained with, by default this checkout's), the final weights (unless it diverged)
    and, for single runs, the curve and test-split confusion-matrix plots."""
    artifacts = {CONFIG_ARTIFACT: config.to_json().encode(), **method_artifacts(config)}
    diff = code_diff() if diff is THIS_CHECKOUT else diff
    if diff is not None and len(diff) <= MAX_DIFF_BYTES:  # the code state beside the commit tag
        artifacts[DIFF_ARTIFACT] = diff
    if result.status != DIVERGED:
        buffer = io.BytesIO()
        save_weights(result.network, buffer, split)
        artifacts[WEIGHTS_ARTIFACT] = buffer.getvalue()
    if plots:
        from sklearn.metrics import confusion_matrix

        from .plots import confusion_png, curves_png

        curves = io.BytesIO()
        curves_png(result.history, curves, config.run_name())
        artifacts["curves.png"] = curves.getvalue()
        if result.status != DIVERGED:
            predicted = result.network.logits(split.x_test).argmax(axis=1)
            matrix = confusion_matrix(split.y_test, predicted, labels=range(split.n_classes))
            confusion = io.BytesIO()
            confusion_png(matrix, split.classes, confusion, "test split confusion matrix")
            artifacts["confusion_matrix.png"] = confusion.getvalue()
    return artifacts


def outcome_metrics(result):
    metrics = {"epochs_run": result.epochs_run}
    if result.status == DIVERGED:
        metrics["diverged_epoch"] = result.diverged_epoch
        if result.last_finite_loss is not None:
            metrics["last_finite_loss"] = result.last_finite_loss
    metrics.update(result.final)
    return metrics


def _ms(seconds):
    return int(seconds * 1000)


def epoch_points(result, first=0, keys=None):
    """Per-epoch curves (of ``keys``, default all) from epoch ``first + 1`` on, each point at the time its
    epoch ended."""
    now = time.time()
    points = []
    for key, values in result.history.items():
        if keys is not None and key not in keys:
            continue
        for epoch in range(first, len(values)):
            moment = result.epoch_times[epoch] if epoch < len(result.epoch_times) else now
            points.append((key, float(values[epoch]), _ms(moment), epoch + 1))
    return points


def final_points(result, extra=None):
    """Final values at the last epoch's step (validation values that are curves hold that epoch's already)."""
    moment = _ms(result.epoch_times[-1] if result.epoch_times else time.time())
    final = {k: v for k, v in outcome_metrics(result).items() if k not in result.history}
    final.update(extra or {})
    return [(k, float(v), moment, result.epochs_run) for k, v in final.items()]


def result_points(result, extra=None, keys=None):
    return epoch_points(result, keys=keys) + final_points(result, extra)


def lean_curves(config, objective):
    """The curves a search trial records by default: what its tuning is judged on (the objective) and
    what a reader checks first (train loss, its own loss and accuracy on validation). The diagnostics
    (norms, saturation, the other losses as yardsticks, the schedule's lr) are a confirmation run's, or
    every run's with ``[record] search_curves = "all"``: they were two thirds of a trial's recording."""
    return {"train_loss", "val_accuracy", f"val_{config.loss}", objective}


def dataset_input(config, split):
    """The data set a run trains on, as an MLflow dataset input (its digest names exactly the arrays)."""
    name = Path(config.csv).name if config.dataset == "csv" and config.csv else config.dataset
    source = (
        {"uri": str(config.csv)}
        if config.dataset == "csv"
        else {"loader": f"harness.engine.data.LOADERS[{config.dataset!r}]"}
    )
    source_type = "local" if config.dataset == "csv" else "code"
    profile = {
        "num_rows": len(split.y_train) + len(split.y_val) + len(split.y_test),
        "train_rows": len(split.y_train),
        "features": split.n_features,
        "classes": split.n_classes,
        "data_seed": config.data_seed,
    }
    return {
        "name": name,
        "digest": split.digest[:36],
        "source_type": source_type,
        "source": json.dumps(source),
        "profile": profile,
    }


def model_spec(config, split):
    """What a run's MLflow model is logged with: its input columns, a few rows, and the data set its test
    scores are linked with (the run's dataset input)."""
    dataset = dataset_input(config, split)
    return {**model_example(split), "dataset": (dataset["name"], dataset["digest"])}


def run_tags(kind, config, split, **tags):
    """What every run carries besides its params (the seed and data set are params, not tags too): its
    kind, the digest of the data it saw, its BLAS threads, how to rebuild the code and machine state, and
    the sha256 of each custom method's module (``harness.method.<module>``); the number of classes and of
    validation and test rows, which the comparison needs (chance accuracy of a diverged seed, ties within
    one validation example, the test rows' sampling error)."""
    methods = {METHOD_TAG + name: digest for name, digest in method_digests(config).items()}
    sizes = {CLASSES: split.n_classes, VAL_ROWS: len(split.y_val), TEST_ROWS: len(split.y_test)}
    regime = regime_tags(config, split)
    execution = {BLAS_THREADS: config.blas_threads}
    own = {KIND: kind, STATE: "running", DATASET_DIGEST: split.digest, **sizes, **execution}
    return {**own, **regime, **methods, **tags}


def regime_tags(config, split):
    """Under label noise or imbalance, what the draw did: labels changed in training and validation, and
    training rows per class as trained on (nothing on a clean run)."""
    if not config.label_noise and config.imbalance == 1.0:
        return {}
    return {
        "harness.noisy_train_rows": split.noisy_train,
        "harness.noisy_val_rows": split.noisy_val,
        "harness.train_rows_per_class": ",".join(map(str, split.train_class_counts)),
    }


METHOD_TAG = "harness.method."
METHOD_FOLDER = "methods/"
"""A custom method's module source is logged as ``methods/<module>.py``, its sha256 in ``harness.method.<module>``."""


def method_artifacts(config):
    """{methods/<module>.py: source} of the custom loss and optimizer a config names."""
    return {f"{METHOD_FOLDER}{name}.py": loaded_source(path)[0] for name, path in custom_modules(config).items()}


def environment_tags(source=None):
    """Code version, package versions, BLAS and the run context (``source``: from the command that
    started the work; by default this process's): the same for every run of a process."""
    return {**provenance_tags(), "harness.blas": blas_info()["blas"], **(source or source_tags())}


class LiveRun:
    """A run whose curves stream to the recorder every ``flush_seconds`` while it trains (``harness
    train``, ``reproduce``): a long run shows its curves in the UI as they grow."""

    def __init__(self, recorder, run_ref, flush_seconds=2.0):
        self.recorder, self.run_ref, self.flush_seconds = recorder, run_ref, flush_seconds
        self._points, self._last = [], time.perf_counter()

    def log(self, epoch, metrics):
        moment = _ms(time.time())
        self._points.extend((key, float(value), moment, epoch) for key, value in metrics.items())
        if time.perf_counter() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self):
        if self._points:
            self.recorder.submit("log_points", self.run_ref, self._points)
            self._points, self._last = [], time.perf_counter()

    def fail(self, exc):
        """Training stopped with ``exc``: the run ends KILLED (Ctrl-C, SIGTERM) or FAILED, with the error."""
        self.flush()
        stopped = isinstance(exc, KeyboardInterrupt)
        self.recorder.submit(
            "end_run",
            self.run_ref,
            "KILLED" if stopped else "FAILED",
            {STATE: "interrupted" if stopped else "failed", ERROR: f"{type(exc).__name__}: {exc}"[:500]},
        )

    def finish(self, points, tags, artifacts, status="FINISHED", model=None, params=None):
        """The final values, tags, artifacts and model (``record_run``), then the run's end; returns the
        ticket of the record, whose outcome says whether the run holds its results."""
        self.flush()
        return self.recorder.submit("record_run", self.run_ref, points, tags, artifacts, model, params, status)


def request_run(recorder, experiment, run_name, config, split, tags):
    """The ticket of a run created (with its params and data set) in the named experiment."""
    params, dataset = config_params(config), dataset_input(config, split)
    return recorder.submit("start_run", experiment, recorder.uri, run_name, tags, params, dataset)


def train_and_record(
    config,
    split,
    recorder,
    experiment,
    tags=None,
    callbacks=(),
    include_test=True,
    on_epoch=None,
    run_name=None,
    state_names=None,
    trainer=train_model,
    code=None,
):
    """Train ``config`` on ``split`` and record it as one run; returns (run_id, TrainResult, timings).

    The run is created before training starts, so a store that cannot be written fails before any
    compute is spent. ``state_names`` renames result states for the ``state`` tag (a reproduced pruned
    trial is ``pruned``, as its original, not ``stopped``). ``trainer`` and ``code`` ({"tags", "diff"})
    are for training with other code than this process's (``rebuild``), recorded as that code's.
    """
    start = time.perf_counter()
    code = code or {}
    tags = run_tags("train", config, split, **{**environment_tags(), **code.get("tags", {}), **(tags or {})})
    create = request_run(recorder, experiment, run_name or config.run_name(), config, split, tags)
    run_id = recorder.result(create)
    live = LiveRun(recorder, Ref(create))

    def record(epoch, metrics):
        live.log(epoch, metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        return False

    train_start = time.perf_counter()
    try:
        result = trainer(config, split, callbacks=(record, *callbacks), include_test=include_test)
    except BaseException as exc:
        live.fail(exc)
        raise
    train_seconds = time.perf_counter() - train_start
    final_tags = {STATE: (state_names or {}).get(result.status, result.status)}
    artifacts = run_artifacts(config, split, result, diff=code.get("diff", THIS_CHECKOUT))
    if result.status != DIVERGED and include_test and result.network is not None:
        quality_tags, quality_artifacts = quality_records(result, split)
        final_tags.update(quality_tags)
        artifacts.update(quality_artifacts)
    ticket = live.finish(
        final_points(result, {"train_seconds": train_seconds}),
        final_tags,
        artifacts,
        model=None if result.status == DIVERGED else model_spec(config, split),
    )
    recorder.result(ticket)
    timings = {
        "total_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "recording_blocked_seconds": recorder.blocked_seconds,
    }
    return run_id, result, timings


def result_json(run_id, result, timings=None):
    from ..common.output import plain

    summary = {"run_id": run_id, "status": result.status, "metrics": outcome_metrics(result)}
    if timings:
        summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return json.dumps(plain(summary), allow_nan=False)


def seed_note(member, condition, study):
    """A confirmation seed's description: which of its numbers is which (its Optuna trial in the confirm
    study, the search trial whose settings it trains)."""
    return escape(
        f"Confirmation seed {member.config.seed} of condition {condition.name}: the settings of search trial "
        f"{member.best_search_trial} (harness.best_search_trial, the best of the search when confirmed), trained "
        f"again with this seed and scored on the test split. harness.optuna_trial {member.number} is this run's "
        f"trial in the Optuna study {study.optuna_name(condition, 'confirm')}."
    )


class TrialRuns:
    """The MLflow runs of a sweep worker's trials: each created when its stack starts training, written
    when it ends, and checked before the next stack (a failed write stops the worker)."""

    def __init__(self, recorder, study, plan, base_tags):
        self.recorder, self.study, self.plan, self.base_tags = recorder, study, plan, base_tags
        self._pending = []  # (ticket of the record, ticket of the run) not yet confirmed

    def start(self, member, split, start_time=None):
        """The run of a trial about to train, nested under its condition's parent; returns the ticket
        that stands for its id. Its start is now (``start_time``, ms, if training began before), not when
        the recorder gets to it: by then its first epochs may be over, and their points would precede it."""
        condition = member.studies.condition
        name = (
            f"t{member.number:03d}-{condition.name}"
            if member.phase == "search"
            else f"seed{member.config.seed}-{condition.name}"
        )
        tags = {
            **self.base_tags,
            **run_tags(member.phase, member.config, split),
            CONDITION: condition.name,
            OPTUNA_TRIAL: member.number,
            OPTUNA_STUDY: self.study.optuna_name(condition, member.phase),
            "mlflow.parentRunId": self.plan.parent_runs[condition.name],
        }
        if condition.name in self.study.search_ids:
            tags[SEARCH_ID] = self.study.search_ids[condition.name]
        if member.best_search_trial is not None:
            tags[BEST_SEARCH_TRIAL] = member.best_search_trial
            tags[NOTE_TAG] = seed_note(member, condition, self.study)
        if member.is_rerun:
            tags[RERUN] = "true"
        dataset = dataset_input(member.config, split)  # every run's: the UI's Dataset column and filter
        params = {} if self.lean(member.phase) else config_params(member.config)  # lean: with the results
        return self.recorder.submit(
            "create_run", self.plan.experiment_id, name, tags, params, dataset, start_time or _ms(time.time())
        )

    def lean(self, phase):
        """Whether a run of ``phase`` is recorded lean (``lean_curves``): a search trial, unless the study
        asks for every curve."""
        return phase == "search" and self.study.search_curves == "lean"

    def run_id(self, create):
        return self.recorder.result(create)

    def finish(self, create, config, split, result, tags, counted=True, with_model=False, phase="search"):
        """Curves, artifacts and final tags, then the run's end: FINISHED when the trial counts, else
        FAILED ``state=killed`` (another worker took the trial over). A search trial's curves are lean
        unless the study asks for all (``lean_curves``); a confirmation run adds its probability quality."""
        lean = self.lean(phase)
        artifacts = run_artifacts(config, split, result, plots=False)
        if phase == "confirm" and result.status != DIVERGED:
            quality_tags, quality_artifacts = quality_records(result, split)
            tags, artifacts = {**tags, **quality_tags}, {**artifacts, **quality_artifacts}
        record = self.recorder.submit(
            "record_run",
            Ref(create),
            result_points(result, keys=lean_curves(config, self.study.objective) if lean else None),
            tags,
            artifacts,
            model_spec(config, split) if with_model and result.status != DIVERGED else None,
            config_params(config) if lean else None,
            "FINISHED" if counted else None,  # ended only once everything is stored
        )
        if not counted:
            self.recorder.submit("end_run", Ref(create), "FAILED", {STATE: "killed"})
        self._pending.append((record, create))

    def end(self, create, status, tags):
        self.recorder.submit("end_run", Ref(create), status, tags)

    def check(self, block=False):
        """Raise RecordingError if a write failed (``block``: wait for every write handed over)."""
        from ..common.errors import DiskFullError, RecordingError

        failed = None
        for record, create in list(self._pending):
            outcome = self.recorder.outcome(record)
            if outcome is None and block:
                try:
                    self.recorder.result(record)
                except RecordingError:
                    pass
                outcome = self.recorder.outcome(record)
            if outcome is None:
                continue
            self._pending.remove((record, create))
            if outcome[0] == "error":
                failed = failed or outcome[1]
                self.end(create, "FAILED", {STATE: "unrecorded", ERROR: outcome[1][1][:500]})
        if failed and failed[0] == "disk":
            raise DiskFullError(failed[1])
        if failed:
            failed = failed[1]
            raise RecordingError(
                f"recording a run failed ({failed}); running the same command again re-runs "
                "what was not recorded and resumes the sweep"
            )
