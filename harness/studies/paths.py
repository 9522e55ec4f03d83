"""The files a study names (its CSV), resolved from the study file's folder.

A study kept beside its data then runs from any working folder, and its runs record a path that finds
the same file from anywhere (``harness reproduce RUN_ID`` reads the CSV again, checked by its digest).
The study's ``raw`` table keeps the paths as written: its identity does not depend on where it was run.
"""

import os

from ..common.errors import ConfigError, shown
from ..common.files import URL

PATH_KEYS = ("csv",)
"""The settings that name a file."""

RULE = "a path in a study file resolves from the study file's folder"
CONFIG_RULE = "a path in a --config file resolves from that file's folder"


def study_folder(study_path):
    return os.path.dirname(os.path.abspath(study_path))


def resolved(study_path, value):
    """``value`` from the study file's folder; an absolute path, a URL (refused when read) or a value that
    is no path (refused by the settings' check) stays as it is."""
    if not isinstance(value, str) or not value or URL.match(value) or os.path.isabs(value):
        return value
    return os.path.join(study_folder(study_path), value)


def resolve_paths(study_path, table, fixed, conditions):
    """A copy of ``fixed`` and each condition's settings with every path resolved and checked to exist;
    ``table``: the file's ``[conditions]``, to name the key a condition's path came from."""
    fixed = dict(fixed)
    for key in PATH_KEYS:
        if key in fixed:
            fixed[key] = checked(study_path, f"fixed.{key}", fixed[key])
        for condition in conditions:
            if key in condition.settings:
                where = _condition_key(table, condition, key)
                condition.settings = {**condition.settings, key: checked(study_path, where, condition.settings[key])}
    return fixed


def _condition_key(table, condition, key):
    """``conditions.csv`` (a list axis) or ``conditions.<axis>.<bundle>.csv`` (a named bundle)."""
    for axis, level in condition.levels.items():
        levels = table.get(axis)
        if isinstance(levels, dict) and key in levels.get(level, {}):
            return f"conditions.{axis}.{level}.{key}"
    return f"conditions.{key}"


def checked(study_path, key, value, rule=RULE):
    """``value`` resolved from the folder of ``study_path`` (a study or a ``--config`` file), which must
    hold it: a missing file names the file, the key, the path looked at and ``rule``."""
    path = resolved(study_path, value)
    if isinstance(path, str) and path and not URL.match(path) and not os.path.exists(path):
        folder = study_folder(study_path)
        raise ConfigError(
            f"{study_path}: {key} = {shown(value)}: file not found at {shown(path)} ({rule}, {folder}; "
            "an absolute path is used as it is)"
        )
    return path
