"""A custom loss's or optimizer's own settings: each declared as a :class:`Setting` (name, default, range).

A class lists them as ``declared = (Setting("focal_gamma", 2.0, 0.0, 10.0),)``. A study sets or searches
them like the built-ins' settings (``focal_gamma = 1.5`` in ``[fixed]``, ``[conditions]`` or ``[search]``),
``harness train`` takes ``--set focal_gamma=1.5``, and a run records each as a param of its name. In a
config they are ``TrainConfig.method_settings`` ({name: value}): their form is checked without importing
anything (``config.make_config``), their names and ranges once the class is imported
(``config.check_methods``).

An optimizer gets each as a (T, 1) column attribute (one value per model of the stack); a loss as a float
attribute of a fresh instance, shared by the stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
"""A declared setting's name: a letter, then letters, digits or '_' (a param name in MLflow, a TOML key)."""
MAX_METHOD_SETTINGS = 32
"""Far beyond what one loss and one optimizer declare; a config listing more is a typo or crafted."""


@dataclass(frozen=True)
class Setting:
    """One setting a custom loss or optimizer declares: the value it takes when none is given (``default``)
    and the closed range [``low``, ``high``] a given value must lie in."""

    name: str
    default: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SETTING_NAME.fullmatch(self.name):
            raise ValueError(f"Setting name {self.name!r}: a letter, then at most 63 letters, digits or '_'")
        for part in ("default", "low", "high"):
            value = getattr(self, part)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Setting {self.name!r}: {part} = {value!r} must be a finite number")
            object.__setattr__(self, part, float(value))
        if not self.low <= self.default <= self.high:
            raise ValueError(
                f"Setting {self.name!r}: default {self.default:g} must lie in [low, high] = {self.allowed()}"
            )

    def allowed(self) -> str:
        """The range as messages say it: ``[0, 10]``."""
        return f"[{self.low:g}, {self.high:g}]"
