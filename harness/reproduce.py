"""Reproduce a logged run: rebuild its configuration from what it recorded, retrain, compare curves.

The configuration comes from the run's ``config.json`` artifact (never from unpickling anything), the
data from the same loaders and split seed. Every logged metric is compared at every step; on the same
machine and versions the curves are bit-identical, so any difference is reported.
"""
import json
import sys

from .config import make_config
from .data import load_split
from .errors import ConfigError, HarnessError
from .provenance import git_state, package_versions
from .recorded import CONFIG_ARTIFACT, outcome_metrics, train_and_record
from .tracking import HARNESS_TAG, fetch_run, metric_histories, open_client, read_artifact

NOT_COMPARED = {"train_seconds"}


def load_logged_config(client, run):
    if HARNESS_TAG not in run.data.tags:
        raise HarnessError(f"run {run.info.run_id} was not made by the harness (no {HARNESS_TAG} tag)")
    content = read_artifact(client, run.info.run_id, CONFIG_ARTIFACT)
    if content is None:
        raise HarnessError(f"run {run.info.run_id} has no {CONFIG_ARTIFACT} artifact to rebuild it from")
    try:
        return make_config(json.loads(content), source=f"run {run.info.run_id} {CONFIG_ARTIFACT}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run {run.info.run_id} {CONFIG_ARTIFACT}: not valid JSON ({exc})") from None


def environment_warnings(run, split):
    tags, warnings = run.data.tags, []
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
    client = open_client(uri)
    run = fetch_run(client, run_id)
    config = load_logged_config(client, run)
    split = load_split(config)
    for warning in environment_warnings(run, split):
        print(f"warning: {warning}", file=err)
    tags = run.data.tags
    stop_at = int(tags["pruned_epoch"]) if tags.get("state") == "pruned" and "pruned_epoch" in tags else None
    callbacks = [lambda epoch, metrics: epoch >= stop_at] if stop_at else []
    experiment = client.get_experiment(run.info.experiment_id).name
    keys = [k for k in run.data.metrics if k not in NOT_COMPARED]
    new_id, result, _ = train_and_record(
        config, split, uri, experiment, tags={HARNESS_TAG: "reproduce", "reproduces": run_id},
        callbacks=callbacks, include_test=any(k.startswith("test_") for k in keys),
        run_name=f"{run.info.run_name}-reproduce")
    rows = compare_curves(metric_histories(client, run_id, keys), reproduced_points(result))
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
