"""The comparison in plain sentences, each stating its evidence: what a reader of the table would conclude,
written from the numbers (``comparisons.Analysis``) so that it cannot say more than they do."""

import math

MAX_SENTENCES = 6
"""Sentences beyond this are left out, unless they state a significant result (never dropped)."""


def findings(study, analysis):
    """Speed to the target, test accuracy and its tests, equivalence and power, the factors' effects (simple
    effects first when they interact), the tuning budget, learning-rate robustness, ranks across data sets."""
    table = analysis.table
    groups = table.groupby(table["condition"].map(analysis.datasets), sort=False)
    speed, accuracy = [], []
    for dataset, rows in groups:
        where = f" on {dataset}" if groups.ngroups > 1 else ""
        speed.append((_speed(study, rows, where), False))
        accuracy.append(_accuracy(study, analysis, rows, dataset, where))
    tail = [(_budget(study, analysis), False), (_robustness(study, table, analysis.datasets), False)]
    effects = _effects(analysis)
    if groups.ngroups == 1:  # one data set: how fast, how far apart, why (effects), and the tuning
        sentences = speed + accuracy + effects + tail
    else:  # several: where they end on each, the ranks across them, then the rest
        sentences = accuracy + [(_ranks(analysis), False)] + tail + speed + effects
    return _capped([(s, essential) for s, essential in sentences if s])


def _capped(sentences):
    """Every essential sentence, and the others in order while fewer than ``MAX_SENTENCES`` are kept."""
    room = MAX_SENTENCES - sum(essential for _, essential in sentences)
    kept = []
    for sentence, essential in sentences:
        if essential or room > 0:
            kept.append(sentence)
            room -= not essential
    return kept


def _speed(study, rows, where):
    known = rows.dropna(subset=["epochs_to_target_median"])
    if len(known) < 2:
        return None
    fast = known.loc[known["epochs_to_target_median"].idxmin()]
    slow = known.loc[known["epochs_to_target_median"].idxmax()]
    if fast["epochs_to_target_median"] == slow["epochs_to_target_median"]:
        return None
    ratio = slow["epochs_to_target_median"] / fast["epochs_to_target_median"]
    never = rows[rows["epochs_to_target_median"].isna()]["condition"].tolist()
    tail = f"; {', '.join(never)} did not reach it in half of its seeds" if never else ""
    return (
        f"{fast['condition']} reaches {study.target_accuracy:.0%} validation accuracy{where} {ratio:.2g}x sooner "
        f"than {slow['condition']} (Kaplan-Meier median {fast['epochs_to_target_median']:g} vs "
        f"{slow['epochs_to_target_median']:g} epochs; reached by {fast['target_reached']} and "
        f"{slow['target_reached']} seeds){tail}."
    )


def _accuracy(study, analysis, rows, dataset, where):
    """(sentence, essential): the spread of mean test accuracies, the failures, and every tested pair's verdict:
    different (significant after Holm), equivalent within the margin (TOST, after Holm), or inconclusive with its
    power."""
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
        return f"{spread}; with fewer than 3 seeds per condition no difference is tested.", False
    total = int((analysis.pairs["verdict"] != "untested").sum())
    significant = tested[tested["significant"]]
    verdicts = (
        f"{len(significant)} of {len(tested)} differences are significant after Holm correction over the {total} "
        "pairs tested"
    )
    if len(significant):
        verdicts += ": " + "; ".join(
            f"{r.a} {'above' if r.mean_difference > 0 else 'below'} {r.b} by {100 * abs(r.mean_difference):.1f} "
            f"points (p_holm {r.p_holm:.2g}, {r.seeds} seeds)"
            for r in significant.itertuples()
        )
    return f"{spread}; {verdicts}{_equivalence(study, tested)}.", True


def _counts(seeds):
    low, high = int(seeds.min()), int(seeds.max())
    return f"{low}" if low == high else f"{low}-{high}"


def _equivalence(study, pairs):
    """The pairs not found different: equivalent within the margin (TOST), or what the study could detect."""
    margin = f"{100 * study.analysis_margin:g} point{'s' * (study.analysis_margin != 0.01)}"
    same = [f"{r.a} and {r.b}" for r in pairs.itertuples() if r.verdict == "equivalent"]
    open_ = [
        f"{r.a} vs {r.b} (could detect {100 * r.detectable:.1f} points; "
        + (f"about {r.seeds_needed}" if r.seeds_needed <= 10_000 else "more than 10000")
        + f" seeds would detect {margin})"
        for r in pairs.itertuples()
        if r.verdict == "inconclusive"
    ]
    text = f"; equivalent within {margin} (TOST, Holm-adjusted p < 0.05): {', '.join(same)}" if same else ""
    return text + (f"; inconclusive at 80% power: {'; '.join(open_)}" if open_ else "")


def _effects(analysis):
    """[(sentence, essential)]: per data set, when the 2x2 interaction is significant its simple effects
    (and no main effect alone); otherwise the main effects, then the interaction."""
    sentences = []
    for dataset in dict.fromkeys(e["dataset"] for e in analysis.effects):
        found = [e for e in analysis.effects if e["dataset"] == dataset and e["p_value"] is not None]
        interaction = next((e for e in found if e["effect"] == "interaction"), None)
        if interaction is not None and interaction["p_value"] < 0.05:
            simple = [e for e in found if e["effect"] == "simple"]
            by_factor = {}
            for e in simple:
                by_factor.setdefault((e["factor"], e["level"], e["baseline"]), []).append(e)
            parts = [
                f"{factor} {level} instead of {baseline} changes it by "
                + " and ".join(f"{_points(e)} under {e['at']}" for e in group)
                for (factor, level, baseline), group in by_factor.items()
            ]
            sentences.append(
                (
                    f"On {dataset}, the factors interact ({interaction['factor']}: {_points(interaction)}), so no "
                    f"main effect is stated alone: " + "; ".join(parts) + ".",
                    True,
                )
            )
            continue
        for effect in (e for e in found if e["effect"] != "simple"):
            what = (
                f"the interaction of {effect['factor']}"
                if effect["effect"] == "interaction"
                else f"{effect['factor']} {effect['level']} instead of {effect['baseline']}"
            )
            verdict = "significant" if effect["p_value"] < 0.05 else "not significant"
            sentences.append(
                (
                    f"On {dataset}, {what} changes test accuracy by {_points(effect)} (paired over {effect['n']} "
                    f"seeds: {verdict} at 5%, uncorrected).",
                    effect["p_value"] < 0.05,
                )
            )
    return sentences


def _points(effect):
    """'+1.1 points [+0.2, +2.0], p 0.01' (the interval and p only when there are)."""
    text = f"{100 * effect['estimate']:+.1f} points"
    if effect["ci_low"] is not None:
        text += f" [{100 * effect['ci_low']:+.1f}, {100 * effect['ci_high']:+.1f}]"
    return text + ("" if effect["p_value"] is None else f", p {effect['p_value']:.2g}")


def _budget(study, analysis):
    """Which condition leads the budget curves from which k, ties within one validation example."""
    parts = []
    for dataset, leading in analysis.leaders.items():
        if not leading:
            continue
        n, since = len(leading), analysis.settles_at[dataset]
        names = " and ".join(leading[-1])
        where = f" on {dataset}" if len(analysis.leaders) > 1 else ""
        if len(leading[-1]) > 1:
            parts.append(f"{names} are tied within one validation example{where} from k = {since} to {n}")
        elif since == 1:
            parts.append(f"{names} leads{where} at every budget from 1 to {n} trials")
        else:
            parts.append(f"{names} leads{where} from k = {since} of {n} trials (another condition or a tie before)")
    if not parts:
        return None
    scale = "" if is_accuracy(study) else f"; the curves are {analysis.budget_scale}"
    caveat = (
        '; TPE\'s trials are not independent draws, so E_k is approximate (sampler = "random" gives exact curves)'
        if study.sampler == "tpe"
        else ""
    )
    return (
        "By expected best validation score after k trials (Dodge et al. 2019; ties: less than one validation "
        "example apart; bootstrap 95% bands in budget_curves.png): " + "; ".join(parts) + scale + caveat + "."
    )


def is_accuracy(study):
    return study.objective.endswith("accuracy")


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


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
