"""The leaderboard of a study that runs the same methods on several data sets (``studies/benchmark.toml``).

Scores are not comparable across data sets but ranks are (Demšar 2006, JMLR 7): each method's rank by
mean test accuracy on every data set, its mean rank, Friedman's test that all rank alike (with the
permutation p and Iman-Davenport's F of ``stats.friedman``), and Nemenyi's critical difference: two
methods whose mean ranks differ by less are not told apart. The critical-difference diagram draws it.
"""

import math

import pandas as pd

from ..records.plots import figure
from . import stats

CD_PLOT = "critical_difference.png"
LEADERBOARD_CSV = "leaderboard.csv"


def leaderboard(study, analysis):
    """{"frame": one row per method (mean rank, then each data set's test accuracy and rank), the Friedman
    results, "critical_difference", "groups"}; None when the study spans a single data set."""
    ranks = analysis.ranks
    if not ranks or not ranks["ranks"]:
        return None
    ranked = pd.DataFrame(ranks["ranks"]).T  # rows: data sets, columns: methods
    result = stats.friedman(-ranked)  # the same ranks again, and the statistics that go with them
    means = pd.Series(result["mean_ranks"]).sort_values()
    accuracy = _accuracies(study, analysis.table)
    frame = pd.DataFrame({"method": means.index, "mean rank": means.to_numpy()})
    for dataset in ranked.index:
        frame[dataset] = [
            f"{accuracy.get((dataset, m), math.nan):.4f} ({ranked.loc[dataset, m]:g})" for m in frame["method"]
        ]
    # methods at the same mean rank share a place (1, 2, 2, 4)
    frame.insert(0, "place", means.round(9).rank(method="min").astype(int).to_numpy())
    cd = result["critical_difference"]
    return {
        "frame": frame,
        "mean_ranks": dict(means),
        "data_sets": result["n_datasets"],
        "statistic": result["statistic"],
        "p_value": result["p_value"],
        "p_value_permutation": result["p_value_permutation"],
        "iman_davenport_p": result["iman_davenport_p"],
        "critical_difference": cd,
        "groups": groups(dict(means), cd) if cd else [],
    }


def _accuracies(study, table):
    """{(data set, method): mean test accuracy}, methods named as ``comparisons.ranks`` names them."""
    from .comparisons import dataset_of, rank_score

    found = {}
    for condition in study.conditions:
        label = "-".join(v for f, v in condition.levels.items() if f != "dataset") or condition.name
        found[(dataset_of(study, condition), label)] = rank_score(table, condition.name)
    return found


def groups(mean_ranks, cd):
    """The maximal runs of methods (in rank order) whose mean ranks lie within ``cd`` of each other: the
    methods Nemenyi's test does not tell apart, the thick bars of Demšar's diagram."""
    order = sorted(mean_ranks, key=mean_ranks.get)
    found = []
    for i, first in enumerate(order):
        last = max(j for j in range(i, len(order)) if mean_ranks[order[j]] - mean_ranks[first] < cd)
        if last > i and not any(a <= i and last <= b for a, b in found):
            found.append((i, last))
    return [order[a : b + 1] for a, b in found]


def format_leaderboard(board):
    """The leaderboard as text: the table, Friedman's test, the critical difference and its groups."""
    if board is None:
        return ""

    def p(value):
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2g}"

    lines = [
        f"leaderboard across {board['data_sets']} data sets (test accuracy mean over the seeds, rank on that "
        "data set in brackets; rank 1 = best):",
        board["frame"].to_string(index=False, float_format=lambda v: f"{v:.2f}"),
        f"Friedman chi2 {p(board['statistic'])}, p {p(board['p_value'])} (permutation p "
        f"{p(board['p_value_permutation'])}; Iman-Davenport p {p(board['iman_davenport_p'])})",
    ]
    if board["critical_difference"]:
        joined = "; ".join(", ".join(g) for g in board["groups"]) or "none"
        lines.append(
            f"Nemenyi critical difference (alpha 0.05): {board['critical_difference']:.2f} mean-rank units; "
            f"not told apart: {joined}"
        )
    return "\n".join(lines)


def cd_diagram(board, title="critical difference diagram"):
    """Demšar's (2006, fig. 1) diagram: the rank axis, each method at its mean rank, the CD as a bar, and
    a thick line under each group of methods closer than the CD."""
    means, cd = board["mean_ranks"], board["critical_difference"]
    order = sorted(means, key=means.get)
    k = len(order)
    half = (k + 1) // 2
    fig = figure(9, 1.6 + 0.32 * half, left=0.02, right=0.98, bottom=0.02, top=0.85)
    ax = fig.subplots()
    ax.set_xlim(0.5 - 1.8, k + 0.5 + 1.8)
    ax.set_ylim(-(half + 1.2), 1.6)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black")
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black")
        ax.text(r, 0.25, str(r), ha="center", va="bottom", fontsize=8)
    for i, name in enumerate(order):
        left = i < half
        row = -(i if left else k - 1 - i) - 1
        edge = 0.5 - 0.3 if left else k + 0.5 + 0.3
        ax.plot([means[name], means[name], edge], [0, row, row], color="black", lw=0.8)
        ax.text(edge, row, f" {name} ({means[name]:.2f}) ", ha="right" if left else "left", va="center", fontsize=8)
    if cd:
        ax.hlines(1.2, 1, 1 + cd, color="black", lw=1.5)
        ax.text(1 + cd / 2, 1.3, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
        for j, group in enumerate(board["groups"]):
            low, high = means[group[0]], means[group[-1]]
            ax.hlines(-0.25 - 0.18 * j, low - 0.03, high + 0.03, color="black", lw=3)
    ax.set_title(title, fontsize=10)
    return fig
