"""The answer in plain words (``analysis.answer``): each of its cases, and every number it says read back
from the analysis it was written from (the summary table and the pairs), never computed apart."""

import math
import re

import pytest

from harness.analysis import comparisons as analysis
from harness.analysis.answer import answer, format_answer
from harness.analysis.findings import p_text
from harness.studies.parse import read_study
from tests.helpers import write_study
from tests.test_analysis import DATASETS, GRID, _records
from tests.test_answers import ONE_FACTOR

ONE = ONE_FACTOR.replace("seeds = 5", 'seeds = 5\nvary = ["init", "split"]')

NOISE = {1: 0.0, 2: 0.01, 3: -0.01, 4: 0.005, 5: -0.005}
SHIFT = {"mse": 0, "cross_entropy": 2, "mse_logits": 4}


def noise(condition, seed, scale=1.0):
    """Each condition's seeds drawn in another order: their differences vary, so the pairs are t-tests."""
    return scale * NOISE[(seed + SHIFT[condition]) % 5 + 1]


@pytest.fixture
def one(tmp_path):
    """Each seed on its own split: the pairs are paired t-tests over the seeds (no test rows' term)."""
    return read_study(write_study(tmp_path, ONE, "one.toml"))


def _said(study, frame):
    result = analysis.analyze(study, frame)
    return result, " ".join(answer(study, result))


def _mean(result, condition):
    return result.table.set_index("condition").loc[condition, "test_accuracy_mean"]


def _pair(result, a, b):
    pairs = result.pairs
    return pairs[pairs["a"].isin([a, b]) & pairs["b"].isin([a, b])].iloc[0]


def test_a_clear_winner_is_said_real_with_the_tables_numbers(one):
    levels = {"mse": 0.90, "cross_entropy": 0.97, "mse_logits": 0.93}
    result, text = _said(one, _records(one, lambda c, s: levels[c] + noise(c, s)))
    best, runner = _mean(result, "cross_entropy"), _mean(result, "mse_logits")
    assert text.startswith(
        f"cross_entropy did best: test accuracy {best:.4f}, {100 * (best - runner):.1f} points above the next best, "
        f"mse_logits ({runner:.4f})."
    ), text
    holm = max(_pair(result, "cross_entropy", o)["p_holm"] for o in ("mse", "mse_logits"))
    assert all(_pair(result, "cross_entropy", o)["verdict"] == "different" for o in ("mse", "mse_logits"))
    match = re.search(
        r"The lead is real, not chance: at (\d+) seeds it is ahead of every other condition \(p Holm "
        r"([0-9.e-]+) or less\)\.$",
        text,
    )
    assert match, text
    assert int(match[1]) == 5 and match[2] == p_text(holm)  # the pairs table's Holm p, to 2 significant digits
    assert "could be chance" not in text


def test_could_be_chance_says_the_seeds_that_would_tell(one):
    """Close conditions with noisy seeds: inconclusive, and the seed count is the largest any open pair of the
    best needs (to detect the margin), as the pairs table holds it."""
    levels = {"mse": 0.955, "cross_entropy": 0.96, "mse_logits": 0.957}
    result, text = _said(one, _records(one, lambda c, s: levels[c] + NOISE[(s + len(c)) % 5 + 1]))
    open_ = [_pair(result, "cross_entropy", o) for o in ("mse", "mse_logits")]
    assert all(p["verdict"] == "inconclusive" for p in open_)
    needed = max(int(p["seeds_needed"]) for p in open_)
    assert needed > 5
    assert "At 5 seeds, the difference from mse_logits and mse could be chance." in text, text
    assert f"About {needed} seeds per condition would tell" in text
    assert f"`[confirm] seeds = {needed}` in {one.path} and run the sweep again; only the new seeds train." in text


def test_too_few_test_rows_says_to_vary_the_split_not_to_add_seeds(tmp_path):
    grid = read_study(write_study(tmp_path, GRID, "grid.toml"))
    levels = {"mse-sgd": 0.95, "mse-momentum": 0.96, "cross_entropy-sgd": 0.97, "cross_entropy-momentum": 0.96}
    result, text = _said(grid, _records(grid, lambda c, s: levels[c] + 0.01 * (s % 2), test_rows=150))
    best, runner = _mean(result, "cross_entropy-sgd"), _mean(result, "mse-momentum")
    limited = result.pairs[result.pairs["rows_limited"]]
    assert len(limited) and set(limited["test_rows"]) == {150}
    assert text.startswith(
        f"cross_entropy-sgd did best: test accuracy {best:.4f}, {100 * (best - runner):.1f} points above the next "
        f"best, mse-momentum ({runner:.4f})."
    ), text
    assert "could be chance" in text and "beyond chance" not in text
    assert "More seeds will not tell: the 150 test rows are too few to detect 1 point." in text
    assert '`[confirm] vary = ["init", "split"]`' in text and "new `name`" in text and grid.path in text


def test_rows_against_one_and_seeds_against_the_others_are_said_apart(tmp_path):
    """The quickstart's shape: the fixed test rows keep mse-sgd's pairs short of 1 point for any number of
    seeds, while the others' pairs need a seed count, the largest of theirs in the pairs table."""
    grid = read_study(write_study(tmp_path, GRID, "grid.toml"))
    levels = {"mse-sgd": 0.9606, "mse-momentum": 0.9717, "cross_entropy-sgd": 0.9717, "cross_entropy-momentum": 0.9678}
    frame = _records(grid, lambda c, s: levels[c] + 0.005 * ((s * (3 + len(c))) % 4), test_rows=360)
    result, text = _said(grid, frame)
    pairs = result.pairs[result.pairs["a"].eq("mse-momentum") | result.pairs["b"].eq("mse-momentum")]
    assert list(pairs[pairs["rows_limited"]]["a"]) == ["mse-sgd"]
    needed = int(pairs[~pairs["rows_limited"]]["seeds_needed"].max())
    assert "Against mse-sgd, more seeds will not tell: the 360 test rows are too few" in text, text
    assert (
        f"Against cross_entropy-momentum and cross_entropy-sgd, about {needed} seeds per condition would tell (to "
        f"detect 1 point): set `[confirm] seeds = {needed}`"
    ) in text


def test_equivalent_conditions_are_said_the_same_within_the_margin(one):
    """Every seed within a hair of the others: equivalent within 1 point (TOST), not "could be chance"."""
    levels = {"mse": 0.9601, "cross_entropy": 0.9603, "mse_logits": 0.9602}
    result, text = _said(one, _records(one, lambda c, s: levels[c] + noise(c, s, 0.1)))
    assert set(result.pairs["verdict"]) == {"equivalent"}
    assert text.startswith("cross_entropy did best: test accuracy 0.9603, less than 0.1 points above the next best")
    assert text.endswith("At 5 seeds, mse_logits and mse are the same as cross_entropy within 1 point."), text
    assert "could be chance" not in text and "seeds per condition would tell" not in text


def test_tied_best_conditions_are_named_together(one):
    levels = {"mse": 0.95, "cross_entropy": 0.97, "mse_logits": 0.97}
    result, text = _said(one, _records(one, lambda c, s: levels[c] + noise(c, s) * (c == "mse")))
    assert text.startswith(
        "cross_entropy and mse_logits did best, with the same test accuracy (0.9700), 2.0 points above the next "
        "best, mse (0.9500)."
    ), text
    holm = max(_pair(result, t, "mse")["p_holm"] for t in ("cross_entropy", "mse_logits"))
    assert text.endswith(f"at 5 seeds they are ahead of every other condition (p Holm {p_text(holm)} or less)."), text


def test_fewer_than_three_seeds_test_nothing_and_say_how_many_to_set(tmp_path):
    study = read_study(write_study(tmp_path, ONE.replace("seeds = 5", "seeds = 2"), "two.toml"))
    result, text = _said(study, _records(study, lambda c, s: {"mse": 0.9, "cross_entropy": 0.95}.get(c, 0.92)))
    assert set(result.pairs["verdict"]) == {"untested"}
    assert text.startswith("cross_entropy did best: test accuracy 0.9500, 3.0 points above the next best, mse_logits")
    assert "With 2 seeds per condition no difference is tested, so this could be chance" in text
    assert f"`[confirm] seeds` to 3 or more (5 is the default) in {study.path}" in text
    assert any("no difference is tested ([confirm] seeds sets them)" in s for s in result.findings)


def _diverged(study, frame, names):
    """Every search trial of ``names`` diverged, so they have no confirmation seed."""
    gone = (frame["kind"] == "confirm") & frame["condition"].isin(names)
    frame = frame[~gone].copy()
    frame.loc[frame["condition"].isin(names), "state"] = "diverged"
    return frame


def test_a_condition_that_produced_nothing_is_named_beside_the_best(one):
    search = lambda c: [(0.01, 0.9, "complete"), (0.1, 0.91, "complete")]  # noqa: E731
    frame = _records(one, lambda c, s: {"mse": 0.9, "cross_entropy": 0.97, "mse_logits": 0.93}[c], search=search)
    result, text = _said(one, _diverged(one, frame, ["mse_logits"]))
    assert text.startswith("cross_entropy did best: test accuracy 0.9700, 7.0 points above the next best, mse (0.9000)")
    assert "mse_logits produced no result (every search trial diverged)." in text


def test_every_condition_diverged_says_so_and_what_to_change(one):
    search = lambda c: [(5.0, math.nan, "diverged"), (9.0, math.nan, "diverged")]  # noqa: E731
    frame = _diverged(one, _records(one, lambda c, s: 0.9, search=search), ["mse", "cross_entropy", "mse_logits"])
    result, text = _said(one, frame)
    assert result.table["seeds"].eq(0).all()
    assert text.startswith("No condition produced a result: mse produced no result (every search trial diverged)")
    assert f"a lower `high` in `[search] lr`, in a copy of {one.path} with a new `name`" in text


def test_nothing_confirmed_yet_says_to_finish_the_sweep(one):
    frame = _records(one, lambda c, s: 0.9, search=lambda c: [(0.01, 0.9, "complete")])
    result, text = _said(one, frame[frame["kind"] == "search"])
    assert text == "No condition has a confirmed test accuracy yet: run the sweep again to finish it."


def test_several_data_sets_give_the_best_mean_rank_and_each_ones_best(tmp_path):
    study = read_study(write_study(tmp_path, DATASETS, "sets.toml"))
    levels = {"mse": 0.9, "cross_entropy": 0.95, "mse_logits": 0.92}
    result, text = _said(study, _records(study, lambda c, s: levels[c.split("-")[-1]] + 0.001 * s))
    ranks = result.ranks
    assert ranks["mean_ranks"]["cross_entropy"] == 1.0
    p = p_text(ranks["p_value_permutation"])
    assert text.startswith(
        "Across 3 data sets, cross_entropy ranks best on average (mean rank 1, 1 = best of 3); the ranks differ "
        f"beyond chance (Friedman p {p}, exact permutation)."
    ), text
    for dataset in ("iris", "wine", "digits"):
        assert f"{dataset}: {dataset}-cross_entropy ({_mean(result, f'{dataset}-cross_entropy'):.4f}, " in text


def test_the_answer_opens_the_output_and_wraps_whole_names(one):
    result, _ = _said(one, _records(one, lambda c, s: {"mse": 0.9, "cross_entropy": 0.97, "mse_logits": 0.93}[c]))
    text = format_answer(answer(one, result))
    lines = text.splitlines()
    assert lines[0].startswith("answer: cross_entropy did best") and all(len(line) <= 110 for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])
    assert not any(line.rstrip().endswith("-") for line in lines)  # never "cross_entropy-" / "sgd"


def test_a_quoted_key_is_never_cut_by_the_wrapping():
    """`[confirm] seeds = 87` split over two lines could not be copied into the study file."""
    from harness.analysis.summary import fill

    key = '`[confirm] vary = ["init", "split"]`'
    for shift in range(60):  # the key at every place of the first line (plain textwrap cuts it in 13 of them)
        wrapped = fill("w " * shift + key + " word" * 30, "answer: ")
        assert any(key in line for line in wrapped.splitlines()), wrapped
        assert all(line.count("`") % 2 == 0 for line in wrapped.splitlines())
