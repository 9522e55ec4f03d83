"""The answer in plain words, the first lines of every printed comparison: which condition did best, by how
much, whether that could be chance at this number of seeds, and what to do next when it could.

Every number in it is one the analysis holds (``comparisons.Analysis``): a mean of the summary table, a
pair's difference, Holm p or seed count, a mean rank. Nothing is computed here but which of them to say,
so the answer cannot claim more than the findings and tables beneath it."""

import math

from .comparisons import ALPHA

TIE_DECIMALS = 4
"""Conditions whose mean test accuracies print the same (to 4 decimals) tied for best."""


def answer(study, analysis):
    """One to three sentences: with several data sets, the ranks across them and each one's best; with one,
    its best condition, how far ahead, whether that could be chance, and what would tell."""
    datasets = list(dict.fromkeys(analysis.datasets[c] for c in analysis.table["condition"]))
    if len(datasets) > 1:
        return _across(study, analysis, datasets)
    return _within(study, analysis, datasets[0] if datasets else None)


def _rows(analysis, dataset):
    table = analysis.table
    return table[table["condition"].map(analysis.datasets) == dataset]


def _within(study, analysis, dataset):
    rows = _rows(analysis, dataset)
    scored = rows.dropna(subset=["test_accuracy_mean"])
    scored = scored.sort_values("test_accuracy_mean", ascending=False, kind="stable")
    failed = _no_result(rows)
    if not len(scored):
        return [_nothing_yet(study, rows, failed)]
    if len(scored) == 1:
        only = scored.iloc[0]
        text = f"Only {only['condition']} produced a result (test accuracy {only['test_accuracy_mean']:.4f})"
        return [text + (f"; {failed}" if failed else "; the others have no confirmed seed yet") + "."]
    top, rest = _best(scored)
    sentences = [_who(scored, top, rest, failed)]
    return sentences + _verdict(study, analysis, dataset, top, rest)


def _best(scored):
    """(names tied for the best mean, the other scored conditions best first)."""
    best = round(float(scored["test_accuracy_mean"].iloc[0]), TIE_DECIMALS)
    tied = scored["test_accuracy_mean"].map(lambda m: round(float(m), TIE_DECIMALS) == best)
    return list(scored[tied]["condition"]), list(scored[~tied]["condition"])


def _who(scored, top, rest, failed):
    """Which condition did best, with its test accuracy, and how far ahead of the next best."""
    means = dict(zip(scored["condition"], scored["test_accuracy_mean"]))
    if not rest:
        text = f"All {len(top)} conditions reached the same test accuracy ({means[top[0]]:.4f})"
    elif len(top) == 1:
        text = f"{top[0]} did best: test accuracy {means[top[0]]:.4f}"
    else:
        text = f"{joined(top)} did best, with the same test accuracy ({means[top[0]]:.4f})"
    if rest:
        runner = rest[0]
        text += f", {_gap(scored, top[0], runner)} above the next best, {runner} ({means[runner]:.4f})"
    return text + (f"; {failed}" if failed else "") + "."


def _gap(scored, best, runner):
    """The difference of the two means in points, as the table shows them."""
    means = dict(zip(scored["condition"], scored["test_accuracy_mean"]))
    points = 100 * (means[best] - means[runner])
    return "less than 0.1 points" if points < 0.05 else f"{points:.1f} points"


def _verdict(study, analysis, dataset, top, rest):
    """Whether the lead is real or could be chance, against each other condition (their pairs' verdicts),
    and what would tell when it could be chance."""
    pairs = {o: [_pair(analysis, dataset, t, o) for t in top] for o in rest}
    if not rest:  # all tied: the pairs among them, none ahead of another
        pairs = {o: [_pair(analysis, dataset, t, o) for t in top if t != o] for o in top}
    status = {o: _status(found) for o, found in pairs.items()}
    status = status if rest else {o: "open" if s == "behind" else s for o, s in status.items()}
    seeds = min((int(p["seeds"]) for found in pairs.values() for p in found), default=0)
    if all(s == "untested" for s in status.values()):
        return [
            f"With {seeds} seed{'s' * (seeds != 1)} per condition no difference is tested, so this could be chance: "
            f"set `[confirm] seeds` to 3 or more (5 is the default) in {study.path}, or pass --confirm-seeds, and "
            "run the sweep again."
        ]
    who, verb = ("it", "is") if len(top) == 1 else ("they", "are")
    behind = [o for o, s in status.items() if s == "behind"]
    held = [p["p_holm"] for o in behind for p in pairs[o]]
    p_said = f"p Holm {_p(max(held))}{' or less' * (len(held) > 1)}" if held else ""
    if behind and len(behind) == len(status):
        lead = f"at {seeds} seeds {who} {verb} ahead of every other condition ({p_said})"
        return [f"The lead is real, not chance: {lead}."]
    margin = _margin(study)
    parts = [f"{who} {verb} ahead of {joined(behind)} beyond chance ({p_said})"] if behind else []
    same = [o for o, s in status.items() if s == "same"]
    if same:
        other = joined(top) if rest else "each other"
        parts.append(f"{joined(same)} {'is' if len(same) == 1 else 'are'} the same as {other} within {margin}")
    open_ = [o for o, s in status.items() if s in ("open", "untested")]
    if open_:
        parts.append(f"the difference {f'from {joined(open_)}' if rest else 'between them'} could be chance")
    sentences = [f"At {seeds} seeds, " + "; ".join(parts) + "."]
    if open_:
        sentences.append(_next(study, open_, pairs, margin))
    return sentences


def _pair(analysis, dataset, a, b):
    """The pairs row of ``a`` and ``b`` as a dict, its difference and interval oriented as a - b."""
    pairs = analysis.pairs
    found = pairs[(pairs["dataset"] == dataset) & pairs["a"].isin([a, b]) & pairs["b"].isin([a, b])]
    row = found.iloc[0].to_dict()
    if row["a"] != a:
        row["mean_difference"] = -row["mean_difference"]
    return row


def _status(found):
    """'behind' when every best condition is significantly above it, 'same' when every one is equivalent
    to it, 'untested' when a pair has too few seeds, else 'open' (could be chance)."""
    verdicts = [p["verdict"] for p in found]
    if "untested" in verdicts:
        return "untested"
    if all(p["verdict"] == "different" and p["mean_difference"] > 0 for p in found):
        return "behind"
    if all(v == "equivalent" for v in verdicts):
        return "same"
    return "open"


def _next(study, open_, pairs, margin):
    """What would tell the open pairs apart: against a condition whose pair the fixed test rows alone keep
    short of the margin for any number of seeds, a split per seed; against the others, the most seeds any of
    their pairs needs (to detect the margin, or, when that many are already there, to show equivalence)."""
    limited = [o for o in open_ if any(p["rows_limited"] for p in pairs[o])]
    rest = [o for o in open_ if o not in limited]
    several = bool(limited and rest)
    said = []
    if limited:
        rows = next(p["test_rows"] for o in limited for p in pairs[o] if p["rows_limited"])
        many = f"the {rows:g} test rows" if _number(rows) else "the test rows"
        said.append(
            f"{f'Against {joined(limited)}, m' if several else 'M'}ore seeds will not tell: {many} are too few to "
            f"detect {margin}. Give each seed its own split (a copy of {study.path} with a new `name` and "
            '`[confirm] vary = ["init", "split"]`), or test on more rows.'
        )
    if rest:
        needs = [_needed(p) for o in rest for p in pairs[o]]
        start = f"Against {joined(rest)}, a" if several else "A"
        if None in needs:
            said.append(f"{start} difference this close to {margin} would take more than 10000 seeds to settle.")
        elif max(needs):
            said.append(
                f"{start}bout {max(needs)} seeds per condition would tell (to detect {margin}): set `[confirm] seeds = "
                f"{max(needs)}` in {study.path} and run the sweep again; only the new seeds train."
            )
        else:
            said.append(
                f"{start} larger `[confirm] seeds` in {study.path} would narrow it: run the sweep again after raising "
                "it; only the new seeds train."
            )
    return " ".join(said)


def _needed(pair):
    """Seeds that would settle an open pair: those to detect the margin if more than used, else those to show
    equivalence within it if more than used; 0 when the seeds used already detect the margin (more still
    narrow the interval); None when no count is known (more than 10000)."""
    for column in ("seeds_needed", "seeds_for_equivalence"):
        value = pair[column]
        if _number(value) and int(value) > int(pair["seeds"]):
            return int(value)
    return 0 if _number(pair["seeds_needed"]) else None


def _nothing_yet(study, rows, failed):
    """No condition has a test accuracy: each produced nothing (diverged or failed), or none is confirmed."""
    if failed and all(_produced_nothing(r) for r in rows.itertuples()):
        search = {p.name for p in study.search}
        fix = (
            "search smaller learning rates (a lower `high` in `[search] lr`, in a copy of "
            f"{study.path} with a new `name`)"
            if "lr" in search
            else f"change the settings that make them diverge in a copy of {study.path} with a new `name`"
        )
        return f"No condition produced a result: {failed}. Next: {fix}, and run that study."
    return "No condition has a confirmed test accuracy yet: run the sweep again to finish it" + (
        f" ({failed})." if failed else "."
    )


def _produced_nothing(row):
    diverged = round(row.diverged_share * row.trials) if row.trials else 0
    return (row.trials and diverged == row.trials) or (not row.trials and row.failed_trials > 0)


def _no_result(rows):
    """'a produced no result (every search trial diverged)' for the conditions that trained nothing."""
    said = []
    for row in rows[rows["seeds"] == 0].itertuples():
        if not _produced_nothing(row):
            continue
        why = "diverged" if row.trials else "failed"
        said.append(f"{row.condition} produced no result (every search trial {why})")
    return "; ".join(said)


def _across(study, analysis, datasets):
    """Several data sets: who ranks best on average and whether the ranks could differ by chance, then each
    data set's best with its verdict."""
    sentences = []
    ranks = analysis.ranks
    if ranks and ranks["mean_ranks"]:
        order = sorted(ranks["mean_ranks"].items(), key=lambda item: item[1])
        first = [name for name, rank in order if rank == order[0][1]]
        p, test = ranks.get("p_value_permutation"), f"{ranks.get('permutation_method')} permutation"
        p, test = (ranks["p_value"], "chi2") if p is None else (p, test)
        text = (
            f"Across {ranks['data_sets']} data sets, {joined(first)} "
            f"{'ranks' if len(first) == 1 else 'share the'} best on average (mean rank {order[0][1]:.2g}, 1 = best "
            f"of {len(order)})"
        )
        if _number(p):
            text += (
                f"; the ranks differ beyond chance (Friedman p {_p(p)}, {test})"
                if p < ALPHA
                else f"; with {ranks['data_sets']} data sets the ranks could differ by chance (Friedman p {_p(p)}, "
                f"{test})"
            )
        sentences.append(text + ".")
    each = [_best_of(analysis, dataset) for dataset in datasets]
    sentences.append("Best on each data set: " + "; ".join(e for e in each if e) + ".")
    return sentences


def _best_of(analysis, dataset):
    """'wine: a (ahead of every other beyond chance)': a data set's best and its verdict, in a few words."""
    scored = _rows(analysis, dataset).dropna(subset=["test_accuracy_mean"])
    if not len(scored):
        return f"{dataset}: no result"
    scored = scored.sort_values("test_accuracy_mean", ascending=False, kind="stable")
    top, rest = _best(scored)
    if not rest:
        return f"{dataset}: {joined(top)} ({scored['test_accuracy_mean'].iloc[0]:.4f}, tied)"
    status = {o: _status([_pair(analysis, dataset, t, o) for t in top]) for o in rest}
    seeds = min(int(_pair(analysis, dataset, t, o)["seeds"]) for t in top for o in rest)
    if all(s == "behind" for s in status.values()):
        said = "ahead of every other beyond chance"
    elif all(s == "untested" for s in status.values()):
        said = f"untested with {seeds} seeds"
    else:
        said = f"could be chance at {seeds} seeds"
    return f"{dataset}: {joined(top)} ({scored['test_accuracy_mean'].iloc[0]:.4f}, {said})"


def _margin(study):
    return f"{100 * study.analysis_margin:g} point{'s' * (study.analysis_margin != 0.01)}"


def _p(value):
    from .findings import p_text

    return p_text(value)


def _number(value):
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def joined(names):
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def format_answer(sentences):
    """The answer as a short paragraph, the first lines of the printed comparison."""
    from .summary import fill

    return fill(" ".join(sentences), "answer: ") + "\n" if sentences else ""
