"""A sweep killed at random moments (the first within its first second) resumes to the same records:
``scripts/kill_resume_loop.py``, three rounds on the tiny study (the script runs ten on the quickstart).

The moments are sampled on purpose, not events: a round whose sweep had already finished when its
moment came killed nothing, and says so as a skip (its resume and records are still checked first), so
the report tells how many rounds really killed a running sweep. The first round's moment is within the
first second, before any sweep can end: it must kill one. The others lie in 1-2.5 s: the tiny sweep took
3-5 s on an idle machine here, and a moment of 4.87 s found it finished in 5 of 5 idle runs."""

import random

import pytest

from tests.helpers import ROOT, load_file, write_study

pytestmark = pytest.mark.e2e


def _script():
    return load_file(ROOT / "scripts" / "kill_resume_loop.py")


@pytest.mark.parametrize(
    "moment,group", [(0.6, True), (random.Random(1).uniform(1, 2.5), False), (random.Random(2).uniform(1, 2.5), True)]
)
def test_a_sweep_killed_at_any_moment_resumes_to_records_that_check_out(tmp_path, moment, group):
    study = write_study(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    finished_first, problems = _script().one_round(study, folder, moment, group, [], 1)
    assert problems == []
    assert not (finished_first and moment < 1), f"the sweep had finished within {moment} s: nothing was killed"
    if finished_first:
        pytest.skip(f"the sweep had finished before the kill at {moment:.2f} s: this round killed nothing")
