"""Reproduce a logged run: rebuild its configuration from what it recorded, retrain, compare curves.

The configuration comes from the run's ``config.json`` artifact (never from unpickling anything), the
data from the same loaders and split seed. Every logged metric is compared at every step; on the same
machine and versions the curves are bit-identical, so any difference is reported. A user's CSV is used
only if it is the data the run saw (same digest): a path in an artifact is input, not an instruction.
"""

import sys

from .data import load_split
from .errors import HarnessError
from .predict import parse_config
from .provenance import git_state, package_versions
from .runs import CONFIG_ARTIFACT, outcome_metrics, train_and_record
from .tracking import HARNESS_TAG, RecorderProcess, check_server, check_writable

NOT_COMPARED = {"train_seconds"}
CARRIED_TAGS = ("study", "condition", "phase", "trial", "optuna_study", "mlflow.parentRunId")
"""Tags a reproduction keeps from its original, so it sits beside it in the UI."""


def load_logged_config(recorder, run):
    run_id = run["run_id"]
    if HARNESS_TAG not in run["tags"]:
        raise HarnessError(f"run {run_id} was not made by the harness (no {HARNESS_TAG} tag)")
    content = recorder.call("read_artifact", run_id, CONFIG_ARTIFACT)
    if content is None:
        raise HarnessError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact to rebuild it from")
    return parse_config(content, f"run {run_id} {CONFIG_ARTIFACT}")


def load_logged_data(run, config):
    """The split the run saw. A CSV must be the very data it was trained on before anything of it is
    used or shown: a changed or foreign file is refused by its digest, without echoing its content."""
    logged = run["tags"].get("dataset_digest")
    if config.dataset != "csv":
        return load_split(config)
    where = f"run {run['run_id']}: csv = {config.csv!r}"
    try:
        split = load_split(config)
    except HarnessError:
        raise HarnessError(f"{where} cannot be loaded as the run loaded it (moved, changed or not a CSV)") from None
    if logged is None or split.digest != logged:
        raise HarnessError(
            f"{where} is not the data this run was trained on (its digest differs from the "
            "logged dataset_digest); nothing of it was used"
        )
    return split


def environment_warnings(run, split):
    tags, warnings = run["tags"], []
    commit, _ = git_state()
    if tags.get("git_commit") not in (None, commit):
        warnings.append(f"git commit differs: logged {tags['git_commit'][:12]}, now {commit[:12]}")
    for name, version in package_versions().items():
        logged = tags.get(f"version.{name}")
        if logged is not None and logged != version:
            warnings.append(f"{name} version differs: logged {logged}, now {version}")
    if tags.get("dataset_digest") not in (None, split.digest):
        warnings.append(f"dataset digest differs: logged {tags['dataset_digest'][:12]}, now {split.digest[:12]}")
    return warnings


def reproduced_points(result):
    points = {k: list(enumerate(v, start=1)) for k, v in result.history.items()}
    for key, value in outcome_metrics(result).items():
        points.setdefault(key, []).append((result.epochs_run, value))
    return points


def compare_curves(logged, reproduced):
    """Rows (metric, largest |difference|, first differing step, logged, reproduced)."""
    rows = []
    for key, points in sorted(logged.items()):
        mine = dict(reproduced.get(key, []))
        worst, first = 0.0, None
        for step, value in sorted(points):
            other = mine.get(step)
            if other is None or other != value:
                diff = float("inf") if other is None else abs(other - value)
                worst = max(worst, diff)
                if first is None:
                    first = (step, value, other)
        extra = sorted(set(mine) - {s for s, _ in points})
        if extra and first is None:
            first, worst = (extra[0], None, mine[extra[0]]), float("inf")
        rows.append((key, worst, first))
    return rows


def reproduce(run_id, uri, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    check_server(uri)
    check_writable(uri)  # the reproduction is logged as a run
    with RecorderProcess(uri) as recorder:
        return _reproduce(run_id, recorder, out, err)


def _reproduce(run_id, recorder, out, err):
    run = recorder.call("get_run", run_id)
    config = load_logged_config(recorder, run)
    split = load_logged_data(run, config)
    for warning in environment_warnings(run, split):
        print(f"warning: {warning}", file=err)
    tags = run["tags"]
    pruned = tags.get("state") == "pruned"
    stop_at = int(tags["pruned_epoch"]) if pruned and tags.get("pruned_epoch", "").isdigit() else None
    callbacks = [lambda epoch, metrics: epoch >= stop_at] if stop_at else []
    keys = [k for k in run["metrics"] if k not in NOT_COMPARED]
    carried = {k: tags[k] for k in CARRIED_TAGS if k in tags}
    new_id, result, _ = train_and_record(
        config,
        split,
        recorder,
        run["experiment_name"],
        tags={**carried, HARNESS_TAG: "reproduce", "reproduces": run_id},
        callbacks=callbacks,
        include_test=any(k.startswith("test_") for k in keys),
        run_name=f"{run['run_name']}-reproduce",
        state_names={"stopped": "pruned"} if pruned else None,
    )
    histories = recorder.call("metric_histories", run_id, keys)
    logged = {key: [(step, value) for step, value, _ in points] for key, points in histories.items()}
    rows = compare_curves(logged, reproduced_points(result))
    print(f"reproduced {run_id} as run {new_id} ({result.status}, {result.epochs_run} epochs)", file=out)
    print(f"{'metric':<22} {'largest |difference|':>20}  first difference (step: logged -> reproduced)", file=out)
    for key, worst, first in rows:
        where = "" if first is None else f"step {first[0]}: {first[1]!r} -> {first[2]!r}"
        print(f"{key:<22} {worst:>20.3g}  {where}", file=out)
    mismatched = [key for key, worst, _ in rows if worst != 0.0]
    if mismatched:
        print(f"NOT reproduced: {len(mismatched)} of {len(rows)} metrics differ ({', '.join(mismatched)})", file=out)
        return 1
    print(f"reproduced exactly: {len(rows)} metrics, every step identical", file=out)
    return 0
