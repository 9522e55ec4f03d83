"""Ctrl-C ends a command with exit 130 and one line, wherever it lands: in a finalizer, in code run by
``exec``, or in a real ``harness compare --register``."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, Watched, harness, start_harness, wait_until, write_study

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
    time.sleep(120)  # the command goes on working: the interrupt ends it (the run's timeout is 60 s)"""
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
    done = _run_as_harness(tmp_path, "import swallows\n    time.sleep(120)  # ended by the interrupt, not after it")
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


def _mapped(pid):
    """The files ``pid`` has mapped (its loaded extension modules), as text; empty once it ended."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def _opened(pid):
    """The paths of the files ``pid`` holds open."""
    try:
        return [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:  # it ended, or closed one while it was listed
        return []


MOMENTS = {
    # its own imports under way (numpy's core loaded, after the entry point took over Ctrl-C)
    "importing": lambda pid, folder: "_multiarray_umath" in _mapped(pid),
    # its records being read: the store is open
    "reading-the-store": lambda pid, folder: str(folder / "mlruns" / "mlflow.db") in _opened(pid),
    # registering the models: MLflow loads scikit-learn (where CI once caught it in a half-made object)
    "registering": lambda pid, folder: "/sklearn/" in _mapped(pid),
}
"""Where the Ctrl-C lands, as seen from outside the command: it is sent once the command is there."""


@pytest.mark.e2e
@pytest.mark.parametrize("moment", MOMENTS)
def test_an_interrupted_compare_register_exits_130_with_one_line(swept, moment):
    """The Ctrl-C is sent once the command reached the moment (its imports, the store open, the model
    registry loading scikit-learn), never after a sleep that a fast machine outruns (the command had
    finished) or a slow one undershoots (Python had not yet handed Ctrl-C to the harness): each moment
    has work after it (0.9 s or more here), so the interrupt always finds the command working."""
    process = start_harness("compare", "tiny", "--register", cwd=swept)
    command = Watched(process)
    try:
        wait_until(lambda: MOMENTS[moment](process.pid, swept), f"the command was {moment}", process, every=0.01)
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
        out, err = command.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] in ("harness compare: interrupted", "harness: interrupted"), err
