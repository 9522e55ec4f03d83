"""The closing pointers of the printed comparison (``analysis.glossary``): each names a heading that exists
in docs/statistics.md, and only the terms the output used are named."""

import re

from harness.analysis import comparisons as analysis
from harness.analysis.glossary import PAGE, TERMS, explained, used
from harness.analysis.summary import format_opening, format_pairs, format_table
from harness.studies.parse import read_study
from tests.helpers import ROOT, write_study
from tests.test_analysis import GRID, _records


def slug(heading):
    """GitHub's anchor of a markdown heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings():
    text = (ROOT / PAGE).read_text()
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def pointers(printed):
    """The anchors the printed output's closing lines name."""
    start = printed.index(f"Explained in {PAGE}: ")
    return re.findall(r"#([\w-]+)", printed[start:])


def test_every_term_points_to_a_heading_of_the_statistics_page():
    known = headings()
    assert "p-values-and-holm-correction" in known and "budget-curves-e_k" in known  # the slug as GitHub makes it
    missing = [anchor for _, _, anchor in TERMS if anchor not in known]
    assert not missing, f"{PAGE} has no heading for {missing}"


def test_the_printed_pointers_resolve_and_name_only_the_terms_used(tmp_path):
    grid = read_study(write_study(tmp_path, GRID, "grid.toml"))
    levels = {"mse-sgd": 0.90, "mse-momentum": 0.91, "cross_entropy-sgd": 0.95, "cross_entropy-momentum": 0.96}
    result = analysis.analyze(grid, _records(grid, lambda c, s: levels[c] + 0.002 * ((s * 7) % 5)))
    printed = "\n".join([format_opening(grid, result), format_table(grid, result.table), format_pairs(result)])
    closing = explained(printed)
    named = pointers(closing)
    assert named and set(named) <= headings()
    assert {"the-answer", "kaplan-meier-median", "p-values-and-holm-correction", "effects-and-interaction"} <= set(
        named
    )
    assert "ece-and-temperature-scaling" not in named  # no probabilities recorded: no ECE printed
    assert "ranks-across-data-sets" not in named  # one data set: no ranks
    assert all(len(line) <= 110 for line in closing.splitlines())
    assert not any(line.rstrip().endswith("-") for line in closing.splitlines())  # an anchor is never cut


def test_terms_are_found_by_their_words():
    assert [anchor for _, anchor in used("p Holm 0.01")] == ["p-values-and-holm-correction"]
    assert [anchor for _, anchor in used("test ECE 0.017; T = 0.65")] == ["ece-and-temperature-scaling"]
    assert used("nothing technical here") == [] and explained("nothing technical here") == ""
