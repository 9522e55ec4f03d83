"""The harness's own tags, every one under ``harness.`` (MLflow's own are ``mlflow.``); and the names runs
recorded before carried, read through ``current_names`` alone: one mapping, in one place.

A setting of a run is a param, a measured number a metric, and who a run is and how it ran (its
condition, Optuna trial, state, data digest, code and machine) a tag, each fact once.
"""

PREFIX = "harness."
KIND = "harness.kind"
"""Every run the harness makes carries it: train, search, confirm, condition, reproduce."""
STATE = "harness.state"
"""running until its results are stored (written last), then complete, pruned, diverged, stopped, ...;
or why it holds none (failed, killed, interrupted, unrecorded, orphaned, artifacts_lost)."""
STUDY = "harness.study"
CONDITION = "harness.condition"
OPTUNA_STUDY = "harness.optuna_study"
OPTUNA_TRIAL = "harness.optuna_trial"
"""The run's trial number in the Optuna study ``harness.optuna_study`` names (a search trial's in the
search, a confirmation seed's in its confirm study)."""
BEST_SEARCH_TRIAL = "harness.best_search_trial"
"""On a confirmation seed: the search trial whose settings it trains (the best when it was confirmed)."""
SEARCH_ID = "harness.search_id"
RERUN = "harness.rerun"
SUPERSEDED = "harness.superseded"
INVOCATION = "harness.invocation"
DATASET_DIGEST = "harness.dataset_digest"
CLASSES, VAL_ROWS, TEST_ROWS = "harness.classes", "harness.val_rows", "harness.test_rows"
ERROR = "harness.error"
EPOCHS_TO_TARGET = "harness.epochs_to_target"
PRUNED_EPOCH = "harness.pruned_epoch"
GIT_DIFF, GIT_DIRTY, GIT_COMMIT = "harness.git_diff", "harness.git_dirty", "harness.git_commit"
"""``harness.git_commit``: runs made before 0.2 (since, MLflow's ``mlflow.source.git.commit``)."""
VERSION = "harness.version."
"""``harness.version.<package>``: the version of each package the run was made with."""
BLAS_THREADS = "harness.blas_threads"
OPTUNA_STORAGE = "harness.optuna_storage"
REPRODUCES = "harness.reproduces"

RENAMED = (
    "state",
    "study",
    "condition",
    "phase",
    "seed",
    "optuna_study",
    "search_id",
    "best_search_trial",
    "rerun",
    "superseded",
    "invocation",
    "dataset_digest",
    "classes",
    "val_rows",
    "test_rows",
    "noisy_train_rows",
    "noisy_val_rows",
    "train_rows_per_class",
    "error",
    "epochs_to_target",
    "pruned_epoch",
    "diverged_epoch",
    "test_correct",
    "reliability",
    "git_diff",
    "git_dirty",
    "git_commit",
    "platform",
    "blas",
    "direction",
    "target_accuracy",
    "optuna_storage",
    "study_file",
    "reproduces",
    "recovered",
    "mlflow_run_id",
)
OLD_NAMES = {"trial": OPTUNA_TRIAL, **{name: PREFIX + name for name in RENAMED}}
"""{name a run recorded before carried: its name now}; ``version.<package>`` became ``harness.version.<package>``.
(``objective``, ``trials`` and ``confirm_seeds`` were a parent's tags too: a param and metrics now, alone.)"""
OLD_VERSION = "version."


def new_name(name):
    """The name a tag has now (a name of now, or anyone else's, unchanged)."""
    if name.startswith(OLD_VERSION):
        return PREFIX + name
    return OLD_NAMES.get(name, name)


def current_names(tags):
    """A run's tags under today's names, whichever it was recorded with; where a run holds both (an old
    run a new sweep tagged again), the new name's value, written later, wins."""
    renamed = {new_name(key): value for key, value in tags.items() if new_name(key) != key}
    return {**renamed, **{key: value for key, value in tags.items() if new_name(key) == key}}
