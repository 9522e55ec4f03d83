"""The comparison in plain sentences, each stating its evidence: what a reader of the table would conclude,
written from the numbers (``comparisons.Analysis``) so that it cannot say more than they do."""

import math

MAX_SENTENCES = 6


def findings(study, analysis):
    """Three to six sentences: speed to the target, test accuracy and its tests, the factors' effects, the
    tuning budget, learning-rate robustness, ranks across data sets."""
    table = analysis.table
    groups = table.groupby(table["condition"].map(analysis.datasets), sort=False)
    speed, accuracy = [], []
    for dataset, rows in groups:
        where = f" on {dataset}" if groups.ngroups > 1 else ""
        speed.append(_speed(study, rows, where))
        accuracy.append(_accuracy(analysis, rows, dataset, where))
    tail = [_budget(analysis), _robustness(study, table, analysis.datasets)]
    if groups.ngroups == 1:  # one data set: how fast, how far apart, why (effects), and the tuning
        sentences = speed + accuracy + _effects(analysis) + tail
    else:  # several: where they end on each, the ranks across them, then the rest
        sentences = accuracy + [_ranks(analysis)] + tail + speed + _effects(analysis)
    return [s for s in sentences if s][:MAX_SENTENCES]


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


def _accuracy(analysis, rows, dataset, where):
    means = rows.dropna(subset=["test_accuracy_mean"])
    if len(means) < 2:
        return None
    low, high = means["test_accuracy_mean"].min(), means["test_accuracy_mean"].max()
    pairs = analysis.pairs[analysis.pairs["dataset"] == dataset]
    tested = pairs[pairs["p_holm"].map(lambda p: p is not None and not _nan(p))]
    spread = (
        f"Test accuracies{where} range from {low:.4f} to {high:.4f} ({100 * (high - low):.1f} points, "
        f"{int(means['seeds'].min())} seeds each)"
    )
    diverged = [
        f"{r.condition} diverged in {r.diverged_seeds} of {r.seeds} confirmation seeds (its mean is over the others)"
        for r in rows.itertuples()
        if r.diverged_seeds
    ]
    if diverged:
        spread += "; " + "; ".join(diverged)
    if not len(tested):
        return f"{spread}; with fewer than 3 seeds per condition no difference is tested."
    total = len(analysis.pairs[analysis.pairs["p_holm"].map(lambda p: p is not None and not _nan(p))])
    significant = tested[tested["significant"]]
    if not len(significant):
        return f"{spread}; no difference is significant after Holm correction ({total} pairs tested in the study)."
    listed = "; ".join(
        f"{r.a} {'above' if r.mean_difference > 0 else 'below'} {r.b} by {100 * abs(r.mean_difference):.1f} points "
        f"(p_holm {r.p_holm:.2g})"
        for r in significant.head(3).itertuples()
    )
    more = f" and {len(significant) - 3} more" if len(significant) > 3 else ""
    return (
        f"{spread}; {len(significant)} of {len(tested)} differences are significant after Holm correction "
        f"over {total} pairs: {listed}{more}."
    )


def _effects(analysis):
    sentences = []
    for effect in analysis.effects:
        if effect["p_value"] is None:
            continue
        what = (
            f"the interaction of {effect['factor']}"
            if effect["effect"] == "interaction"
            else f"{effect['factor']} {effect['level']} instead of {effect['baseline']}"
        )
        verdict = "significant" if effect["p_value"] < 0.05 else "not significant"
        sentences.append(
            f"On {effect['dataset']}, {what} changes test accuracy by {100 * effect['estimate']:+.1f} points "
            f"[{100 * effect['ci_low']:+.1f}, {100 * effect['ci_high']:+.1f}] (paired over {effect['n']} seeds, "
            f"p {effect['p_value']:.2g}: {verdict} at 5%, uncorrected)."
        )
    return sentences[:2]


def _budget(analysis):
    curves = {c: v for c, v in analysis.budget_curves.items() if v}
    if len(curves) < 2:
        return None
    n = min(len(v) for v in curves.values())
    settles = [k for k in analysis.settles_at.values() if k is not None]
    if not settles:
        return None
    latest = max(settles)
    if latest == 1:
        return (
            f"The ranking of conditions by expected best validation score is the same at every budget from 1 to "
            f"{n} trials (Dodge et al. 2019)."
        )
    return (
        f"The ranking of conditions by expected best validation score changes until {latest} of {n} trials "
        f"(Dodge et al. 2019): with fewer trials per condition a different condition would look best"
        + (" - a larger budget could still reorder them." if latest >= n else ".")
    )


def _robustness(study, table, datasets):
    """The most forgiving condition to tune, compared only with conditions on the same data set."""
    known = table.dropna(subset=["good_lr_decades"])
    band = "1 point" if study.objective.endswith("accuracy") else "5%"
    groups = [rows for _, rows in known.groupby(known["condition"].map(datasets), sort=False) if len(rows) >= 2]
    if not groups:
        return None
    risky = table.dropna(subset=["diverged_lr_share"])
    risky = risky.loc[risky["diverged_lr_share"].idxmax()] if len(risky) else None
    tail = (
        f"; {risky['condition']} diverges over {risky['diverged_lr_share']:.0%} of the searched learning-rate range"
        if risky is not None and risky["diverged_lr_share"] > 0
        else "; no condition diverged"
    )
    if len(groups) == 1:
        rows = groups[0]
        wide = rows.loc[rows["good_lr_decades"].idxmax()]
        narrow = rows.loc[rows["good_lr_decades"].idxmin()]
        return (
            f"{wide['condition']} is the most forgiving to tune: its good learning rates (within {band} of its "
            f"best) span {wide['good_lr_decades']:.2g} decades, against {narrow['good_lr_decades']:.2g} for "
            f"{narrow['condition']}{tail}."
        )
    widest = [rows.loc[rows["good_lr_decades"].idxmax()] for rows in groups]
    listed = ", ".join(f"{w['condition']} ({w['good_lr_decades']:.2g} decades)" for w in widest)
    return f"Widest good learning-rate range (within {band} of the best) on each data set: {listed}{tail}."


def _ranks(analysis):
    ranks = analysis.ranks
    if not ranks:
        return None
    order = sorted(ranks["mean_ranks"].items(), key=lambda item: item[1])
    listed = ", ".join(f"{name} {rank:.2g}" for name, rank in order)
    p = ranks["p_value"]
    test = "" if p is None or _nan(p) else f"; Friedman p {p:.2g}"
    caveat = f" ({ranks['caveat']})" if ranks.get("caveat") else ""
    return f"Mean rank by test accuracy across {ranks['data_sets']} data sets: {listed}{test}{caveat}."


def _nan(value):
    return isinstance(value, float) and math.isnan(value)
