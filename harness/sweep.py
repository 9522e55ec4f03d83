"""A study sweep: search every condition's nuisance settings, confirm the winners on the test split.

The command that starts a sweep prepares everything shared (Optuna studies, the MLflow experiment and
one parent run per condition, clean-up of what a killed sweep left behind), then starts the workers.
A worker repeatedly takes the next piece of work from the storage: a search trial of a condition with
budget left, else a confirmation seed of a condition whose search is done. Every trial and every
confirmation is one nested MLflow run, written by the worker's recorder process while it trains on.
"""
import math
import os
import queue
import time
from dataclasses import dataclass, field

from .data import load_split
from .locks import preparing
from .provenance import blas_info, provenance_tags
from .recorded import config_params, outcome_metrics, run_artifacts
from .search import (DEFAULT_HEARTBEAT_SECONDS, ConditionStudies, Heartbeat, StackPruning, open_storage,
                     prepare_studies, set_parent_run, trial_rows)
from .search import storage_url as resolve_storage_url
from .tracking import (HARNESS_TAG, RecorderProcess, check_server, end_run, ensure_experiment, open_client,
                       parent_run, running_runs)
from .train import COMPLETE, DIVERGED, SHARED, STOPPED, epochs_to_target, max_stack, train_stack
from .urls import redact

STATES = {COMPLETE: "complete", STOPPED: "pruned", DIVERGED: "diverged"}
ORPHAN_SECONDS = 30
"""A run still RUNNING this long after its worker told Optuna the trial's end lost its worker (a live
recorder ends a run within a second or two; should a slow one end it later, its end wins)."""
DATA_KEYS = ("dataset", "csv", "label_column", "n_samples", "val_fraction", "test_fraction", "data_seed",
             "dtype")


@dataclass
class WorkerStats:
    trials: int = 0
    confirms: int = 0
    train_seconds: float = 0.0
    optuna_seconds: float = 0.0
    optuna_in_training_seconds: float = 0.0
    mlflow_blocked_seconds: float = 0.0
    wall_seconds: float = 0.0
    epochs: int = 0


@dataclass
class SweepPlan:
    """What every worker needs to know; plain data, so it crosses into worker processes."""
    study_path: str
    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_runs: dict
    budget: int
    stack: int = 1
    extra_tags: dict = field(default_factory=dict)
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS


class _Timer:
    def __init__(self, stats, attr):
        self.stats, self.attr = stats, attr

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        setattr(self.stats, self.attr, getattr(self.stats, self.attr) + time.perf_counter() - self.start)


class SweepWorker:
    def __init__(self, study, plan, index=0, on_progress=None, recorder=None):
        self.study, self.plan, self.index, self.on_progress = study, plan, index, on_progress
        self.stats = WorkerStats()
        storage, _ = open_storage(plan.storage_url, study.name, plan.heartbeat_seconds)
        self.heartbeat = Heartbeat(storage)
        with _Timer(self.stats, "optuna_seconds"):
            self.conditions = [ConditionStudies(study, condition, storage, plan.budget, index * 7919 + i * 104729,
                                                self.heartbeat) for i, condition in enumerate(study.conditions)]
        self.recorder = recorder or RecorderProcess(plan.tracking_uri)
        self.splits = {}
        self.base_tags = {**provenance_tags(), "blas": blas_info()["blas"], "study": study.name,
                          **plan.extra_tags}
        self._current = []
        self._reaped_at = -math.inf

    def split_for(self, config):
        key = tuple(getattr(config, k) for k in DATA_KEYS)
        if key not in self.splits:
            self.splits[key] = load_split(config)
        return self.splits[key]

    def run(self):
        start = time.perf_counter()
        try:
            while True:
                with _Timer(self.stats, "optuna_seconds"):
                    # dead workers' trials: looked for once per heartbeat (a few queries per condition)
                    if time.perf_counter() - self._reaped_at >= self.plan.heartbeat_seconds:
                        for studies in self.conditions:
                            studies.reap_stale()
                        self._reaped_at = time.perf_counter()
                    task = self.next_task()
                if task is None:
                    break
                if task == "wait":  # other workers hold the last trials (or a dead one does, until reaped)
                    time.sleep(0.2)
                else:
                    phase, studies = task
                    (self.search_trial if phase == "search" else self.confirm_trial)(studies)
                if self.on_progress:
                    self.on_progress()
        except KeyboardInterrupt:
            self._abandon_current()
            raise
        finally:
            self.heartbeat.close()
            self.recorder.close()
            self.stats.mlflow_blocked_seconds = self.recorder.blocked_seconds
            self.stats.wall_seconds = time.perf_counter() - start
        return self.stats

    def next_task(self):
        shift = self.index % len(self.conditions)
        order = self.conditions[shift:] + self.conditions[:shift]
        for studies in order:
            if studies.search_remaining() > 0:
                return "search", studies
        finished = [s for s in order if s.search_finished()]
        for studies in finished:
            if studies.confirm_waiting() > 0:
                return "confirm", studies
        if len(finished) == len(order) and all(s.confirm_finished() for s in order):
            return None
        return "wait"

    # --- search: a stack of trials ----------------------------------------------------------------
    def search_trial(self, studies):
        """Ask up to ``stack`` trials of one condition and train them as one stack."""
        study = self.study
        members = []
        with _Timer(self.stats, "optuna_seconds"):
            for _ in range(max(1, min(self._stack_size(studies), studies.search_remaining()))):
                trial, params = studies.ask_search()
                if trial is None:
                    break
                members.append(_Member(trial, study.config_for(studies.condition, params, study.search_seed)))
        checks_from = study.pruner_warmup_epochs + 1 if study.pruner == "median" else 1
        worst = -math.inf if study.direction == "maximize" else math.inf
        for group in _stackable(members):
            pruning = StackPruning(studies.search)

            def report(t, epoch, metrics, group=group, pruning=pruning):
                with _Timer(self.stats, "optuna_seconds"), _Timer(self.stats, "optuna_in_training_seconds"):
                    # the median pruner never prunes inside its warm-up: skip the storage round trip
                    return pruning.report(group[t].trial, epoch, metrics[study.objective], epoch >= checks_from)

            # without a pruner nothing reads the per-epoch values (the curves are in MLflow): no writes
            callbacks = () if study.pruner == "none" else (report,)
            results = self._train_group(studies, "search", group, callbacks, include_test=False)
            for member, result in zip(group, results or ()):
                state = STATES[result.status]
                value = result.history[study.objective][-1] if state == "complete" else worst
                attrs = {"epochs_run": result.epochs_run}
                if state == "pruned":
                    attrs["pruned_epoch"] = result.epochs_run
                if state == "diverged":
                    attrs["diverged_epoch"] = result.diverged_epoch
                if member.trial.number in pruning.taken_away:
                    state = "killed"
                self._finish(member, studies, "search", state, value, attrs, result)
                self.stats.trials += 1

    # --- confirmation: a stack of seeds ------------------------------------------------------------
    def confirm_trial(self, studies):
        study = self.study
        asked = []
        with _Timer(self.stats, "optuna_seconds"):
            best = studies.best_trial()
            for _ in range(max(1, min(self._stack_size(studies), studies.confirm_waiting()))):
                trial, seed = studies.ask_confirm()
                if trial is None:
                    break
                asked.append((trial, seed))
            if not asked:  # another worker took the last seeds first
                return
            if best is None:  # every search trial diverged or failed: nothing to confirm
                for trial, seed in asked:
                    studies.finish("confirm", trial, "skipped", -math.inf, {"seed": seed})
                return
        members = [_Member(trial, study.config_for(studies.condition, best.params, seed), best.number)
                   for trial, seed in asked]
        results = self._train_group(studies, "confirm", members, (), include_test=True)
        for member, result in zip(members, results or ()):
            attrs = {"seed": member.config.seed, "best_search_trial": best.number,
                     "epochs_run": result.epochs_run,
                     "epochs_to_target": epochs_to_target(result.history, study.target_accuracy)}
            attrs.update({k: v for k, v in result.final.items() if k.startswith("test_")})
            if result.history.get(study.objective):
                attrs["val_objective"] = result.history[study.objective][-1]
            value = result.final.get("test_accuracy", -math.inf)
            self._finish(member, studies, "confirm", STATES[result.status], value, attrs, result)
            self.stats.confirms += 1

    # --- shared steps ------------------------------------------------------------------------------
    def _stack_size(self, studies):
        """The study's stack size, capped so a stack's memory stays within 2 GiB (large data sets)."""
        config = self.study.config_for(studies.condition, {p.name: p.choices[0] if p.choices else p.high
                                                           for p in self.study.search}, 0)
        return min(self.plan.stack, max_stack(config, self.split_for(config)))

    def _tags(self, studies, phase, member, split):
        config, number = member.config, member.trial.number
        tags = {**self.base_tags, HARNESS_TAG: phase, "condition": studies.condition.name, "phase": phase,
                "trial": number, "state": "running", "seed": config.seed, "dataset": config.dataset,
                "dataset_digest": split.digest, "blas_threads": config.blas_threads,
                "optuna_study": self.study.optuna_name(studies.condition, phase, self.plan.budget),
                "mlflow.parentRunId": self.plan.parent_runs[studies.condition.name]}
        if member.best_search_trial is not None:
            tags["best_search_trial"] = member.best_search_trial
        return tags

    def _train_group(self, studies, phase, group, callbacks, include_test):
        """Start one MLflow run per member, train the group as one stack; None if training failed."""
        split = self.split_for(group[0].config)
        name = studies.condition.name
        for member in group:
            member.key = (phase, name, member.trial.number)
            run_name = f"{name}-t{member.trial.number:03d}" if phase == "search" else \
                f"{name}-confirm-s{member.config.seed}"
            self.recorder.start_run(member.key, self.plan.experiment_id, run_name, config_params(member.config),
                                    self._tags(studies, phase, member, split))
        self._current = [(member, studies, phase) for member in group]
        start, optuna_before = time.perf_counter(), self.stats.optuna_in_training_seconds
        try:
            results = train_stack([m.config for m in group], split, callbacks, include_test=include_test)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - failed trials are recorded; the study goes on
            self._end_current("failed", "FAILED", error=f"{type(exc).__name__}: {exc}")
            return None
        finally:  # training time without the pruning calls made from inside it (counted as Optuna's)
            self.stats.train_seconds += time.perf_counter() - start - \
                (self.stats.optuna_in_training_seconds - optuna_before)
        self.stats.epochs += sum(r.epochs_run for r in results)
        return results

    def _finish(self, member, studies, phase, state, value, attrs, result):
        with _Timer(self.stats, "mlflow_blocked_seconds"):
            run_id = self.recorder.run_id(member.key)
        with _Timer(self.stats, "optuna_seconds"):
            if state == "killed":  # another worker failed it as dead (late heartbeats) and runs it again
                studies.heartbeat.release(member.trial)
            elif not studies.finish(phase, member.trial, state, value, {**attrs, "mlflow_run_id": run_id}):
                state = "killed"
            status = "FAILED" if state == "killed" else "FINISHED"
        self._current = [c for c in self._current if c[0] is not member]
        now = int(time.time() * 1000)
        points = [(k, float(v), now, epoch)
                  for k, values in result.history.items() for epoch, v in enumerate(values, start=1)]
        final = {k: v for k, v in outcome_metrics(result).items() if not k.startswith("val_")}
        points += [(k, float(v), now, result.epochs_run) for k, v in final.items()]
        tags = {"state": state, **{k: v for k, v in attrs.items() if k.endswith("_epoch")}}
        artifacts = run_artifacts(member.config, self.split_for(member.config), result, plots=False)
        self.recorder.finish_run(run_id, points, tags, artifacts, status)

    def _end_current(self, state, status, error=None):
        current, self._current = self._current, []
        for member, studies, phase in current:
            run_id = self.recorder.run_id(member.key)
            attrs = {"mlflow_run_id": run_id, **({"error": error[:500]} if error else {})}
            studies.finish(phase, member.trial, state, attrs=attrs)
            self.recorder.finish_run(run_id, [], {"state": state, **({"error": error[:500]} if error else {})},
                                     {}, status)

    def _abandon_current(self):
        if self._current:
            try:
                self._end_current("interrupted", "KILLED")
            except Exception:  # noqa: BLE001 - the next start reaps what is left
                pass


class _Member:
    """One trial of a stack: its Optuna trial, its full settings, and later its MLflow run key."""

    def __init__(self, trial, config, best_search_trial=None):
        self.trial, self.config, self.best_search_trial, self.key = trial, config, best_search_trial, None


def _stackable(members):
    """Members grouped so that each group can train as one stack (searched batch sizes split them)."""
    groups = {}
    for member in members:
        groups.setdefault(repr([getattr(member.config, k) for k in SHARED]), []).append(member)
    return list(groups.values())


def _worker_process(study_path, plan, index, results):
    from .studies import load_study
    study = load_study(study_path)
    try:
        stats = SweepWorker(study, plan, index).run()
        results.put((index, stats, None))
    except KeyboardInterrupt:
        results.put((index, None, "interrupted"))
    except Exception as exc:  # noqa: BLE001 - reported by the coordinator
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
        raise


# --- the command that starts a sweep ---------------------------------------------------------------
def prepare(study, storage_url, tracking_uri, budget, stack=None, heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS):
    """Everything shared, made once before any worker starts; returns the plan and the client.

    Runs under the stores' lock: several commands (on several machines) may start one study at once.
    """
    check_server(tracking_uri)
    with preparing(resolve_storage_url(storage_url, study.name), tracking_uri):
        plan, client = _prepare(study, storage_url, tracking_uri, budget, stack, heartbeat_seconds)
    cleanup(study, plan, client)
    return plan, client


def _prepare(study, storage_url, tracking_uri, budget, stack, heartbeat_seconds):
    storage, storage_url = open_storage(storage_url, study.name, heartbeat_seconds)
    searches = prepare_studies(study, storage, study.settings_digest(), budget)
    client = open_client(tracking_uri)
    experiment_id = ensure_experiment(client, study.name, tracking_uri)
    parents = {}
    for condition in study.conditions:
        search = searches[condition.name]
        tags = {HARNESS_TAG: "condition", "study": study.name, "condition": condition.name,
                "phase": "condition", "objective": study.objective, "direction": study.direction,
                "target_accuracy": study.target_accuracy, "optuna_storage": redact(storage_url),
                "study_file": os.path.basename(study.path)}
        params = {**study.fixed, **condition.settings, "trials": budget, "sampler": study.sampler,
                  "pruner": study.pruner, "objective": study.objective, "confirm_seeds": study.confirm_seeds,
                  **{f"search.{p.name}": (p.choices if p.choices else f"[{p.low}, {p.high}]"
                                          + (" log" if p.log else "")) for p in study.search}}
        run_id = parent_run(client, experiment_id, search.user_attrs.get("mlflow_parent_run_id"),
                            condition.name, tags, params)
        if run_id != search.user_attrs.get("mlflow_parent_run_id"):
            set_parent_run(search, run_id)
        parents[condition.name] = run_id
    plan = SweepPlan(study.path, storage_url, tracking_uri, experiment_id, parents, budget,
                     stack or study.stack, heartbeat_seconds=heartbeat_seconds)
    return plan, client


def cleanup(study, plan, client, settle=False):
    """Fail the trials of dead workers (queued again) and end the MLflow runs their workers left.

    A RUNNING run is ended as FAILED (tag state=killed) when Optuna says its trial was failed by a
    reaper or a heartbeat. A run whose trial its worker ended is its recorder's to end; one still
    RUNNING ``ORPHAN_SECONDS`` after its trial ended lost its worker between telling Optuna and
    recording the run (tag state=orphaned). ``settle``: at the end of a sweep every trial has ended,
    so wait for such runs to end or to come of age, and leave none RUNNING. Returns how many it ended.
    """
    from .search import trial_state
    storage, _ = open_storage(plan.storage_url, study.name, plan.heartbeat_seconds)
    deadline, ended = time.time() + ORPHAN_SECONDS + 5, 0
    while True:
        trials = {}
        for condition in study.conditions:
            studies = ConditionStudies(study, condition, storage, plan.budget)
            studies.reap_stale()
            for optuna_study in (studies.search, studies.confirm):
                for t in optuna_study.get_trials(deepcopy=False):
                    trials[(optuna_study.study_name, str(t.number))] = t
        pending = 0
        for run_id, tags in running_runs(client, plan.experiment_id, study.name):
            trial = trials.get((tags.get("optuna_study"), tags.get("trial")))
            state = trial_state(trial) if trial else "unknown"
            if state in ("unknown", "running", "waiting"):
                continue
            if state == "killed":
                end_run(client, run_id, "killed", "FAILED")
            elif trial.datetime_complete and time.time() - trial.datetime_complete.timestamp() > ORPHAN_SECONDS:
                end_run(client, run_id, "orphaned", "FAILED")
            else:
                pending += 1
                continue
            ended += 1
        if not (settle and pending) or time.time() > deadline:
            return ended
        time.sleep(1.0)


def run_workers(study, plan, workers, on_poll=None, recorder=None):
    """Run ``workers`` workers: this process is worker 0, the others are spawned processes.

    ``recorder``: worker 0's RecorderProcess, started early so its one-off mlflow import overlaps
    the set-up instead of stalling the first trial.
    """
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_worker_process, args=(study.path, plan, i, results),
                                 name=f"sweep-worker-{i}") for i in range(1, workers)]
    for process in processes:
        process.start()
    try:
        stats = [SweepWorker(study, plan, 0, on_progress=on_poll, recorder=recorder).run()]
    except KeyboardInterrupt:
        for process in processes:  # they got the same Ctrl-C and are ending their own trials
            process.join(timeout=60)
        raise
    errors = []
    while len(stats) + len(errors) < workers:
        try:
            index, worker_stats, error = results.get(timeout=0.5)
        except queue.Empty:  # also notices a worker that died without a word
            if on_poll:
                on_poll()
            if all(not p.is_alive() for p in processes) and results.empty():
                errors.append("a worker process died")
            continue
        (errors.append(error) if error else stats.append(worker_stats))
    for process in processes:
        process.join()
    if errors:
        raise RuntimeError(f"sweep worker failed: {errors[0]}")
    return stats


def finish(study, plan, client, summary_csv):
    """Attach the summary to every condition's parent run and end the parents."""
    from .tracking import write_artifacts
    for run_id in plan.parent_runs.values():
        write_artifacts(client, run_id, {"summary.csv": summary_csv.encode()})
        client.set_terminated(run_id, "FINISHED")


def rows(study, plan):
    storage, _ = open_storage(plan.storage_url, study.name)
    return trial_rows(study, storage, plan.budget)
