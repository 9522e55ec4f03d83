"""What the harness takes from MLflow and Optuna beyond their documented API, one test each.

pyproject.toml caps both below their next major; a minor release may still change an internal. Each test
here checks one internal directly and, when it fails, names the internal, the installed version and the
harness file that relies on it: adapt that file before allowing the new version (requirements.lock).
The behaviour built on each internal is tested at length elsewhere (test_views, test_relocate,
test_store, test_search, test_outages); these checks are fast and say what changed.
"""

import importlib
import json
import pickle
import re
import sqlite3
import tomllib
import warnings
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import optuna
import pytest

from tests.conftest import TINY_STUDY


def changed(package, internal, where, detail=""):
    """The failure message: what changed, in which version, and who relies on it."""
    return (
        f"{package} {metadata.version(package)} changed {internal}, which {where} relies on"
        f"{': ' + detail if detail else ''}. Adapt {where.split()[0]} before allowing this version "
        "(pyproject.toml caps it, requirements.lock pins it)."
    )


# --- MLflow ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store MLflow built, holding one of every row whose artifact location the relocation rewrites."""
    from harness.records.store import artifact_root, open_client

    folder = tmp_path_factory.mktemp("internals")
    uri = f"sqlite:///{folder}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # the registry resolves a models:/ source through it
        client = open_client(uri)
        experiment = client.create_experiment("internals", artifact_location=artifact_root(uri))
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "{}", "config.json")
        model = client.create_logged_model(experiment, name="m", source_run_id=run.info.run_id)
        client.create_registered_model("internals")
        client.create_model_version("internals", f"models:/{model.model_id}", run.info.run_id, model_id=model.model_id)
    return folder, client.get_run(run.info.run_id)


def test_the_ui_still_reads_the_saved_view_tag_the_sweep_writes():
    """harness/records/views.py writes the UI's saved view (experiment tag ``mlflow.sharedViewState.<key>``,
    state ``deflate;`` + base64 zlib JSON) and harness/records/ui_server.py links to it (``viewStateShareKey``,
    ``workflowType=machine_learning``, ``#/compare-runs``). The UI's compiled bundle must still hold
    each of those names and every key of the state written."""
    import mlflow

    from harness.records.views import VIEW_TAG, read_view, results_view
    from harness.studies.parse import parse_study

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    code = "".join(path.read_text(errors="replace") for path in sorted(bundle.glob("*.js")))
    assert code, changed("mlflow", "the UI's bundle (server/js/build/static/js)", "harness/records/views.py")
    state = read_view(results_view(parse_study(tomllib.loads(TINY_STUDY), "tiny.toml"), now_ms=1))
    names = {
        "harness/records/views.py": [VIEW_TAG.split(".harness")[0] + ".", '"deflate;"', *state],
        "harness/records/ui_server.py study_links": [
            "viewStateShareKey",
            "workflowType",
            '"machine_learning"',
            "compare-runs",
        ],
    }
    for where, wanted in names.items():
        missing = [name for name in wanted if name not in code]
        assert not missing, changed(
            "mlflow", "the UI's saved views and links", where, f"the UI no longer names {missing}"
        )


def test_the_tables_and_columns_the_relocation_rewrites_hold_file_uris_under_the_store(store):
    """harness/records/store.py ``relocate_store`` rewrites, by SQL on MLflow's own tables, every column
    of ``RELOCATED_COLUMNS`` and the ``tags`` table's ``optuna_storage`` value; ``_from_template`` sets
    the default experiment's (id 0) location and times. Each such column must exist and hold the absolute
    ``file://.../artifacts`` URI the relocation looks for; no other column may hold one."""
    from harness.records.store import RELOCATED_COLUMNS

    folder, _ = store
    root = (folder / "artifacts").resolve().as_uri()
    connection = sqlite3.connect(str(folder / "mlflow.db"))
    try:
        names = [t for (t,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {t: {c[1] for c in connection.execute(f'PRAGMA table_info("{t}")')} for t in names}
        wanted = set(RELOCATED_COLUMNS) | {("tags", "key"), ("tags", "value"), ("experiments", "experiment_id")}
        wanted |= {("experiments", "creation_time"), ("experiments", "last_update_time")}
        missing = sorted(f"{t}.{c}" for t, c in wanted if c not in tables.get(t, ()))
        assert not missing, changed(
            "mlflow", "its store's schema", "harness/records/store.py relocate_store", f"no {missing}"
        )
        holding = set()  # the columns holding a location under this store's artifacts
        for table, columns in tables.items():
            for column in columns:
                query = f'SELECT CAST("{column}" AS TEXT) FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE ?'
                values = [v for (v,) in connection.execute(query, (f"%{root}%",))]
                if values:
                    holding.add((table, column))
                    assert all(v.startswith(root) for v in values), changed(
                        "mlflow",
                        f"how it writes {table}.{column}",
                        "harness/records/store.py relocate_store",
                        f"{values}",
                    )
        # a version registered from its logged model (``models:/<id>``, as the harness does) has that as source
        expected = set(RELOCATED_COLUMNS) - {("model_versions", "source")}
        assert expected <= holding <= set(RELOCATED_COLUMNS), changed(
            "mlflow",
            "the columns that hold artifact locations",
            "harness/records/store.py RELOCATED_COLUMNS",
            f"not written: {sorted(expected - holding)}, not rewritten: {sorted(holding - set(RELOCATED_COLUMNS))}",
        )
        default = connection.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()
        assert default, changed("mlflow", "the default experiment's id (0)", "harness/records/store.py _from_template")
    finally:
        connection.close()


def test_a_local_runs_files_lie_under_its_artifact_uri_path(store):
    """harness/sweep/reconcile.py ``artifacts_present`` looks for a run's config.json at the path of its
    ``file://`` artifact URI, without asking MLflow."""
    _, run = store
    location = urlparse(run.info.artifact_uri)
    assert location.scheme == "file" and (Path(unquote(location.path)) / "config.json").is_file(), changed(
        "mlflow", "where a local run's artifacts are stored", "harness/sweep/reconcile.py artifacts_present"
    )


def test_the_store_class_the_harness_builds_stores_with(tmp_path):
    """harness/records/store.py ``_create_sqlite_store`` and harness/records/fingerprints.py ``built`` make
    a store with ``mlflow.store.tracking.sqlalchemy_store.SqlAlchemyStore(db_uri, default_artifact_root)``
    and dispose of its ``engine``; harness/records/recorder.py imports that module early."""
    import inspect

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    parameters = list(inspect.signature(SqlAlchemyStore).parameters)
    assert parameters[:2] == ["db_uri", "default_artifact_root"], changed(
        "mlflow", "SqlAlchemyStore's arguments", "harness/records/store.py _create_sqlite_store", f"{parameters}"
    )
    from harness.records.fingerprints import FINGERPRINTS, expected

    assert expected() is not None, changed(
        "mlflow",
        "its version",
        "harness/records/fingerprints.py FINGERPRINTS",
        f"no fingerprint for it (only {sorted(FINGERPRINTS)}); print one with python -m harness.records.fingerprints",
    )


def test_a_store_of_an_older_schema_is_told_to_be_upgraded(store, tmp_path, monkeypatch):
    """harness/records/store.py ``open_client`` recognizes MLflow's "out-of-date database schema" error by
    its text, to say ``mlflow db upgrade`` instead of "damaged"."""
    import shutil

    from harness.common.errors import HarnessError
    from harness.records.store import open_client

    folder, _ = store
    shutil.copyfile(folder / "mlflow.db", tmp_path / "mlflow.db")
    with sqlite3.connect(str(tmp_path / "mlflow.db")) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")  # MLflow's first schema
    for name in ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        monkeypatch.setenv(name, "true")  # open_client sets them when unset
    with pytest.raises(HarnessError) as error:
        open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "made by an older MLflow" in str(error.value), changed(
        "mlflow", 'the "out-of-date database schema" error', "harness/records/store.py open_client", str(error.value)
    )


def test_the_environment_variables_and_limits_the_harness_sets_or_assumes():
    """Variables the harness sets so MLflow stays quiet and bounded (harness/records/store.py open_client,
    harness/records/ui_server.py run_ui, harness/records/models.py _fluent): one MLflow renamed would be ignored
    without a word. ``METRICS_PER_BATCH`` (harness/records/operations.py) is MLflow's batch limit."""
    import mlflow.environment_variables as variables
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH

    from harness.records.operations import METRICS_PER_BATCH

    used = {
        "harness/records/store.py open_client": [
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
            "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING",
            "MLFLOW_ALLOW_FILE_STORE",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        ],
        "harness/records/ui_server.py run_ui": ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"],
        "harness/records/models.py _fluent": ["MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI"],
    }
    known = {getattr(v, "name", None) for v in vars(variables).values()}
    for where, names in used.items():
        missing = [name for name in names if name not in known]
        assert not missing, changed("mlflow", "its environment variables", where, f"{missing} no longer read")
    assert METRICS_PER_BATCH <= MAX_METRICS_PER_BATCH, changed(
        "mlflow", "MAX_METRICS_PER_BATCH", "harness/records/operations.py METRICS_PER_BATCH", f"{MAX_METRICS_PER_BATCH}"
    )


def test_the_system_tags_the_harness_writes_and_reads():
    """``mlflow.*`` tags written or read by name (operations.py, parents.py, provenance.py, table.py,
    reproduction.py): MLflow's own constants must still spell them so."""
    from mlflow.utils import mlflow_tags

    spelled = {
        "MLFLOW_RUN_NOTE": "mlflow.note.content",
        "MLFLOW_PARENT_RUN_ID": "mlflow.parentRunId",
        "MLFLOW_GIT_COMMIT": "mlflow.source.git.commit",
        "MLFLOW_SOURCE_NAME": "mlflow.source.name",
        "MLFLOW_SOURCE_TYPE": "mlflow.source.type",
        "MLFLOW_USER": "mlflow.user",
        "MLFLOW_DATASET_CONTEXT": "mlflow.data.context",
    }
    found = {name: getattr(mlflow_tags, name, None) for name in spelled}
    assert found == spelled, changed("mlflow", "its system tags", "harness/records (operations, provenance, parents)")


def test_the_server_command_and_its_health_page():
    """harness/records/ui_server.py starts ``mlflow server --backend-store-uri --host --port --workers`` and waits
    for ``/health``."""
    import mlflow.cli

    command = mlflow.cli.cli.commands["server"]
    options = {option for parameter in command.params for option in parameter.opts}
    missing = {"--backend-store-uri", "--host", "--port", "--workers"} - options
    assert not missing, changed(
        "mlflow", "the server command's options", "harness/records/ui_server.py server_command", f"no {missing}"
    )
    server = Path(mlflow.cli.__file__).parent.parent / "server"
    assert any('"/health"' in path.read_text() for path in server.glob("*.py")), changed(
        "mlflow", "the server's /health page", "harness/records/ui_server.py wait_healthy"
    )


def test_a_models_first_save_scans_the_installed_packages_once_per_process(monkeypatch):
    """harness/records/preload.py builds, in the recorders' forkserver, the map of installed packages that
    MLflow builds when a process saves its first model (pinned requirements are checked against it): each
    recorder forked from there saves its models without scanning every distribution again."""
    from mlflow.utils import requirements_utils

    where = "harness/records/preload.py"
    assert callable(getattr(requirements_utils, "_init_modules_to_packages_map", None)), changed(
        "mlflow", "requirements_utils._init_modules_to_packages_map", where
    )
    scans = []
    original = requirements_utils.importlib_metadata.packages_distributions
    monkeypatch.setattr(
        requirements_utils.importlib_metadata, "packages_distributions", lambda: scans.append(1) or original()
    )
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    pinned = [f"numpy=={metadata.version('numpy')}", f"pandas=={metadata.version('pandas')}"]
    requirements_utils.warn_dependency_requirement_mismatches(pinned)  # what a save with them does
    assert scans == [1], changed("mlflow", "the requirement check of a model's save", where, f"{len(scans)} scans")
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    from harness.records import preload

    importlib.reload(preload)  # as the forkserver imports it
    requirements_utils.warn_dependency_requirement_mismatches(pinned)
    assert scans == [1, 1], changed("mlflow", "the map's cache (_MODULES_TO_PACKAGES)", where, f"{len(scans)} scans")


# --- Optuna ---------------------------------------------------------------------------------------------
def test_a_trials_storage_id_and_its_studys_storage(tmp_path):
    """harness/sweep/liveness.py ``Heartbeat`` beats for ``trial._trial_id``; harness/sweep/conditions.py
    ``reap_stale`` asks ``study._storage`` whether heartbeats are on (``heartbeat_enabled``)."""
    from harness.sweep.liveness import heartbeat_enabled
    from harness.sweep.storages import open_storage

    storage, _ = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", "s", heartbeat_seconds=7)
    for study, beats in ((optuna.create_study(storage=storage, study_name="s"), True), (optuna.create_study(), False)):
        inner = getattr(study, "_storage", None)
        assert isinstance(inner, optuna.storages.BaseStorage) and heartbeat_enabled(inner) == beats, changed(
            "optuna", "Study._storage", "harness/sweep/conditions.py reap_stale", f"{inner!r}"
        )
        trial = study.ask()
        trial_id = getattr(trial, "_trial_id", None)
        assert isinstance(trial_id, int) and inner.get_trial(trial_id).number == trial.number, changed(
            "optuna", "Trial._trial_id", "harness/sweep/liveness.py Heartbeat"
        )


def test_a_rdb_storage_as_the_patient_storage_wraps_it(tmp_path):
    """harness/sweep/storages.py ``PatientRDBStorage`` wraps every database call of ``RDBStorage``,
    including the private ones Optuna's cache calls directly, ends a dead session through
    ``scoped_session.remove()`` and pickles without its patience (``__getstate__``). Heartbeats come from
    ``get_heartbeat_interval`` and ``record_heartbeat`` (harness/sweep/liveness.py)."""
    import optuna.storages._cached_storage as cached

    from harness.sweep.storages import PatientRDBStorage, open_storage

    called = set(re.findall(r"self\._backend\.(_[a-z_]+)\(", Path(cached.__file__).read_text()))
    missing = sorted(called - set(vars(PatientRDBStorage)))
    assert not missing, changed(
        "optuna", "the private calls of its storage cache", "harness/sweep/storages.py", f"{missing}"
    )
    storage, _ = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", "s", heartbeat_seconds=7)
    assert callable(getattr(getattr(storage, "scoped_session", None), "remove", None)), changed(
        "optuna", "RDBStorage.scoped_session", "harness/sweep/storages.py PatientRDBStorage._fresh_session"
    )
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    assert storage.get_heartbeat_interval() == 7, changed(
        "optuna", "get_heartbeat_interval", "harness/sweep/liveness.py"
    )
    again = pickle.loads(pickle.dumps(storage))
    assert again.patience is not None and again.get_trial(trial._trial_id).number == trial.number, changed(
        "optuna", "RDBStorage's pickling (__getstate__/__setstate__)", "harness/sweep/storages.py PatientRDBStorage"
    )


def test_a_wrapped_database_error_keeps_its_cause(tmp_path):
    """harness/common/outages.py ``is_database_outage`` finds SQLAlchemy's error in the chain of causes of
    Optuna's ``StorageInternalError``."""
    import sqlalchemy.exc

    from harness.common.outages import _cause

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    with sqlite3.connect(str(tmp_path / "optuna.db")) as connection:
        connection.execute("DROP TABLE study_user_attributes")
    with pytest.raises(Exception) as raised:
        storage.set_study_user_attr(study_id, "k", "v")
    chain, exc = [], raised.value
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = _cause(exc)
    assert any(isinstance(e, sqlalchemy.exc.OperationalError) for e in chain), changed(
        "optuna",
        "how its RDB storage raises a database error",
        "harness/common/outages.py is_database_outage",
        f"{[type(e).__name__ for e in chain]}",
    )


def test_the_journal_backend_takes_a_lock_that_only_acquires_and_releases(tmp_path):
    """harness/sweep/storages.py gives ``JournalFileBackend`` its own kernel lock (``JournalFlock``): an
    object with ``acquire`` and ``release`` only. ``check_journal`` reads the file as one JSON record
    per line."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    asked = []

    class StrictLock:
        def acquire(self):
            asked.append("acquire")
            return True

        def release(self):
            asked.append("release")

        def __getattr__(self, name):
            asked.append(name)
            raise AttributeError(name)

    path = tmp_path / "s.journal"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path), lock_obj=StrictLock())))
    study.tell(study.ask(), 1.0)
    assert set(asked) == {"acquire", "release"}, changed(
        "optuna", "what JournalFileBackend asks of its lock", "harness/sweep/storages.py JournalFlock", f"{set(asked)}"
    )
    lines = path.read_bytes().splitlines()
    try:
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    except ValueError:
        pytest.fail(changed("optuna", "the journal file's format", "harness/sweep/storages.py check_journal"))


@pytest.mark.parametrize("pruner", ["median", "percentile", "hyperband"])
def test_a_pruner_reads_the_study_only_through_what_the_stand_in_gives(pruner):
    """harness/sweep/pruning.py asks the study's pruner with ``_Snapshot`` in place of the study: its
    ``get_trials(deepcopy, states)`` answers from one read, every other attribute is the study's. A
    pruner must still take the references from ``get_trials`` (no references: no pruning) and find
    everything else it asks for."""
    from harness.sweep.pruning import _Snapshot

    made = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        "percentile": lambda: optuna.pruners.PercentilePruner(50.0, n_startup_trials=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8),
    }[pruner]()
    study = optuna.create_study(direction="maximize", pruner=made)
    for _ in range(6):
        finished = study.ask()
        for epoch in range(1, 9):
            finished.report(0.9, epoch)
        study.tell(finished, 0.9)
    trial = study.ask()
    trial.report(0.1, 1)
    frozen = study.get_trials(deepcopy=False)[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            against_all = made.prune(_Snapshot(study, study.get_trials(deepcopy=False)), frozen)
            against_none = made.prune(_Snapshot(study, [frozen]), frozen)
        except AttributeError as exc:
            pytest.fail(
                changed(
                    "optuna",
                    f"what {type(made).__name__} asks of a study",
                    "harness/sweep/pruning.py _Snapshot",
                    str(exc),
                )
            )
    assert against_all == made.prune(study, frozen), changed(
        "optuna", f"{type(made).__name__}.prune", "harness/sweep/pruning.py _Snapshot", "a different decision"
    )
    if (
        pruner != "hyperband"
    ):  # Hyperband's bracket study reads the storage itself (``_Snapshot`` passes on ``_storage``)
        assert against_all and not against_none, changed(
            "optuna",
            f"where {type(made).__name__} reads the finished trials",
            "harness/sweep/pruning.py _Snapshot",
            "not from study.get_trials",
        )


def test_the_warning_the_harness_silences_is_still_spelled_so():
    """harness/sweep/storages.py ``quiet_optuna`` and pyproject.toml's pytest filters silence Optuna's
    "Heartbeat of storage is supposed to be used with Study.optimize" by its text."""
    import optuna.study.study as module

    assert "Heartbeat of storage is supposed to be used with Study.optimize" in Path(module.__file__).read_text(), (
        changed("optuna", "the heartbeat warning's text", "harness/sweep/storages.py quiet_optuna")
    )


def test_every_internal_here_is_of_a_capped_package():
    """The caps these tests guard: an upper bound on each package whose internals are checked here."""
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    caps = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0]: d for d in project["dependencies"]}
    for package in ("mlflow", "optuna"):
        assert "<" in caps[package], (
            f"pyproject.toml: {caps[package]!r} has no upper bound; tests/test_internals.py guards its internals"
        )
