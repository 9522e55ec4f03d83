"""Reproduce a logged run: rebuild its configuration from what it recorded, retrain, compare curves.

The configuration comes from the run's ``config.json`` artifact (never from unpickling anything), the
data from the same loaders and split seed. Every logged metric is compared at every step; on the same
machine and versions the curves are bit-identical, so any difference is reported. A user's CSV is used
only if it is the data the run saw (same digest): a path in an artifact is input, not an instruction.
"""

import math
import sys

from .data import load_split
from .errors import HarnessError
from .predict import parse_config
from .provenance import DIFF_ARTIFACT, code_diff, diff_tag, git_state, package_versions
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
    differing = []
    for name, version in package_versions().items():
        logged = tags.get(f"version.{name}")
        if logged is not None and logged != version:
            warnings.append(f"{name} version differs: logged {logged}, now {version}")
            if name not in ("python", "harness") and logged != "absent":
                differing.append(f"{name}=={logged}")
    if differing:
        warnings.append(f"the logged versions: pip install {' '.join(differing)}")
    if tags.get("git_diff") and tags.get("git_diff") != diff_tag(code_diff()).get("git_diff"):
        warnings.append(
            f"the run was made from uncommitted code (git_diff {tags['git_diff']}): its {DIFF_ARTIFACT} artifact "
            f"holds the change; `git apply` it on commit {tags.get('git_commit', '?')[:12]} to rebuild that code"
        )
    if tags.get("dataset_digest") not in (None, split.digest):
        warnings.append(f"dataset digest differs: logged {tags['dataset_digest'][:12]}, now {split.digest[:12]}")
    return warnings


def reproduced_points(result):
    points = {k: list(enumerate(v, start=1)) for k, v in result.history.items()}
    for key, value in outcome_metrics(result).items():
        points.setdefault(key, []).append((result.epochs_run, value))
    return points


RTOL = 1e-9
"""Relative tolerance across machines: another BLAS or CPU sums in another order (about 1e-15 per
operation, amplified over epochs); a real change of code or data moves curves by far more."""


def compare_curves(logged, reproduced, rtol=RTOL):
    """Per metric: the largest absolute and relative difference (with its step), and the first step
    that differs beyond ``rtol`` (step, logged, reproduced), None when every step is within it."""
    rows = []
    for key, points in sorted(logged.items()):
        mine = dict(reproduced.get(key, []))
        row = {"metric": key, "largest": 0.0, "relative": 0.0, "relative_step": None, "beyond": None}
        for step, value in sorted(points):
            other = mine.get(step)
            if other is not None and (other == value or (math.isnan(other) and math.isnan(value))):
                continue
            diff = math.inf if other is None else abs(other - value)
            scale = max(abs(value), abs(other)) if other is not None else 0.0
            relative = math.inf if other is None or not math.isfinite(diff) else (diff / scale if scale else 0.0)
            row["largest"] = max(row["largest"], diff)
            if relative > row["relative"]:
                row["relative"], row["relative_step"] = relative, step
            if relative > rtol and row["beyond"] is None:
                row["beyond"] = (step, value, other)
        extra = sorted(set(mine) - {s for s, _ in points})
        if extra and row["beyond"] is None:
            row["beyond"], row["largest"], row["relative"] = (extra[0], None, mine[extra[0]]), math.inf, math.inf
        rows.append(row)
    return rows


def reproduce(run_id, uri, out=None, err=None, rtol=RTOL):
    out, err = out or sys.stdout, err or sys.stderr
    check_server(uri)
    check_writable(uri)  # the reproduction is logged as a run
    with RecorderProcess(uri) as recorder:
        return _reproduce(run_id, recorder, out, err, rtol)


def _reproduce(run_id, recorder, out, err, rtol=RTOL):
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
    rows = compare_curves(logged, reproduced_points(result), rtol)
    print(f"reproduced {run_id} as run {new_id} ({result.status}, {result.epochs_run} epochs)", file=out)
    print(f"{'metric':<22} {'largest |difference|':>20} {'relative':>9}  first step beyond tolerance", file=out)
    for row in rows:
        beyond = row["beyond"]
        where = "" if beyond is None else f"step {beyond[0]}: {beyond[1]!r} -> {beyond[2]!r}"
        print(f"{row['metric']:<22} {row['largest']:>20.3g} {row['relative']:>9.2g}  {where}", file=out)
    mismatched = [row["metric"] for row in rows if row["beyond"] is not None]
    if mismatched:
        print(
            f"NOT reproduced: {len(mismatched)} of {len(rows)} metrics differ beyond a relative {rtol:g} "
            f"({', '.join(mismatched)})",
            file=out,
        )
        return 1
    worst = max(rows, key=lambda row: row["relative"], default=None)
    if worst is None or worst["relative"] == 0.0:
        print(f"reproduced exactly: {len(rows)} metrics, every step identical", file=out)
    else:
        print(
            f"equal within tolerance (relative {rtol:g}): {len(rows)} metrics; largest relative difference "
            f"{worst['relative']:.2g} in {worst['metric']} at step {worst['relative_step']}",
            file=out,
        )
    return 0
