"""Carry out ``reconcile``'s decisions: end the runs it names, and train again the finished trials
whose records were lost. Training is deterministic, so a re-run is exact; a re-run whose outcome
differs from what Optuna was told the first time is reported, never hidden."""

import sys
import time

from . import reconcile as decisions
from .conditions import ConditionStudies, trial_rows
from .outcomes import confirm_outcome, rerun_difference, search_outcome, stackable
from .worker import Member


def reconcile_stores(study, plan, storage, recorder, worker=None, settle=False, err=None):
    """Make Optuna's trials and MLflow's runs agree. ``worker``: re-run what was lost (else only runs
    are ended); ``settle``: wait until no run is left whose recorder may still end it. Returns how
    many trials were re-run."""
    err = err or sys.stderr
    deadline, repaired = time.time() + decisions.ORPHAN_SECONDS + 5, 0
    while True:
        for condition in study.conditions:
            ConditionStudies(study, condition, storage).reap_stale()
        trials = trial_rows(study, storage)
        _, runs = recorder.call("study_runs", study.name, "" if worker else "attributes.status = 'RUNNING'")
        actions = decisions.decide(study, trials, runs, time.time())
        for run_id, status, tags in actions.end:
            recorder.submit("end_run", run_id, status, tags)
        for run_id, tags in actions.tag:
            recorder.submit("set_tags", run_id, tags)
        if worker is not None and actions.rerun and not actions.waiting:
            print(
                f"harness sweep: {len(actions.rerun)} finished trial(s) of {study.name} have no run holding "
                "their results (the tracking store lost them); training them again",
                file=err,
            )
            for trial, difference in rerun(worker, actions.rerun):
                print(
                    f"harness sweep: warning: re-run of {trial['optuna_study']} trial {trial['number']} differs "
                    f"from its first run: {difference}",
                    file=err,
                )
            repaired += len(actions.rerun)
            continue
        if not (settle and actions.waiting) or time.time() > deadline:
            return repaired
        time.sleep(1.0)


def rerun(worker, trials):
    """Train ``trials`` (rows of ``conditions.trial_rows``) again with ``worker``'s stacks and record them;
    returns (trial, difference) for each whose outcome differs from the one Optuna holds."""
    study, groups, differences = worker.study, {}, []
    for row in trials:
        studies = worker.studies_of(row["condition"])
        params, seed = (
            (row["params"], study.search_seed) if row["phase"] == "search" else (row["best_params"], row["seed"])
        )
        stop_at = row["attrs"].get("pruned_epoch") if row["state"] == "pruned" else None
        member = Member(
            row,
            study.config_for(studies.condition, params, seed, row["phase"]),
            row["phase"],
            studies,
            row["attrs"].get("best_search_trial"),
            stop_at,
        )
        groups.setdefault((row["condition"], row["phase"]), []).append(member)
    for (_, phase), members in groups.items():
        for group in stackable(members):
            stops = [m.stop_at for m in group]

            def stop(t, epoch, metrics, stops=stops):  # a pruned trial stops where its pruner stopped it
                return stops[t] is not None and epoch >= stops[t]

            results = worker.train(group[0].studies, group, (stop,) if any(stops) else (), phase == "confirm")
            for member, result in zip(group, results):
                member.outcome = (
                    search_outcome(result, study.objective, study.direction)
                    if phase == "search"
                    else confirm_outcome(
                        result, member.config.seed, member.best_search_trial, study.objective, study.target_accuracy
                    )
                )
                difference = rerun_difference(member.trial, member.outcome)
                if difference:
                    differences.append((member.trial, difference))
                worker.finish(member, result)
                worker.stats.reruns += 1
    worker.runs.check(block=True)
    return differences
