"""The in-process runner leaves nothing of one command for the next (tests/in_process.py)."""

import sys

from tests import in_process
from tests.helpers import ROOT


def test_a_user_module_from_the_tree_s_examples_is_forgotten_after_the_command(monkeypatch):
    """The benchmark study imports examples/my_methods.py; left in sys.modules, it answered a later
    test's ``import my_methods`` (its own, edited file), so "'my_methods' differs here" was never said."""
    monkeypatch.delitem(sys.modules, "my_methods", raising=False)  # another test's own import, put back after
    with in_process._fresh(ROOT / "examples", {}, ["harness"]):
        import my_methods  # noqa: F401 - what a command's study does

        assert sys.modules["my_methods"].__file__ == str(ROOT / "examples" / "my_methods.py")
    assert "my_methods" not in sys.modules


def test_the_harness_s_own_modules_stay_imported():
    with in_process._fresh(ROOT, {}, ["harness"]):
        import harness.engine.training  # noqa: F401
    assert "harness.engine.training" in sys.modules and "tests.helpers" in sys.modules
