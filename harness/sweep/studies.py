"""The study's Optuna studies made (or checked) once, before workers start: refused when the search or
its data changed, held at the largest budget asked before, seeds queued.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from ..common.errors import HarnessError
from ..studies.study import LEGACY_SEARCH
from .conditions import seed_of, trial_state

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from ..studies.study import Condition, Study


def budget_asked_before(study: Study, storage: BaseStorage) -> int:
    """The largest search budget an earlier sweep of this study asked for, 0 when none did.

    Every sweep makes a confirm study named after its budget (``optuna_name``), so the names alone
    tell, in stores of every version. A sweep never runs a smaller budget than this: the result of an
    extended study stands until a larger budget replaces it (a plain re-run after ``--trials 24`` must
    not bring back the 16-trial result)."""
    names = {condition.name for condition in study.conditions}
    pattern = re.compile(re.escape(study.name) + r"/([^/]+)/confirm-after-(\d+)-trials")
    budgets = [
        int(match[2])
        for name in optuna.get_all_study_names(storage)
        if (match := pattern.fullmatch(name)) and match[1] in names
    ]
    return max(budgets, default=0)


def existing_searches(study: Study, storage: BaseStorage) -> dict[str, optuna.Study]:
    """{condition: its search study} for the conditions whose search the storage already holds."""
    known = set(optuna.get_all_study_names(storage))
    return {
        c.name: optuna.load_study(study_name=study.optuna_name(c), storage=storage)
        for c in study.conditions
        if study.optuna_name(c) in known
    }


def check_unchanged(
    study: Study, searches: dict[str, optuna.Study], data_digests: dict[str, str], methods: dict[str, str]
) -> None:
    """Refuse, before anything is created, a study whose search settings or data changed since its
    searches began: trials of two different searches (or data sets) would be mixed in one result."""
    digest = study.settings_digest()
    for name, search in searches.items():
        known = search.user_attrs.get("settings_digest")
        if known is not None and known != digest:
            changed = changed_setting(search.user_attrs.get("settings"), study.identity())
            raise HarnessError(
                f"{study.path}: study {study.name!r} already exists in the storage with other settings"
                + (f" ({changed})" if changed else "")
                + "; give the edited study a new name (or delete its records)"
            )
        _check_methods(study, search.user_attrs.get("method_digests"), methods)
        vary = search.user_attrs.get("confirm_vary")
        if vary is not None and vary != study.confirm_vary:
            raise HarnessError(
                f"{study.path}: [confirm] vary = {study.confirm_vary} in study {study.name!r}, whose seeds were "
                f"confirmed with vary = {vary}: seeds on one split and seeds on their own splits cannot be "
                "compared as one sample; put it back, or give the edited study a new `name`"
            )
        seen = search.user_attrs.get("data_digest")
        if seen is not None and data_digests.get(name) not in (None, seen):
            raise HarnessError(
                f"{study.path}: condition {name}: its data changed since the study began (digest "
                f"{seen[:12]}, now {data_digests[name][:12]}): the study's trials were trained on other data; "
                "give the study a new name to train on this data, or restore the data it was made with"
            )


def _check_methods(study: Study, known: dict[str, str] | None, methods: dict[str, str]) -> None:
    """A custom method's module must be the source the study began with: its trials would mix two methods."""
    for name, digest in sorted((known or {}).items()):
        if methods.get(name, digest) != digest:
            raise HarnessError(
                f"{study.path}: module {name!r} differs from the one study {study.name!r} began with (sha256 "
                f"{methods[name][:12]} here, {digest[:12]} in the storage); restore it, or give the study a new name"
            )


def changed_setting(before: Any, after: dict[str, Any], where: str = "") -> str:
    """The first setting that differs between two study definitions, as 'KEY: OLD -> NEW' ('' when
    the old definition was not recorded)."""
    if not isinstance(before, dict):
        return ""
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        path = f"{where}.{key}" if where else key
        if isinstance(old, dict) and isinstance(new, dict):
            return changed_setting(old, new, path)
        return f"{path}: {old!r} -> {new!r}"
    return ""


def prepare_studies(
    study: Study, storage: BaseStorage, data_digests: dict[str, str] | None = None, methods: dict | None = None
) -> dict[str, optuna.Study]:
    """Create (or check) every condition's search and confirm studies; run once before workers start.

    Creating studies from several processes at once races on a fresh database, so the command that
    starts the workers does it first. A study whose settings or data changed since it was created is
    refused before anything is created. Confirmation seeds the sweep wants and has not queued yet (a
    first sweep, a larger ``--confirm-seeds``) are queued here. Each search gets an id its runs carry,
    so runs of an earlier search of the same name (a journal deleted, a storage replaced) never count.
    """
    data_digests, methods = data_digests or {}, methods or {}
    check_unchanged(study, existing_searches(study, storage), data_digests, methods)
    created = {}
    for condition in study.conditions:
        name = study.optuna_name(condition)
        # direction: "maximize" or "minimize", checked when the study was parsed
        search = optuna.create_study(study_name=name, storage=storage, direction=study.direction, load_if_exists=True)  # type: ignore[arg-type]
        attrs = search.user_attrs
        if attrs.get("settings_digest") is None:
            search.set_user_attr("settings_digest", study.settings_digest())
            search.set_user_attr("settings", study.identity())
            search.set_user_attr("condition_settings", condition.settings)
        if attrs.get("search_id") is None:
            fresh = attrs.get("settings_digest") is None
            search.set_user_attr("search_id", uuid.uuid4().hex[:12] if fresh else LEGACY_SEARCH)
        if attrs.get("confirm_vary") is None:  # a study begun before this was kept: from now on
            search.set_user_attr("confirm_vary", study.confirm_vary)
        if attrs.get("method_digests") is None and methods:
            search.set_user_attr("method_digests", methods)
        if attrs.get("data_digest") is None and condition.name in data_digests:
            search.set_user_attr("data_digest", data_digests[condition.name])
        queue_seeds(study, condition, storage)
        created[condition.name] = search
    return created


def queue_seeds(study: Study, condition: Condition, storage: BaseStorage) -> None:
    """The confirmation seeds this sweep wants and has not queued yet, queued."""
    confirm = optuna.create_study(
        study_name=study.optuna_name(condition, "confirm"),
        storage=storage,
        direction="maximize",
        load_if_exists=True,
    )
    queued = {
        seed_of(t)
        for t in confirm.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        or (t.state == TrialState.FAIL and trial_state(t) == "failed")
    }
    for seed in study.confirm_seed_values():
        if seed not in queued:
            confirm.enqueue_trial({"seed": seed})


def search_ids(searches: dict[str, optuna.Study]) -> dict[str, str]:
    return {name: search.user_attrs["search_id"] for name, search in searches.items()}


def set_parent_run(search_study: optuna.Study, run_id: str) -> None:
    search_study.set_user_attr("mlflow_parent_run_id", run_id)
