"""A sweep worker: takes the next piece of work from the Optuna storage and trains it as one stack.

The work is a stack of search trials of a condition with budget left, else the confirmation seeds of
a condition whose search is done. Every trial is one MLflow run, written by the worker's recorder
while the worker trains on. Optuna hears a trial's outcome as soon as it is trained (its pruner and
sampler see it at once, as they would in a plain Optuna loop); a run whose recorder had not stored its
results when the worker died is found by the next start, and the trial trained again, exactly
(``reconcile``). The sweep's results are read from the runs: a trial counts only with its record.
"""

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

from ..common import faults
from ..common.errors import HarnessError, RunTimeFailure, kind_of
from ..common.outages import OutageError
from ..engine.data import data_key, load_split
from ..engine.methods import changed_module
from ..engine.training import DIVERGED, max_stack, train_stack
from ..records.correctness import correctness_tags
from ..records.runs import CONFIG_ARTIFACT, FINAL_STATES, TrialRuns, environment_tags, lean_curves
from ..records.table import REUSED_TAG
from ..records.tags import DATASET_DIGEST, EPOCHS_TO_TARGET, INVOCATION, PREFIX, PRUNED_EPOCH, STATE, STUDY
from .conditions import ConditionStudies
from .liveness import DEFAULT_HEARTBEAT_SECONDS, Heartbeat, WorkerPresence, new_worker
from .outcomes import confirm_outcome, search_outcome, stackable
from .pruning import StackPruning
from .speculation import replay, resumed
from .storages import open_storage

MAX_SAME_FAILURES = 3
"""A condition whose training fails this often with the same error stops the sweep (MemoryError, ...)."""


@dataclass
class WorkerStats:
    trials: int = 0
    confirms: int = 0
    confirms_reused: int = 0
    reruns: int = 0
    train_seconds: float = 0.0
    optuna_seconds: float = 0.0
    optuna_in_training_seconds: float = 0.0
    mlflow_blocked_seconds: float = 0.0
    wall_seconds: float = 0.0
    epochs: int = 0
    trained_ahead: int = 0  # members of the first stack trained while the stores opened (``speculation``)
    recorder_busy_seconds: dict = field(default_factory=dict)
    """The recorder process's own time per MLflow operation (it works beside the worker, on its own core):
    for a sweep with one worker, the recorder's start-up and the parent runs are in it too."""


@dataclass
class SweepPlan:
    """What every worker needs besides the resolved study; plain data, so it crosses into processes."""

    storage_url: str
    tracking_uri: str
    experiment_id: str
    parent_runs: dict
    invocation: str
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS
    extra_tags: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # the command's run context (spawned workers have no argv)
    data_digests: list = field(default_factory=list)  # the data the study's runs train on (its identity)
    method_digests: dict = field(default_factory=dict)  # {module: sha256} of the study's custom methods


class _Timer:
    def __init__(self, stats, attr):
        self.stats, self.attr = stats, attr

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        setattr(self.stats, self.attr, getattr(self.stats, self.attr) + time.perf_counter() - self.start)


class Member:
    """One model of a stack: its Optuna trial (None for a re-run), settings, run, and how it ended."""

    def __init__(self, trial, config, phase, studies, best_search_trial=None, stop_at=None):
        self.trial, self.config, self.phase, self.studies = trial, config, phase, studies
        self.best_search_trial, self.stop_at = best_search_trial, stop_at
        self.create = None  # the recorder's ticket for its run
        self.outcome = None  # (state, value, attrs) once trained
        self.taken_away = False  # another worker failed the trial as dead meanwhile (late heartbeats)

    @property
    def is_rerun(self):
        """A finished trial trained again (its Optuna record, a plain dict, is not asked or told)."""
        return isinstance(self.trial, dict)

    @property
    def number(self):
        return self.trial["number"] if self.is_rerun else self.trial.number


class SweepWorker:
    """Scheduling and Optuna bookkeeping; the runs are ``records.runs.TrialRuns``', the training ``train``'s."""

    def __init__(self, study, plan, recorder, index=0, splits=None, on_progress=None):
        self.study, self.plan, self.index, self.on_progress = study, plan, index, on_progress
        new_worker()  # what an earlier sweep of this process left running is not this worker's
        changed = changed_module(plan.method_digests)
        if changed:
            raise HarnessError(f"worker {index}: {changed}: it refuses to train the study with another method")
        self.recorder = recorder
        self.stats = WorkerStats()
        self.storage, _ = open_storage(plan.storage_url, study.name, plan.heartbeat_seconds)
        self.heartbeat = Heartbeat(self.storage)
        self.presence = WorkerPresence(plan.storage_url)
        with _Timer(self.stats, "optuna_seconds"):
            self.conditions = [
                ConditionStudies(study, condition, self.storage, index * 7919 + i * 104729, self.heartbeat)
                for i, condition in enumerate(study.conditions)
            ]
        self.splits = dict(splits or {})
        self.runs = TrialRuns(
            recorder,
            study,
            plan,
            {**environment_tags(plan.source), STUDY: study.name, INVOCATION: plan.invocation, **plan.extra_tags},
        )
        self._training = []  # members being trained: their runs exist, their results do not yet
        self._reaped_at = -math.inf
        self.speculation = None  # the first stack, trained ahead while the stores opened (``speculation``)
        self._ahead_seconds = 0.0

    def split_for(self, config):
        key = data_key(config)
        if key not in self.splits:
            own = "split" in self.study.confirm_vary and config.data_seed != 0
            if own:  # a confirmation seed's own split ([confirm] vary): its data are checked through the study's
                self.split_for(dataclasses.replace(config, data_seed=0))
            split = load_split(config)
            if self.plan.data_digests and split.digest not in self.plan.data_digests and not own:
                raise HarnessError(
                    f"{config.csv or config.dataset}: the data changed while the sweep ran (digest "
                    f"{split.digest[:12]}); nothing was trained on it: restore the data the study was started with"
                )
            self.splits[key] = split
        return self.splits[key]

    def studies_of(self, condition_name):
        return next(s for s in self.conditions if s.condition.name == condition_name)

    def run(self):
        start = time.perf_counter()
        self.presence.hold()
        try:
            while (task := self._next()) is not None:
                if task == "wait":  # other workers hold the last trials
                    time.sleep(0.2)
                else:
                    phase, studies = task
                    (self.search_stack if phase == "search" else self.confirm_stack)(studies)
                if self.on_progress:
                    self.on_progress()
            self.runs.check(block=True)
            self.stats.recorder_busy_seconds = {k: round(v, 3) for k, v in self.recorder.call("busy").items()}
        except BaseException as exc:
            self.give_back("interrupted", "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        finally:
            self.presence.release()
            self.heartbeat.close()
            self.stats.mlflow_blocked_seconds = self.recorder.blocked_seconds
            self.stats.wall_seconds = time.perf_counter() - start
        return self.stats

    def _next(self):
        self.runs.check()
        with _Timer(self.stats, "optuna_seconds"):
            # dead workers' trials: looked for once per heartbeat (a few queries per condition)
            if time.perf_counter() - self._reaped_at >= self.plan.heartbeat_seconds:
                for studies in self.conditions:
                    studies.reap_stale()
                self._reaped_at = time.perf_counter()
            return self.next_task()

    def next_task(self):
        shift = self.index % len(self.conditions)
        order = self.conditions[shift:] + self.conditions[:shift]
        for studies in order:
            count, error = studies.repeated_failure(self.plan.invocation)
            if count >= MAX_SAME_FAILURES:
                raise RunTimeFailure(
                    f"condition {studies.condition.name}: training failed {count} times with the "
                    f"same error ({error}); the sweep stops: fix the condition's settings"
                )
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
    def search_stack(self, studies):
        """Ask up to ``stack`` trials of one condition and train them as one stack."""
        study = self.study
        members = []
        with _Timer(self.stats, "optuna_seconds"):
            for _ in range(max(1, min(self._stack_size(studies), studies.search_remaining()))):
                trial, params = studies.ask_search()
                if trial is None:
                    break
                config = study.config_for(studies.condition, params, study.search_seed)
                members.append(Member(trial, config, "search", studies))
        checks_from = study.pruner_warmup_epochs + 1 if study.pruner == "median" else 1
        for group in stackable(members):
            pruning = StackPruning(studies.search, study.pruner_among_stack)

            def report(t, epoch, metrics, group=group, pruning=pruning):
                with _Timer(self.stats, "optuna_seconds"), _Timer(self.stats, "optuna_in_training_seconds"):
                    # the median pruner never prunes inside its warm-up: skip the storage round trip
                    last = epoch >= group[t].config.epochs
                    return pruning.report(group[t].trial, epoch, metrics[study.objective], epoch >= checks_from, last)

            def epoch_values(epoch, metrics, group=group, pruning=pruning):
                if epoch >= checks_from:  # the members' values at this epoch: references for each other
                    pruning.epoch_values(epoch, {group[t].trial.number: m[study.objective] for t, m in metrics.items()})

            # without a pruner nothing reads the per-epoch values (the curves are in MLflow): no writes
            results = self.train(
                studies,
                group,
                () if study.pruner == "none" else (report,),
                include_test=False,
                on_epoch=epoch_values if pruning.among_stack else None,
            )
            for member, result in zip(group, results or ()):
                member.outcome = search_outcome(result, study.objective, study.direction)
                member.taken_away = member.trial.number in pruning.taken_away
                self.finish(member, result)
                self.stats.trials += 1

    # --- confirmation: a stack of seeds ------------------------------------------------------------
    def confirm_stack(self, studies):
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
        asked = self.reuse_confirmations(studies, best, asked)
        if not asked:
            return
        members = [
            Member(
                trial,
                study.config_for(studies.condition, best.params, seed, "confirm"),
                "confirm",
                studies,
                best.number,
            )
            for trial, seed in asked
        ]
        for group in stackable(members):  # seeds that draw their own split ([confirm] vary) train apart
            results = self.train(studies, group, (), include_test=True)
            for member, result in zip(group, results or ()):
                member.outcome = confirm_outcome(
                    result, member.config.seed, best.number, study.objective, study.target_accuracy
                )
                self.finish(member, result)
                self.stats.confirms += 1

    def reuse_confirmations(self, studies, best, asked):
        """The asked seeds left to train: a seed confirmed at a smaller budget from the same best search
        trial, with the same config and data, is not trained again; its run is tagged as standing for this
        budget's seed too (``table.REUSED_TAG``), then Optuna is told its result. Killed between the two, the
        trial is retried and re-used again; the tag names each confirmation once."""
        earlier = studies.earlier_confirmations(best.number) if asked else {}
        left = []
        for trial, seed in asked:
            config = self.study.config_for(studies.condition, best.params, seed, "confirm")
            found = earlier.get(seed)
            if found is None or not self._reuse(studies, trial, config, *found):
                left.append((trial, seed))
        return left

    def _reuse(self, studies, trial, config, name, old):
        run_id = old.user_attrs["mlflow_run_id"]
        with _Timer(self.stats, "mlflow_blocked_seconds"):
            try:
                run = self.recorder.call("get_run", run_id)
                logged = self.recorder.call("read_artifact", run_id, CONFIG_ARTIFACT)
            except HarnessError:
                return False
            tags = run["tags"]
            holds = run["status"] == "FINISHED" and tags.get(STATE) in FINAL_STATES
            same = logged == config.to_json().encode() and tags.get(DATASET_DIGEST) == self.split_for(config).digest
            if not holds or not same:
                return False
            entries = dict.fromkeys(
                [*tags.get(REUSED_TAG, "").split(";"), f"{studies.confirm.study_name}#{trial.number}"]
            )
            self.recorder.call("set_tags", run_id, {REUSED_TAG: ";".join(e for e in entries if e)})
        faults.kill_at("after-reuse-tag")
        attrs = {k: v for k, v in old.user_attrs.items() if k not in ("state", "invocation") and "worker" not in k}
        attrs.update(reused_from=name, invocation=self.plan.invocation)
        with _Timer(self.stats, "optuna_seconds"):
            studies.finish("confirm", trial, old.user_attrs["state"], old.value, attrs)
        self.stats.confirms_reused += 1
        return True

    # --- shared steps ------------------------------------------------------------------------------
    def _stack_size(self, studies):
        """The study's stack size, capped so a stack's memory stays within 2 GiB (large data sets)."""
        config = self.study.largest_config(studies.condition)
        return min(self.study.stack, max_stack(config, self.split_for(config)))

    def _trained_ahead(self, group):
        """The first stack's results if it was trained ahead and is exactly this group (its runs exist by
        now: Ctrl-C while it finishes ends them as any stack's); else None. A rule across the stack
        (``on_epoch``) is never replayed: such a study trains nothing ahead."""
        speculation, self.speculation = self.speculation, None
        if speculation is None:
            return None
        lean = self.runs.lean(group[0].phase)
        results = speculation.take([m.config for m in group], self._curves(group) if lean else None)
        self._ahead_seconds = speculation.seconds
        return results

    def _curves(self, group):
        return lean_curves(group[0].config, self.study.objective)

    def train(self, studies, group, callbacks, include_test, on_epoch=None):
        """Start one MLflow run per member and train the group as one stack; None if training failed
        (a re-run's failure is raised: its outcome is known, so failing now is a fault of the machine).
        Search trials recorded lean compute only their lean curves (and what decides the run).
        The first stack may have been trained before its trials were asked (``speculation``): then its
        pruning decisions are replayed, and it trains again (from its first epoch) only if one of them
        stops a member."""
        split = self.split_for(group[0].config)
        lean = self.runs.lean(group[0].phase)
        curves = self._curves(group) if lean else None
        first_search = group[0].phase == "search" and not group[0].is_rerun and on_epoch is None
        began = self.speculation.started_ms if first_search and self.speculation else None  # its epochs' times
        for member in group:
            member.create = self.runs.start(member, split, began)
        self._training = list(group)
        start, optuna_before = time.perf_counter(), self.stats.optuna_in_training_seconds
        delay = faults.epoch_hook()
        try:
            faults.before_training(studies.condition.name)
            ahead = self._trained_ahead(group) if first_search and self.speculation else None
            stopped = replay(ahead, callbacks) if ahead is not None else None
            if stopped is not None:
                callbacks = (resumed(callbacks, stopped),)
            elif ahead is not None:
                self.stats.train_seconds += self._ahead_seconds
                self.stats.trained_ahead += len(ahead)
            results = (
                ahead
                if ahead is not None and stopped is None
                else train_stack(
                    [m.config for m in group],
                    split,
                    (*callbacks, delay) if delay else callbacks,
                    include_test=include_test,
                    curves=curves,
                    on_epoch=on_epoch,
                )
            )
        except OutageError:  # a shared service stayed away: not a fault of these trials
            raise
        except Exception as exc:  # noqa: BLE001 - failed trials are recorded; the study goes on
            error = f"{type(exc).__name__}: {exc}"[:300]
            if group[0].is_rerun:
                raise RunTimeFailure(f"re-running a trial whose record was lost failed: {error}") from None
            self._end_training("failed", "FAILED", error)
            return None
        finally:  # training time without the pruning calls made from inside it (counted as Optuna's)
            self.stats.train_seconds += (
                time.perf_counter() - start - (self.stats.optuna_in_training_seconds - optuna_before)
            )
        self.stats.epochs += sum(r.epochs_run for r in results)
        return results

    def finish(self, member, result):
        """Tell Optuna how the member ended, then hand its results to the recorder. Should the worker
        die before the recorder stored them, the next start finds a finished trial whose run holds no
        results and trains it again (``repair``): a trial counts only with its record."""
        state, _, attrs = member.outcome
        counted = self._tell(member)
        # where the pruner stopped it (reproduce stops there too); a divergence's epoch is a metric already
        tags = {STATE: state, **({PRUNED_EPOCH: attrs["pruned_epoch"]} if "pruned_epoch" in attrs else {})}
        split = self.split_for(member.config)
        if member.phase == "confirm":  # first epoch at the target accuracy, or never (censored)
            reached = attrs.get("epochs_to_target")
            tags[EPOCHS_TO_TARGET] = "never" if reached is None else reached
            if result.status != DIVERGED:  # its test rows, for the pairs' test (``correctness``)
                tags.update(correctness_tags(result.network.logits(split.x_test).argmax(axis=1), split.y_test))
        self.runs.finish(
            member.create,
            member.config,
            split,
            result,
            tags,
            counted,
            with_model=member.phase == "confirm" and self.study.logs_model(member.config.seed),
            phase=member.phase,
        )
        self._training.remove(member)

    def _tell(self, member):
        """Optuna hears the outcome; False when the trial is no longer this worker's."""
        if member.is_rerun:  # Optuna knew the outcome already
            return True
        state, value, attrs = member.outcome
        with _Timer(self.stats, "mlflow_blocked_seconds"):
            run_id = self.runs.run_id(member.create)
        with _Timer(self.stats, "optuna_seconds"):
            if member.taken_away:  # another worker failed it as dead (late heartbeats) and runs it again
                member.studies.heartbeat.release(member.trial)
                return False
            attrs = {**attrs, "mlflow_run_id": run_id, "invocation": self.plan.invocation}
            told = member.studies.finish(member.phase, member.trial, state, value, attrs)
            faults.after_tell(member.phase)
            return told

    def _end_training(self, state, status, error=None):
        """The stack in training failed: its trials end ``state`` (failed: not retried), runs ``status``."""
        members, self._training = self._training, []
        for member in members:
            self._give_back_member(member, state, status, error)

    def give_back(self, state, status):
        """The stack in training ends early: its trials go back to be trained again, runs ``status``."""
        members, self._training = self._training, []
        for member in members:
            try:
                self._give_back_member(member, state, status)
            except Exception:  # noqa: BLE001 - the next start reaps what is left
                pass

    def _give_back_member(self, member, state, status, error=None):
        attrs = {"invocation": self.plan.invocation, **({"error": error[:500]} if error else {})}
        if not member.is_rerun:
            try:
                attrs["mlflow_run_id"] = self.runs.run_id(member.create)
            except HarnessError:
                pass  # the run could not even be created; the trial still goes back
            member.studies.finish(member.phase, member.trial, state, attrs=attrs)
        self.runs.end(member.create, status, {STATE: state, **{PREFIX + k: v for k, v in attrs.items()}})


def worker_process(study, plan, index, results):
    """A spawned worker: its own recorder process, the resolved study it was given (never the file)."""
    from ..records.recorder import RecorderProcess

    watch_parent()
    recorder = RecorderProcess(plan.tracking_uri)
    try:
        stats = SweepWorker(study, plan, recorder, index).run()
        recorder.close()
        results.put((index, stats, None))
    except KeyboardInterrupt:
        recorder.close()
        results.put((index, None, "interrupted"))
    except HarnessError as exc:
        recorder.kill()
        results.put((index, None, (kind_of(exc), str(exc))))
    except Exception as exc:  # noqa: BLE001 - reported by the command
        recorder.kill()
        results.put((index, None, f"{type(exc).__name__}: {exc}"))
        raise


def watch_parent(parent=None):
    """A spawned worker ends when the command that started it is gone (its trials are then reaped)."""
    import threading

    parent = parent or os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()
