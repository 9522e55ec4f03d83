"""Ctrl-C ends a command with exit 130 and one line, wherever it lands: in a finalizer, in code run by
``exec``, or in a real ``harness compare --register``."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import ROOT, harness, start_harness, write_study

COMMAND = """
import signal
import time

from harness import cli
from harness.commands import compare


def interrupted_here(args):
    {body}
    print("finished")
    return 0


compare.run = interrupted_here
cli.run()
"""


def _run_as_harness(tmp_path, body):
    """``python -m`` a copy of the harness's entry point whose compare command runs ``body``."""
    package = tmp_path / "fake_harness"
    package.mkdir()
    (package / "__main__.py").write_text(textwrap.dedent(COMMAND).replace("{body}", body))
    return subprocess.run(
        [sys.executable, "-m", "fake_harness", "compare", "anything"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
    )


def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops_the_command(tmp_path):
    body = """class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the Ctrl-C arrives while a finalizer runs
            sum(range(1000))

    Finalized()  # collected at once
    time.sleep(5)  # the command goes on working"""
    done = _run_as_harness(tmp_path, body)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "harness compare: interrupted" and "finished" not in done.stdout


def test_a_ctrl_c_that_lands_in_an_import_which_swallows_it_still_stops_the_command(tmp_path):
    """As in Cython's memoryview set-up (numpy.random, scikit-learn): ``Sequence.register`` in a bare
    ``except: pass``, run while the module is imported."""
    (tmp_path / "swallows.py").write_text(
        "import signal\n"
        "try:\n"
        "    signal.raise_signal(signal.SIGINT)  # the Ctrl-C arrives while this module is imported\n"
        "    sum(range(1000))\n"
        "except:  # noqa: E722\n"
        "    pass\n"
    )
    done = _run_as_harness(tmp_path, "import swallows\n    time.sleep(5)  # the command goes on working")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "harness compare: interrupted" and "finished" not in done.stdout


def test_a_ctrl_c_that_lands_in_code_run_by_exec_exits_130(tmp_path):
    """As in a dataclass's methods, which ``dataclasses`` makes with ``exec`` while mlflow is imported."""
    done = _run_as_harness(tmp_path, 'exec("import signal; signal.raise_signal(signal.SIGINT); sum(range(9))")')
    assert done.returncode == 130, done.stderr  # was -2: killed by SIGINT after catching it
    assert done.stderr.strip() == "harness compare: interrupted"


def test_a_ctrl_c_that_leaves_an_object_half_made_prints_nothing_of_its_finalizer(tmp_path):
    """As pyparsing's ``Forward`` while scikit-learn loads (CI, compare --register interrupted at 3 s): the
    interrupt cut ``__init__`` short, and its ``__del__`` later printed "Exception ignored in ..." and a
    traceback under the command's line."""
    body = """class Forward:
        def __init__(self):
            signal.raise_signal(signal.SIGINT)  # the Ctrl-C lands while it is being built
            sum(range(1000))
            self.expr = None

        def __del__(self):
            self.expr is None  # AttributeError on the half-made one

    Forward()
    time.sleep(5)  # the command goes on working"""
    done = _run_as_harness(tmp_path, body)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "harness compare: interrupted", done.stderr


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("swept")
    harness(
        "sweep", write_study(folder), "--trials", "2", "--epochs", "3", "--confirm-seeds", "2", cwd=folder, check=True
    )
    return folder


@pytest.mark.e2e
@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_an_interrupted_compare_register_exits_130_with_one_line(swept, delay):
    process = start_harness("compare", "tiny", "--register", cwd=swept)
    time.sleep(delay)
    signalled = process.poll() is None
    if signalled:
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
    sent = time.monotonic()
    out, err = process.communicate(timeout=120)
    assert "Exception ignored" not in err and "Traceback" not in err, err
    if process.returncode == 0:  # it had finished, or was in the middle of exiting, when the signal came
        assert not signalled or time.monotonic() - sent < 0.2, err
        return
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] in ("harness compare: interrupted", "harness: interrupted"), err
