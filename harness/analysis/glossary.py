"""Where each term of the printed comparison is explained: the sections of docs/statistics.md, named at the
end of the output for the terms it used, so a reader who meets "p Holm" or "E_k" has a door to open.
tests/test_glossary.py checks that every section named here is a heading of that page."""

import re
import textwrap

PAGE = "docs/statistics.md"

TERMS = [
    # (what in the printed text shows the term is used, the words it is named by, the section's anchor)
    (r"^answer:", "the answer", "the-answer"),
    (r"95% CI|95% interval", "test accuracy [95% CI]", "test-accuracy-and-its-interval"),
    (r"Kaplan-Meier", "Kaplan-Meier", "kaplan-meier-median"),
    (r"\bHolm\b|beyond chance|could be chance", "p Holm", "p-values-and-holm-correction"),
    (r"TOST|equivalen", "equivalent (TOST)", "equivalence-tost"),
    (r"\bpower\b|seeds to detect|seeds per condition would tell", "80% power", "power-and-seeds-to-detect"),
    (r"\bE_k\b|expected best validation score", "E_k", "budget-curves-e_k"),
    (r"\bECE\b|[Tt]emperature", "ECE, temperature", "ece-and-temperature-scaling"),
    (r"interaction|\beffects?\b", "effects", "effects-and-interaction"),
    (r"good lr|most forgiving|lr range diverging", "good lr", "learning-rate-robustness"),
    (r"[Mm]ean rank|Friedman|Nemenyi", "mean rank", "ranks-across-data-sets"),
]


def used(text):
    """[(words, anchor)] of the terms ``text`` uses, in the page's reading order."""
    return [(words, anchor) for pattern, words, anchor in TERMS if re.search(pattern, text, re.MULTILINE)]


def explained(text):
    """The closing lines: the sections of the statistics page that explain the terms ``text`` used."""
    found = used(text)
    if not found:
        return ""
    listed = ", ".join(f"{words} #{anchor}" for words, anchor in found)
    return textwrap.fill(
        f"Explained in {PAGE}: {listed}", 110, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
    )
