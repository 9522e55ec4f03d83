"""Hold Optuna's trials against MLflow's runs and say what must be done so that they agree.

Optuna's storage says which trials finished and how; MLflow's store must hold one run per finished
trial with its results. Kills, full disks and lost stores break that in a few ways, each with one
remedy, decided here by a pure function of the two record sets (so every case is unit-tested without
a store) and carried out by the sweep:

- a run still RUNNING whose trial was failed (its worker died) ends FAILED, ``state=killed``;
- a run still RUNNING that holds its results (final ``state`` tag) and whose trial finished lost
  only its end: it ends FINISHED (``recovered``), once its recorder had time to end it itself;
- a run still RUNNING without results whose trial finished ends FAILED (``state=orphaned``);
- a finished trial with no run holding its results is trained again (training is deterministic,
  so the re-run is exact) and recorded; a run whose local files were deleted does not hold them
  (tagged ``state=artifacts_lost``);
- confirmation runs of another budget than the standing one (``table.standing_budget``), and runs
  of an earlier search of the same name (its journal deleted), are tagged superseded; those never count.
"""

from dataclasses import dataclass, field

from ..records.operations import HARNESS_TAG
from ..records.runs import CONFIG_ARTIFACT, FINAL_STATES
from ..records.table import REUSED_TAG, belongs, reuses, standing_budget
from ..records.tags import CONDITION, OPTUNA_STUDY, OPTUNA_TRIAL, SEARCH_ID, STATE, SUPERSEDED

ORPHAN_SECONDS = 30
"""A run still RUNNING this long after Optuna heard its trial's end lost its worker (a live recorder
ends it within a second or two)."""
IN_PROGRESS = ("running", "waiting")
ENDS = {
    "killed": ("FAILED", "killed"),
    "interrupted": ("KILLED", "interrupted"),
    "failed": ("FAILED", "failed"),
    "unrecorded": ("FAILED", "unrecorded"),
}


@dataclass
class Actions:
    end: list = field(default_factory=list)  # (run_id, status, tags)
    rerun: list = field(default_factory=list)  # trial rows (search.trial_rows) to train and record again
    tag: list = field(default_factory=list)  # (run_id, tags)
    waiting: int = 0  # runs whose recorder may still end them: decided later

    def __bool__(self):
        return bool(self.end or self.rerun or self.tag)


def decide(study, trials, runs, now, orphan_seconds=None):
    """``trials``: rows of ``conditions.trial_rows``; ``runs``: run dicts of the study's experiment."""
    orphan_seconds = ORPHAN_SECONDS if orphan_seconds is None else orphan_seconds
    actions, held = Actions(), set()  # held: trials whose results a run holds (or soon will)
    by_key = {(t["optuna_study"], t["number"]): t for t in trials}
    confirm_names = standing_confirm_names(study, runs)
    for run in runs:
        tags = run["tags"]
        kind = tags.get(HARNESS_TAG)
        if kind not in ("search", "confirm"):
            continue
        mine = belongs(study, tags.get(CONDITION), tags.get(SEARCH_ID))
        if not mine and run["status"] == "RUNNING":  # a worker of a search given up (its journal deleted)
            actions.end.append((run["run_id"], "FAILED", {STATE: "killed", SUPERSEDED: "true"}))
            continue
        reused = reuses(tags.get(REUSED_TAG))
        if kind == "confirm" or not mine:
            stands = {tags.get(OPTUNA_STUDY), *(name for name, _ in reused)} & confirm_names
            superseded = not mine or not stands
            if superseded != (tags.get(SUPERSEDED) == "true") and run["status"] != "RUNNING":
                actions.tag.append((run["run_id"], {SUPERSEDED: str(superseded).lower()}))
        if not mine:  # another search's trial numbers are not this search's
            continue
        trial = by_key.get((tags.get(OPTUNA_STUDY), _int(tags.get(OPTUNA_TRIAL))))
        if trial is not None and _judge_run(run, trial, now, orphan_seconds, actions):
            held.add((trial["optuna_study"], trial["number"]))
        if run["status"] == "FINISHED" and tags.get(STATE) in FINAL_STATES:
            held.update(reused)  # the larger budgets' confirmations it stands for
    actions.rerun = _lost(study, trials, held)
    return actions


def standing_confirm_names(study, runs):
    """The confirm studies whose runs are the study's result (``table.standing_budget``)."""
    settled = []
    for run in runs:
        tags, seed = run["tags"], _int(run["params"].get("seed", run["tags"].get("harness.seed")))
        if tags.get(HARNESS_TAG) != "confirm" or not belongs(study, tags.get(CONDITION), tags.get(SEARCH_ID)):
            continue
        results = run["status"] == "FINISHED" and tags.get(STATE) in FINAL_STATES
        if results or tags.get(STATE) == "failed":
            settled.append((tags.get(OPTUNA_STUDY), seed))
        if results:
            settled += [(name, seed) for name, _ in reuses(tags.get(REUSED_TAG))]
    budget = standing_budget(study, settled)
    return {f"{study.optuna_name(c)}/confirm-after-{budget}-trials" for c in study.conditions}


def _judge_run(run, trial, now, orphan_seconds, actions):
    """Add what ``run`` needs to ``actions``; True when it holds (or will hold) its trial's results."""
    results = run["tags"].get(STATE) in FINAL_STATES
    state = trial["state"]
    if run["status"] == "FINISHED":
        if results and state in ENDS:  # Optuna lost the trial's end (a torn journal): re-run, not counted
            status, tag = ENDS[state]
            actions.end.append((run["run_id"], status, {STATE: tag}))
            return False
        if results and not artifacts_present(run):  # its files were deleted: trained again, this one set aside
            actions.tag.append((run["run_id"], {STATE: "artifacts_lost"}))
            return False
        return results
    if run["status"] != "RUNNING" or state in IN_PROGRESS:
        return False
    if state in ENDS:
        status, tag = ENDS[state]
        actions.end.append((run["run_id"], status, {STATE: tag}))
    elif state not in FINAL_STATES:  # over_budget, not_wanted, skipped: the trial has no result
        actions.end.append((run["run_id"], "FAILED", {STATE: state}))
    elif (
        not trial.get("worker_gone")
        and trial["completed_at"] is not None
        and now - trial["completed_at"] < orphan_seconds
    ):
        actions.waiting += 1  # its recorder may still be writing
        return True
    elif results:
        actions.end.append((run["run_id"], "FINISHED", {"harness.recovered": "true"}))
        return True
    else:
        actions.end.append((run["run_id"], "FAILED", {STATE: "orphaned"}))
    return False


def artifacts_present(run):
    """Whether a run's files (its config.json, written with every result) are still there; runs whose
    artifacts live on a server are taken as present (only a local store is looked at)."""
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    location = urlparse(run.get("artifact_uri") or "")
    if location.scheme != "file":
        return True
    return (Path(unquote(location.path)) / CONFIG_ARTIFACT).is_file()


def _lost(study, trials, held):
    """Finished trials without a run holding their results (confirmation rows get their best settings)."""
    seeds = set(study.confirm_seed_values())
    search_params = {(t["condition"], t["number"]): t["params"] for t in trials if t["phase"] == "search"}
    lost = []
    for trial in trials:
        if trial["state"] not in FINAL_STATES or (trial["optuna_study"], trial["number"]) in held:
            continue
        if trial["phase"] == "confirm":
            best = trial["attrs"].get("best_search_trial")
            if trial["seed"] not in seeds or (trial["condition"], best) not in search_params:
                continue  # a seed this sweep does not want, or its search trial is gone too
            trial = {**trial, "best_params": search_params[(trial["condition"], best)]}
        lost.append(trial)
    return lost


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
