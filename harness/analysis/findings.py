"""The comparison in plain sentences, each stating its evidence: what a reader of the table would conclude,
written from the numbers (``comparisons.Analysis``) so that it cannot say more than they do."""

import math

from . import calibration_comparison
from .comparisons import ALPHA, is_accuracy
from .stats import MIN_SEEDS

MAX_SENTENCES = 6
MAX_LISTED = 4
"""Inconclusive pairs explained one by one in a sentence; the others are counted (the table has them all)."""
"""Sentences beyond this are left out, unless they state a significant result or a failure (never dropped)."""


def findings(study, analysis):
    """Conditions that produced nothing, speed to the target, test accuracy and its tests, equivalence and
    power, the factors' effects (simple effects first when they interact), the tuning budget, learning-rate
    robustness, ranks across data sets."""
    table = analysis.table
    groups = table.groupby(table["condition"].map(analysis.datasets), sort=False)
    speed, accuracy = [], []
    for dataset, rows in groups:
        where = f" on {dataset}" if groups.ngroups > 1 else ""
        speed.append((_speed(study, rows, where), False))
        accuracy.append(_accuracy(study, analysis, rows, dataset, where))
        accuracy.append(calibration_comparison.finding(analysis, dataset, list(rows["condition"]), where))
    tail = [(_budget(study, analysis), False), (_robustness(study, table, analysis.datasets), False)]
    effects = _effects(analysis)
    failures = [(_no_result(table, ranked=groups.ngroups > 1), True)]
    if groups.ngroups == 1:  # one data set: how fast, how far apart, why (effects), and the tuning
        sentences = failures + speed + accuracy + effects + tail
    else:  # several: where they differ, the ranks across them, then the rest (a data set without a verdict late)
        kept, rest = [a for a in accuracy if a[1]], [a for a in accuracy if not a[1]]
        sentences = failures + kept + [(_ranks(analysis), False)] + tail + rest + speed + effects
    return _capped([(s, essential) for s, essential in sentences if s])


def _capped(sentences):
    """Every essential sentence (a significant result, a failure), and the others in order while fewer than
    ``MAX_SENTENCES`` are kept."""
    room = MAX_SENTENCES - sum(essential for _, essential in sentences)
    kept = []
    for sentence, essential in sentences:
        if essential or room > 0:
            kept.append(sentence)
            room -= not essential
    return kept


def _no_result(table, ranked):
    """The conditions that produced nothing: every search trial diverged (or failed), so no seed was
    confirmed. They have no test accuracy, no speed and no pair; the ranks count them below every condition
    that trained. A condition still searching, or not yet confirmed, is not one of them."""
    parts = []
    for row in table[table["seeds"] == 0].itertuples():
        diverged = round(row.diverged_share * row.trials) if row.trials else 0
        if row.trials and diverged == row.trials:
            why = f"all {row.trials} of its search trials diverged"
        elif not row.trials and row.failed_trials:
            why = f"all {row.failed_trials} of its search trials failed"
        else:
            continue
        parts.append(f"{row.condition} produced no result: {why}, so it has no confirmation seed and no test accuracy")
    if not parts:
        return None
    return "; ".join(parts) + (" (a failure: it ranks below every condition that trained)." if ranked else ".")


def _speed(study, rows, where):
    """The conditions with at least 3 confirmation seeds, fastest first by Kaplan-Meier median epoch to the
    target: ties named as ties, a condition that never reached it said so; no ratio from fewer seeds."""
    seeded = rows[rows["seeds"] >= MIN_SEEDS]
    known = seeded.dropna(subset=["epochs_to_target_median"])
    never = seeded[seeded["epochs_to_target_median"].isna()]
    few = rows[(rows["seeds"] > 0) & (rows["seeds"] < MIN_SEEDS)]
    if len(seeded) < 2 or not len(known):
        return None
    target = f"{study.target_accuracy:.0%} validation accuracy{where}"
    fastest, slowest = known["epochs_to_target_median"].min(), known["epochs_to_target_median"].max()
    fast = known[known["epochs_to_target_median"] == fastest]
    slow = known[known["epochs_to_target_median"] == slowest]

    reached = "; reached/seeds: " + ", ".join(f"{r.condition} {r.target_reached}" for r in known.itertuples())
    if fastest == slowest:
        text = f"{_listed(fast)} reach {target} at the same Kaplan-Meier median, {fastest:g} epochs ({reached[2:]})"
    else:
        text = (
            f"{_listed(fast)} reach{'es' * (len(fast) == 1)} {target} {slowest / fastest:.2g}x sooner than "
            f"{_listed(slow)} (Kaplan-Meier median {fastest:g} vs {slowest:g} epochs{reached})"
        )
    if len(never):
        text += "; " + _listed(never) + " did not reach it in half of " + ("its" if len(never) == 1 else "their")
        text += " seeds (" + ", ".join(r.target_reached for r in never.itertuples()) + ")"
    if len(few):
        text += f"; {_listed(few)}: fewer than {MIN_SEEDS} seeds, not compared"
    return text + "."


def _listed(rows):
    """'a', 'a and b', 'a, b and c': the conditions of ``rows``."""
    return _joined(list(rows["condition"]))


def _joined(names):
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _accuracy(study, analysis, rows, dataset, where):
    """(sentence, essential): the spread of mean test accuracies, the failures, and every tested pair's verdict:
    different (significant after Holm), equivalent within the margin (TOST, after Holm), or inconclusive with
    what more seeds would do. Essential when a difference is significant or a seed diverged."""
    means = rows.dropna(subset=["test_accuracy_mean"])
    if len(means) < 2:
        return None, False
    low, high = means["test_accuracy_mean"].min(), means["test_accuracy_mean"].max()
    pairs = analysis.pairs[analysis.pairs["dataset"] == dataset]
    tested = pairs[pairs["verdict"] != "untested"]
    spread = (
        f"Test accuracies{where} range from {low:.4f} to {high:.4f} ({100 * (high - low):.1f} points, "
        f"{_counts(means['seeds'])} seeds each)"
    )
    failed = [
        f"{r.condition} diverged in {r.diverged_seeds} of {r.seeds} confirmation seeds (failure rate "
        f"{r.failure_rate:.0%}; each counted at chance, {r.chance_accuracy:.3g})"
        for r in rows.itertuples()
        if r.diverged_seeds
    ]
    if failed:
        spread += "; " + "; ".join(failed)
    if not len(tested):
        return (
            f"{spread}; with fewer than 3 seeds per condition no difference is tested ([confirm] seeds sets them).",
            bool(failed),
        )
    total = int((analysis.pairs["verdict"] != "untested").sum())
    significant = tested[tested["significant"]]
    verdicts = (
        f"{len(significant)} of {len(tested)} differences are significant after Holm correction over the {total} "
        f"pairs tested ({_tests(tested)})"
    )
    if len(significant):
        verdicts += ": " + "; ".join(
            f"{r.a} {'above' if r.mean_difference > 0 else 'below'} {r.b} by {100 * abs(r.mean_difference):.1f} "
            f"points (p Holm {p_text(r.p_holm)}, {r.seeds} seeds)"
            for r in significant.itertuples()
        )
    return f"{spread}; {verdicts}{_equivalence(study, tested)}.", bool(len(significant) or failed)


def _tests(pairs):
    """Which test the p-values come from (``stats.contrast_test``), in words."""
    words = {
        "t (seeds + test rows)": "t-test over the seeds and the test rows' paired sampling",
        "t (seeds + test rows, bounded)": "t-test over the seeds and a bound on the test rows' sampling (rows not "
        "recorded)",
        "paired t (seeds)": "paired t-test over the seeds, each on its own split",
        "exact sign-flip over seeds (no variance)": "exact sign-flip test over the seeds where they do not vary",
    }
    return "; ".join(words.get(t, t) for t in dict.fromkeys(pairs["test"]))


def _counts(seeds):
    low, high = int(seeds.min()), int(seeds.max())
    return f"{low}" if low == high else f"{low}-{high}"


def _equivalence(study, pairs):
    """The pairs not found different: equivalent within the margin (TOST), or inconclusive with the reason
    and what more seeds would do (only seed counts above those used; none where the test rows limit it)."""
    margin = f"{100 * study.analysis_margin:g} point{'s' * (study.analysis_margin != 0.01)}"
    same = [f"{r.a} and {r.b}" for r in pairs.itertuples() if r.verdict == "equivalent"]
    open_ = [f"{r.a} vs {r.b} ({_why_open(r, margin)})" for r in pairs.itertuples() if r.verdict == "inconclusive"]
    if len(open_) > MAX_LISTED + 1:  # the rest are in the table of paired differences (never "1 more pairs")
        open_ = [*open_[:MAX_LISTED], f"{len(open_) - MAX_LISTED} more pairs, in the table of paired differences"]
    text = f"; equivalent within {margin} (TOST, Holm-adjusted p < 0.05): {', '.join(same)}" if same else ""
    text += f"; inconclusive: {'; '.join(open_)}" if open_ else ""
    limited = [r for r in pairs.itertuples() if r.verdict == "inconclusive" and r.rows_limited]
    if limited:
        rows = f"{limited[0].test_rows:g} " if limited[0].test_rows and not _nan(limited[0].test_rows) else ""
        many = f"{len(limited)} of the inconclusive pairs (* above; 'rows' in the table)"
        text += (
            f"; for {'it' if len(limited) == 1 and len(open_) == 1 else many} no number of seeds would detect "
            f"{margin}: the {rows}fixed test rows alone are too few (vary the split per seed: "
            '[confirm] vary = ["init", "split"] in a copy of the study with a new name, or test on more rows)'
        )
    return text


def _why_open(r, margin):
    """Why a pair is inconclusive, and what more seeds would do (only counts above the seeds used)."""
    detect, equivalence = _count(r.seeds_needed), _count(r.seeds_for_equivalence)
    if r.test.startswith("exact sign-flip") and r.mean_difference == 0:
        return "the two get the same count of test rows right in every seed: nothing to test"
    if r.test.startswith("exact sign-flip"):
        same = f"every seed differs by the same {100 * r.mean_difference:+.1f} points"
        if detect and r.seeds < detect:
            return f"{same}; an exact test over {r.seeds} seeds cannot reach p < 0.05 before {detect} seeds"
        return f"{same}, p {p_text(r.p_value)}"
    parts = [f"{100 * r.mean_difference + 0.0:+.1f} points [{100 * r.ci_low + 0.0:+.1f}, {100 * r.ci_high + 0.0:+.1f}]"]
    if r.rows_limited:
        parts[0] += " *"
    elif detect and detect > r.seeds:
        parts.append(f"about {detect} seeds would detect {margin} at 80% power")
    elif detect is None:
        parts.append(f"more than 10000 seeds would be needed to detect {margin}")
    elif r.detectable is not None and not _nan(r.detectable):
        parts.append(
            f"{r.seeds} seeds could detect {100 * r.detectable:.1f} points, yet the estimate neither excludes 0 "
            f"nor lies within {margin} after Holm"
        )
    if equivalence and equivalence > r.seeds:
        parts.append(f"about {equivalence} would show equivalence within {margin} if there is no difference")
    elif not equivalence and not r.rows_limited:
        parts.append(
            f"no number of seeds would show equivalence within {margin} on these test rows"
            if r.test.startswith("t (seeds + test rows")
            else f"more than 10000 seeds would be needed to show equivalence within {margin}"
        )
    return "; ".join(parts)


def _count(value):
    """A seed count of the pairs table as an int; None where there is none (None or NaN)."""
    return None if value is None or _nan(value) else int(value)


def _effects(analysis):
    """[(sentence, essential)]: per data set, when the 2x2 interaction is significant (Holm over the data
    set's main effects and interaction) its simple effects, each said with its pair's verdict (the same
    contrast, Holm-adjusted with the pairs) and no main effect alone; otherwise the main effects, then the
    interaction, each significant or not in words."""
    sentences = []
    for dataset in dict.fromkeys(e["dataset"] for e in analysis.effects):
        found = [e for e in analysis.effects if e["dataset"] == dataset and e["p_value"] is not None]
        family = [e for e in found if e["effect"] != "simple"]
        interaction = next((e for e in family if e["effect"] == "interaction"), None)
        if interaction is not None and interaction["p_holm"] < ALPHA:
            by_factor = {}
            for e in (e for e in found if e["effect"] == "simple"):
                by_factor.setdefault((e["factor"], e["level"], e["baseline"]), []).append(e)
            parts = [
                f"{factor} {level} instead of {baseline}: "
                + " and ".join(f"{_simple(analysis, dataset, e)} under {e['at']}" for e in group)
                for (factor, level, baseline), group in by_factor.items()
            ]
            sentences.append(
                (
                    f"On {dataset}, the factors interact ({interaction['factor']}: {_points(interaction)}, Holm "
                    f"over the {len(family)} effects), so no main effect is stated alone: " + "; ".join(parts) + ".",
                    True,
                )
            )
            continue
        for effect in family:
            what = (
                f"the interaction of {effect['factor']}"
                if effect["effect"] == "interaction"
                else f"{effect['factor']} {effect['level']} instead of {effect['baseline']}"
            )
            significant = effect["p_holm"] < ALPHA
            evidence = f"{_points(effect)}; over {effect['n']} seeds, Holm over the {len(family)} effects"
            said = (
                f"changes test accuracy by {evidence}"
                if significant
                else f"shows no significant change in test accuracy ({evidence})"
            )
            sentences.append((f"On {dataset}, {what} {said}.", significant))
    return sentences


def _simple(analysis, dataset, effect):
    """A simple effect of a 2x2 is a pair: said with the pair's Holm-adjusted p and verdict."""
    plus, minus = effect["pair"]
    pairs = analysis.pairs
    row = pairs[(pairs["dataset"] == dataset) & (pairs["a"].isin([plus, minus])) & (pairs["b"].isin([plus, minus]))]
    if not len(row):
        return _points(effect)
    r = row.iloc[0]
    sign = 1 if r["a"] == plus else -1
    text = f"{100 * sign * r['mean_difference'] + 0.0:+.1f} points"
    if r["ci_low"] is not None and not _nan(r["ci_low"]):
        low, high = sorted((sign * r["ci_low"], sign * r["ci_high"]))
        text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    if r["p_holm"] is not None and not _nan(r["p_holm"]):
        text += f", p Holm {p_text(r['p_holm'])}"
    return f"{text} ({r['verdict']})"


def _points(effect):
    """'+1.1 points [+0.2, +2.0], p Holm 0.01' (the interval and p only when there are)."""
    text = f"{100 * effect['estimate'] + 0.0:+.1f} points"
    if effect["ci_low"] is not None:
        text += f" [{100 * effect['ci_low']:+.1f}, {100 * effect['ci_high']:+.1f}]"
    p = effect.get("p_holm", effect["p_value"])
    return text + ("" if p is None else f", p Holm {p_text(p)}")


def _budget(study, analysis):
    """Which condition leads the budget curves from which k; ties: overlapping bootstrap bands (or, for
    accuracy, less than one validation example apart)."""
    parts = []
    for dataset, leading in analysis.leaders.items():
        if not leading:
            continue
        n, since = len(leading), analysis.settles_at[dataset]
        names = _joined(leading[-1])
        where = f" on {dataset}" if len(analysis.leaders) > 1 else ""
        if len(leading[-1]) > 1:
            span = f"at every budget from 1 to {n} trials" if since == 1 else f"from k = {since} to {n}"
            parts.append(f"{names} are tied{where} {span}")
        elif since == 1:
            parts.append(f"{names} leads{where} at every budget from 1 to {n} trials")
        else:
            parts.append(f"{names} leads{where} from k = {since} of {n} trials (another condition or a tie before)")
    if not parts:
        return None
    scale = "" if is_accuracy(study) else f"; the curves are {analysis.budget_scale}"
    tie = " or they are less than one validation example apart" if is_accuracy(study) else ""
    caveat = (
        '; TPE\'s trials are not independent draws, so E_k is approximate ([sampler] name = "random" gives exact '
        "curves)"
        if study.sampler == "tpe"
        else ""
    )
    return (
        "By expected best validation score after k trials (Dodge et al. 2019; tied: their bootstrap 95% bands "
        f"overlap{tie}; bands in budget_curves.png): " + "; ".join(parts) + scale + caveat + "."
    )


def _robustness(study, table, datasets):
    """Per data set, the condition with the widest good learning rates; called the most forgiving only when no
    other condition of its data set diverges over less of the searched range."""
    known = table.dropna(subset=["good_lr_decades"])
    groups = [rows for _, rows in known.groupby(known["condition"].map(datasets), sort=False) if len(rows) >= 2]
    if not groups:
        return None
    tolerance = f"{study.tolerance:g} {study.objective}"
    parts = []
    for rows in groups:
        wide = rows.loc[rows["good_lr_decades"].idxmax()]
        where = f" on {datasets[wide['condition']]}" if len(groups) > 1 else ""
        safest = rows.loc[rows["diverged_lr_share"].idxmin()]
        shares = f"diverging over {wide['diverged_lr_share']:.0%} of the searched range"
        if not wide["good_lr_decades"] > 0:
            parts.append(f"no condition{where} has two such learning rates")
        elif wide["diverged_lr_share"] <= safest["diverged_lr_share"]:
            parts.append(
                f"{wide['condition']} is the most forgiving{where} ({wide['good_lr_decades']:.2g} decades, {shares})"
            )
        else:
            parts.append(
                f"{wide['condition']} has the widest good range{where} ({wide['good_lr_decades']:.2g} decades) but "
                f"diverges more ({wide['diverged_lr_share']:.0%} of the range against "
                f"{safest['diverged_lr_share']:.0%} for {safest['condition']})"
            )
    return (
        f"Learning rates scoring within {tolerance} of the best validation score of any condition on the same "
        f"data set: " + "; ".join(parts) + "."
    )


def _ranks(analysis):
    ranks = analysis.ranks
    if not ranks:
        return None
    order = sorted(ranks["mean_ranks"].items(), key=lambda item: item[1])
    listed = ", ".join(f"{name} {rank:.2g}" for name, rank in order)
    p = ranks["p_value"]
    test = "" if p is None or _nan(p) else f"; Friedman p {p:.2g} (chi2)"
    exact = ranks.get("p_value_permutation")
    if exact is not None:
        test += f", {exact:.2g} ({ranks['permutation_method']} permutation)"
    if ranks.get("iman_davenport_p") is not None:
        test += f", Iman-Davenport p {ranks['iman_davenport_p']:.2g}"
    if ranks.get("critical_difference") is not None:
        test += f"; Nemenyi critical difference {ranks['critical_difference']:.2g} ranks"
    caveat = f" ({ranks['caveat']})" if ranks.get("caveat") else ""
    return f"Mean rank by test accuracy across {ranks['data_sets']} data sets: {listed}{test}{caveat}."


def p_text(value):
    """A p-value to 2 significant digits, or more where rounding would carry it across 0.05 (0.0496 is
    not said as 0.05 beside "significant")."""
    for digits in (2, 3, 4, 6):
        text = f"{value:.{digits}g}"
        if (float(text) < ALPHA) == (value < ALPHA):
            return text
    return f"{value:.6g}"


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
