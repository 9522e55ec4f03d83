"""Reproduce a logged run: rebuild its configuration from what it recorded, retrain, compare curves.

The configuration comes from the run's ``config.json`` artifact (never from unpickling anything), the
data from the same loaders and split seed. Every logged metric is compared at every step; on the same
machine and versions the curves are bit-identical, so any difference is reported. A user's CSV is used
only if it is the data the run saw (same digest): a path in an artifact is input, not an instruction.
When this checkout's code is not the run's (another commit, or other uncommitted changes), a run in the
store is rebuilt from its commit and ``git_diff.patch`` and trains there (``rebuild``; ``--here``
retrains with this code instead). An export's patch runs only with ``--rebuild-code``: a file from
someone else is data, and its digests are its sender's too. A patch is always checked against the
run's ``git_diff`` digest before it is used.
"""

import contextlib
import io
import math
import sys

import numpy as np

from ..common.errors import HarnessError, printable
from ..common.files import RefusedFile
from ..engine.data import load_split
from ..engine.training import DIVERGED, train_model
from ..records.logged import ExportedRun, StoredRun, is_export, logged_diff
from ..records.operations import HARNESS_TAG
from ..records.provenance import DIFF_ARTIFACT, code_diff, diff_tag, git_state, logged_commit, package_versions
from ..records.recorder import RecorderProcess
from ..records.runs import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, outcome_metrics, save_weights, train_and_record
from ..records.store import check_exists, check_server, check_writable
from ..records.tags import (
    CONDITION,
    DATASET_DIGEST,
    GIT_COMMIT,
    GIT_DIFF,
    GIT_DIRTY,
    OPTUNA_STUDY,
    OPTUNA_TRIAL,
    PRUNED_EPOCH,
    REPRODUCES,
    STATE,
    STUDY,
    VERSION,
)
from ..records.weights import parse_config, parse_weights
from .logged_methods import consent, load_methods, plan_methods
from .rebuild import changes_summary, code_differs, train_rebuilt, worktree

NOT_COMPARED = {"train_seconds"}
CARRIED_TAGS = (STUDY, CONDITION, "harness.phase", OPTUNA_TRIAL, OPTUNA_STUDY, "mlflow.parentRunId")
"""Tags a reproduction keeps from its original, so it sits beside it in the UI."""


def load_logged_config(logged):
    content = logged.artifact(CONFIG_ARTIFACT)
    if content is None:
        raise HarnessError(f"{logged.where} has no {CONFIG_ARTIFACT} artifact to rebuild it from")
    return content.decode(errors="replace"), parse_config(content, f"{logged.where} {CONFIG_ARTIFACT}")


def load_logged_data(run, config):
    """The split the run saw. A CSV must be the very data it was trained on before anything of it is
    used or shown: a changed or foreign file is refused by its digest, without echoing its content."""
    logged = run["tags"].get(DATASET_DIGEST)
    if config.dataset != "csv":
        return load_split(config)
    where = f"run {run['run_id']}: csv = {config.csv!r}"
    try:
        split = load_split(config)
    except RefusedFile as exc:  # its message names the path and why, and quotes nothing the file holds
        raise HarnessError(f"run {run['run_id']}: {exc}; nothing of it was used") from None
    except HarnessError:  # other messages may quote the file's content: a foreign file is not echoed
        raise HarnessError(f"{where} cannot be loaded as the run loaded it (moved, changed or not a CSV)") from None
    if logged is None or split.digest != logged:
        raise HarnessError(
            f"{where} is not the data this run was trained on (its digest differs from the "
            "logged dataset_digest); nothing of it was used"
        )
    return split


def environment_warnings(run, split, rebuilt=False):
    """What differs from the run's machine and code; the code is not said when it was ``rebuilt``."""
    tags, warnings = run["tags"], []
    commit, _ = git_state()
    if logged_commit(tags) not in (None, commit) and not rebuilt:
        warnings.append(f"git commit differs: logged {logged_commit(tags)[:12]}, now {commit[:12]}")
    differing = []
    for name, version in package_versions().items():
        logged = tags.get(f"{VERSION}{name}")
        if logged is not None and logged != version:
            warnings.append(f"{name} version differs: logged {logged}, now {version}")
            if name not in ("python", "harness") and logged != "absent":
                differing.append(f"{name}=={logged}")
    if differing:
        warnings.append(f"the logged versions: pip install {' '.join(differing)}")
    if not rebuilt and tags.get(GIT_DIFF) and tags.get(GIT_DIFF) != diff_tag(code_diff()).get(GIT_DIFF):
        warnings.append(
            f"the run was made from uncommitted code (git_diff {tags[GIT_DIFF]}): its {DIFF_ARTIFACT} artifact "
            f"holds the change; `git apply` it on commit {(logged_commit(tags) or '?')[:12]} to rebuild that code"
        )
    if tags.get(DATASET_DIGEST) not in (None, split.digest):
        warnings.append(f"dataset digest differs: logged {tags[DATASET_DIGEST][:12]}, now {split.digest[:12]}")
    return warnings


def reproduced_points(result):
    points = {k: list(enumerate(v, start=1)) for k, v in result.history.items()}
    for key, value in outcome_metrics(result).items():
        points.setdefault(key, []).append((result.epochs_run, value))
    return points


RTOL = 1e-9
"""Relative tolerance across machines for a float64 run: another BLAS or CPU sums in another order (about
1e-15 per operation, amplified over epochs); a real change of code or data moves curves by far more."""

RTOLS = {"float64": RTOL, "float32": 1e-5}
"""The default tolerance per dtype of the logged run. A float32 value is rounded 5e8 times more coarsely:
under another OpenBLAS kernel (``OPENBLAS_CORETYPE=Haswell`` against SkylakeX) float32 runs of SGD with
momentum on digits (40-60 epochs) differed by up to 8.2e-7 relative (float64: 2.5e-11), which 1e-9 would
refuse; 1e-5 is 12x above that and the reference curves' float32 tolerance (tests/test_reference_curves.py).
Some float32 runs amplify that rounding beyond any tolerance (Adam on MNIST-1D: a validation prediction
flipped by epoch 11, the final weights a tenth of their scale apart): those are not reproduced off their
machine, and the verdict says why (docs/results.md)."""


def default_rtol(dtype):
    """The tolerance ``reproduce`` applies to a run logged in ``dtype`` when none is asked for."""
    return RTOLS.get(dtype, RTOL)


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


def reproduce(source, uri, out=None, err=None, rtol=None, here=False, rebuild_code=False, summary=None):
    """Retrain a logged run (a run id in the store at ``uri``, or an export file, which needs no store)
    and compare every curve; exit code 0 or 1. A run in the store trains with the code it was trained
    with (unless ``here``); an export runs none of its own code unless ``rebuild_code``: whoever wrote
    the file chose its patch and the digest it is checked against. ``summary``: a dict filled with the
    verdict as plain data (``--json``)."""
    out, err, summary = out or sys.stdout, err or sys.stderr, {} if summary is None else summary
    if is_export(source):
        return _reproduce(ExportedRun(source), None, out, err, rtol, rebuild_code, summary)
    check_server(uri)
    check_exists(uri, f"run {source!r}")
    check_writable(uri)  # the reproduction is logged as a run
    with RecorderProcess(uri) as recorder:
        return _reproduce(StoredRun(recorder, source), recorder, out, err, rtol, not here, summary)


def _reproduce(logged, recorder, out, err, rtol, rebuild, summary):
    run, tags = logged.run, logged.run["tags"]
    config_json, config = load_logged_config(logged)
    rtol = default_rtol(config.dtype) if rtol is None else rtol  # the dtype the run was logged in
    weights = load_logged_weights(logged)
    methods = plan_methods(logged, config, recorder is None, rebuild)  # checked by digest; nothing imported
    split = load_logged_data(run, config)  # bad input is one line, before anything else is said
    why, diff = code_to_run(logged, rebuild, recorder is None, err)
    pruned = tags.get(STATE) == "pruned"
    stop_at = int(tags[PRUNED_EPOCH]) if pruned and tags.get(PRUNED_EPOCH, "").isdigit() else None
    keys = [k for k in run["metrics"] if k not in NOT_COMPARED]
    include_test = any(k.startswith("test_") for k in keys)
    with contextlib.ExitStack() as stack:
        trainer, code = train_model, None
        if why is not None:  # checked out and patched (nothing of it runs yet), then the consent line
            root, folder = stack.enter_context(worktree(logged_commit(tags), diff, logged.where))
            say_rebuild(logged, why, diff, err, methods, root, folder.relative_to(root))
        paths = load_methods(methods, config, stack, logged.where, err, say=why is None)
        for warning in environment_warnings(run, split, rebuilt=why is not None):  # after what runs is said
            print(printable(f"warning: {warning}"), file=err)
        if why is not None:
            trainer = rebuilt_trainer(folder, config_json, stop_at, split, logged.where, paths)
            code = {"tags": {k: tags[k] for k in CODE_TAGS if k in tags}, "diff": diff}
        result, new_id = _retrain(logged, recorder, config, split, trainer, code, stop_at, include_test, pruned)
    rows = compare_curves(logged.histories(keys), reproduced_points(result), rtol)
    weights_row = compare_weights(weights, reproduced_weights(result, split), rtol)
    said = "; not logged: an export is checked without a store" if new_id is None else ""
    as_run = "" if new_id is None else f" as run {new_id}"
    print(f"reproduced {run['run_id']}{as_run} ({result.status}, {result.epochs_run} epochs){said}", file=out)
    if why is not None:
        rebuilt = f"commit {logged_commit(tags)[:12]}" + (f" + its {DIFF_ARTIFACT}" if tags.get(GIT_DIFF) else "")
        print(f"trained with the logged code: {rebuilt}, rebuilt in a temporary git worktree", file=out)
    code = print_verdict(rows, rtol, out, weights_row, config.dtype)
    summary.update(
        run_id=run["run_id"],
        reproduction_run_id=new_id,
        status=result.status,
        epochs_run=result.epochs_run,
        rebuilt_code=why is not None,
        reproduced=code == 0,
        rtol=rtol,
        compared=[
            {"metric": r["metric"], "largest": r["largest"], "relative": r["relative"], "first_beyond": r["beyond"]}
            for r in [*rows, *([weights_row] if weights_row else [])]
        ],
    )
    return code


def code_to_run(logged, rebuild, export, err):
    """(why the run's code is rebuilt, its checked patch): (None, ...) when this checkout's code trains.
    An export's patch is checked even when it is not used: a file that does not match itself is refused."""
    tags = logged.run["tags"]
    why = code_differs(tags)
    diff = logged_diff(logged) if (why and rebuild) or export else None
    if why is not None and not rebuild and export:
        print(
            f"{why}; an export's code is not rebuilt unless you pass --rebuild-code; retraining with this "
            "checkout's code",
            file=err,
        )
    if why is None or not rebuild:
        return None, diff
    if tags.get(GIT_DIFF) and diff is None:
        raise HarnessError(
            f"{logged.where}: {why}, and its {DIFF_ARTIFACT} was not logged ({tags[GIT_DIFF]}); "
            "pass --here to retrain with this code"
        )
    return why, diff


def load_logged_weights(logged):
    """The run's final weights as checked arrays, None when it logged none (a diverged run): read before
    training, so an unreadable file is one line before anything is spent on it."""
    content = logged.artifact(WEIGHTS_ARTIFACT)
    return None if content is None else parse_weights(content, f"{logged.where} {WEIGHTS_ARTIFACT}")


def reproduced_weights(result, split):
    """The arrays the reproduction would log as its weights.npz (None when it diverged)."""
    if result.network is None or result.status == DIVERGED:
        return None
    buffer = io.BytesIO()
    save_weights(result.network, buffer, split)
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def compare_weights(logged, mine, rtol=RTOL):
    """The final weights as one more row of the comparison: per array, the largest absolute difference
    relative to the array's largest magnitude (a weight near 0 is not held to its own tiny scale); names,
    shapes, float dtypes and class names must match exactly (a float32 run's curves can lie within the float32
    tolerance of the same run in float64: the dtype, not the values, tells them apart). None when neither
    has weights."""
    if logged is None and mine is None:
        return None
    if logged is not None and mine is not None and "features" not in logged:
        mine = {k: v for k, v in mine.items() if k != "features"}  # logged before the names were kept
    row = {"metric": WEIGHTS_ARTIFACT, "largest": 0.0, "relative": 0.0, "relative_step": None, "beyond": None}
    if logged is None or mine is None or sorted(logged) != sorted(mine):
        names = "none" if mine is None else ", ".join(sorted(mine))
        row.update(largest=math.inf, relative=math.inf)
        row["beyond"] = ("arrays", "none" if logged is None else ", ".join(sorted(logged)), names)
        return row
    for key in sorted(logged):
        a, b = logged[key], mine[key]
        other_float = a.dtype.kind == "f" and a.dtype != b.dtype  # trained in another dtype than logged
        if (
            a.shape != b.shape
            or a.dtype.kind != b.dtype.kind
            or other_float
            or (a.dtype.kind not in "fc" and not (a == b).all())
        ):
            row.update(largest=math.inf, relative=math.inf, relative_step=key)
            row["beyond"] = (key, f"{a.dtype} {a.shape}", f"{b.dtype} {b.shape}")
            return row
        if a.dtype.kind not in "fc" or a.size == 0:
            continue
        gaps = np.abs(a.astype(np.float64) - b.astype(np.float64))
        at = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
        scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
        largest = float(gaps[at])
        relative = largest / scale if scale else 0.0
        relative = relative if math.isfinite(relative) else math.inf  # a non-finite weight never matches
        row["largest"] = max(row["largest"], largest)
        if relative > row["relative"]:
            row["relative"], row["relative_step"] = relative, key
        if relative > rtol and row["beyond"] is None:
            row["beyond"] = (f"{key}[{', '.join(map(str, at))}]", a[at].item(), b[at].item())
    return row


def say_rebuild(logged, why, diff, err, methods, root, imports="."):
    """The first line of a rebuild: all the code that will run (the commit, the patch's digest and every
    path it changed in the worktree at ``root``, what of it runs unasked from ``imports``, the folder the
    code is imported from; the run's own methods from their logged source), before any of it does."""
    tags = logged.run["tags"]
    runs = f"commit {logged_commit(tags)[:12]}"
    if diff is not None:
        runs += f" + its {DIFF_ARTIFACT} (sha256 {tags[GIT_DIFF]}; {changes_summary(root, str(imports))})"
    runs += "".join(f" + {method}" for method in consent(methods))
    line = f"{why}: rebuilt that code in a temporary git worktree to retrain there; it runs {runs}"
    print(printable(line), file=err)


CODE_TAGS = ("mlflow.source.git.commit", GIT_COMMIT, GIT_DIRTY, GIT_DIFF)
"""The code-state tags a reproduction with rebuilt code carries: that code's, not this checkout's."""


def rebuilt_trainer(folder, config_json, stop_at, split, where, paths=()):
    """``train_model``'s signature over the rebuilt code: it trains in a child process, then the callbacks
    (the live record) see each epoch's metrics. ``paths``: where the child imports the run's own methods."""

    def trainer(config, split_here, callbacks=(), include_test=True):
        result, digest = train_rebuilt(folder, config_json, stop_at, include_test, where, paths)
        if digest != split.digest:
            raise HarnessError(f"{where}: the rebuilt code loads other data than this code (digest {digest[:12]})")
        for epoch in range(1, result.epochs_run + 1):
            metrics = {key: values[epoch - 1] for key, values in result.history.items() if len(values) >= epoch}
            for callback in callbacks:
                callback(epoch, metrics)
        return result

    return trainer


def _retrain(logged, recorder, config, split, trainer, code, stop_at, include_test, pruned):
    """(result, id of the run that records it); an export is retrained without recording (None)."""
    callbacks = [lambda epoch, metrics: epoch >= stop_at] if stop_at else []
    if recorder is None:
        return trainer(config, split, callbacks=callbacks, include_test=include_test), None
    run, tags = logged.run, logged.run["tags"]
    new_id, result, _ = train_and_record(
        config,
        split,
        recorder,
        run["experiment_name"],
        tags={**{k: tags[k] for k in CARRIED_TAGS if k in tags}, HARNESS_TAG: "reproduce", REPRODUCES: run["run_id"]},
        callbacks=callbacks,
        include_test=include_test,
        run_name=f"{run['run_name']}-reproduce",
        state_names={"stopped": "pruned"} if pruned else None,
        trainer=trainer,
        code=code,
    )
    return result, new_id


FLOAT32_NOTE = (
    "(a float32 run: on the machine that trained it, it reproduces bit for bit; on another CPU or BLAS kernel "
    "training can grow float32 rounding beyond any tolerance, as it does for Adam on MNIST-1D)"
)


def print_verdict(rows, rtol, out, weights=None, dtype="float64"):
    """The table and the verdict (exit code): every metric, and the final weights when there are any."""
    print(f"{'metric':<22} {'largest |difference|':>20} {'relative':>9}  first step beyond tolerance", file=out)
    for row in rows + ([weights] if weights else []):
        beyond = row["beyond"]
        where = "" if beyond is None else f"step {beyond[0]}: {beyond[1]!r} -> {beyond[2]!r}"
        if beyond is not None and row is weights:
            where = f"{beyond[0]}: {beyond[1]!r} -> {beyond[2]!r}"
        print(f"{row['metric']:<22} {row['largest']:>20.3g} {row['relative']:>9.2g}  {where}", file=out)
    mismatched = [row["metric"] for row in rows if row["beyond"] is not None]
    differ = []
    if weights is not None and weights["beyond"] is not None:
        differ.append(f"the final weights differ beyond a relative {rtol:g} ({weights['beyond'][0]})")
    if mismatched:
        differ.append(
            f"{len(mismatched)} of {len(rows)} metrics differ beyond a relative {rtol:g} ({', '.join(mismatched)})"
        )
    if differ:
        print(f"NOT reproduced: {'; '.join(differ)}", file=out)
        if dtype == "float32":
            print(FLOAT32_NOTE, file=out)
        return 1
    what = f"{len(rows)} metrics" + (" and the final weights" if weights else " (no final weights logged)")
    worst = max(rows + ([weights] if weights else []), key=lambda row: row["relative"], default=None)
    if worst is None or worst["relative"] == 0.0:
        print(f"reproduced exactly: {what}, every step identical", file=out)
    else:
        at = "" if worst is weights else " at step"
        print(
            f"equal within tolerance (relative {rtol:g}): {what}; largest relative difference "
            f"{worst['relative']:.2g} in {worst['metric']}{at} {worst['relative_step']}",
            file=out,
        )
    return 0
