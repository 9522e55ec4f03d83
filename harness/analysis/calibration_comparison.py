"""Probability quality per condition: the figures of ``engine.calibration`` over the confirmation seeds,
paired comparisons of them between conditions, and each condition's mean reliability diagram.

A diverged seed has no probabilities: it is left out of these figures (and counted, ``seeds_diverged``),
where accuracy scores it at chance. Pairs compare the seeds both conditions finished. The tests are over
the seeds (``stats.contrast_test`` without a rows term): they hold for these test rows, since the ECE is no
mean over rows whose paired sampling could be added as accuracy's is.
"""

import math

import numpy as np
import pandas as pd

from ..records.quality import RELIABILITY_COLUMN, read_reliability
from . import stats

FIGURES = {
    "test_cross_entropy": "NLL",
    "test_brier": "Brier",
    "test_ece": "ECE",
    "test_classwise_ece": "class-wise ECE",
    "test_confidence": "mean confidence",
    "test_accuracy": "accuracy",
    "temperature": "temperature",
    "test_ts_cross_entropy": "NLL after scaling",
    "test_ts_brier": "Brier after scaling",
    "test_ts_ece": "ECE after scaling",
}
"""Column -> name in the tables: each condition's mean and 95% interval over its seeds."""
COMPARED = ("test_ece", "test_cross_entropy", "test_brier", "test_ts_ece")
"""The figures whose differences are tested between conditions (lower is better for each), Holm-adjusted
within each figure over the study's pairs."""
BOUNDS = {"test_brier": 2.0, "test_ts_brier": 2.0, "test_cross_entropy": math.inf, "test_ts_cross_entropy": math.inf}
BOUNDS.update({k: 1.0 for k in FIGURES if "ece" in k or k in ("test_confidence", "test_accuracy")})
"""Each figure's range (from 0): an interval is clipped to it, as accuracy's is (an NLL is never negative)."""
MAX_LISTED = 4
PAIR_COLUMNS = ["dataset", "figure", "a", "b", "seeds", "mean_difference", "ci_low", "ci_high", "p_value", "test"]
ALPHA = 0.05


def seed_figures(confirm, condition):
    """{seed: {figure: value}} of a condition's confirmation seeds that recorded probability quality."""
    seeds = confirm[confirm["condition"] == condition] if len(confirm) else confirm
    if not len(seeds) or "metric.test_ece" not in seeds:
        return {}
    found = {}
    for _, run in seeds.iterrows():
        if run["state"] == "diverged" or pd.isna(run["metric.test_ece"]):
            continue
        found[run["seed"]] = {k: float(run.get(f"metric.{k}", math.nan)) for k in FIGURES}
    return found


def has_probabilities(confirm):
    return len(confirm) > 0 and "metric.test_ece" in confirm and confirm["metric.test_ece"].notna().any()


def condition_table(study, confirm):
    """One row per condition: seeds with figures, seeds diverged, and each figure's mean, ci_low, ci_high."""
    rows = []
    for condition in study.conditions:
        found = seed_figures(confirm, condition.name)
        seeds = confirm[confirm["condition"] == condition.name] if len(confirm) else confirm
        row = {
            "condition": condition.name,
            "seeds": len(found),
            "seeds_diverged": int((seeds["state"] == "diverged").sum()) if len(seeds) else 0,
        }
        for figure in FIGURES:
            values = [f[figure] for f in found.values()]
            mean, low, high = stats.bounded_mean_interval(values, 0.0, BOUNDS.get(figure, math.inf))
            row.update({f"{figure}_mean": mean, f"{figure}_ci_low": low, f"{figure}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def calibration_pairs(study, confirm, groups):
    """Paired differences a - b of each ``COMPARED`` figure over the seeds both finished, per data set
    (``groups``: {data set: [conditions]}); Holm's adjustment within each figure."""
    figures = {c: seed_figures(confirm, c) for names in groups.values() for c in names}
    rows = []
    for figure in COMPARED:
        for dataset, names in groups.items():
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    seeds = sorted(set(figures[a]) & set(figures[b]))
                    differences = [figures[a][s][figure] - figures[b][s][figure] for s in seeds]
                    test = stats.contrast_test(differences)
                    rows.append(
                        {
                            "dataset": dataset,
                            "figure": figure,
                            "a": a,
                            "b": b,
                            "seeds": test["n"],
                            "mean_difference": test["estimate"],
                            "ci_low": test["ci_low"],
                            "ci_high": test["ci_high"],
                            "p_value": test["p_value"],
                            "test": test["test"],
                        }
                    )
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    frame["p_holm"] = None
    for figure in COMPARED:
        within = frame["figure"] == figure
        frame.loc[within, "p_holm"] = pd.Series(stats.holm(frame.loc[within, "p_value"].tolist()), dtype=object).values
    frame["significant"] = [p is not None and not pd.isna(p) and p < ALPHA for p in frame["p_holm"]]
    return frame


def mean_reliability(confirm, condition):
    """The condition's test reliability diagram, mean over its seeds bin by bin: {"before", "after": array of
    (mean confidence, accuracy, rows per seed)}, and "seeds". Only seeds whose bins hold the same numbers of
    rows are averaged (a fixed test size gives the same equal-mass bins); None when no seed recorded one."""
    seeds = confirm[confirm["condition"] == condition] if len(confirm) else confirm
    if not len(seeds) or RELIABILITY_COLUMN not in seeds:
        return None
    diagrams = [read_reliability(text) for text in seeds[RELIABILITY_COLUMN]]
    diagrams = [d for d in diagrams if d is not None]
    if not diagrams:
        return None
    shape = diagrams[0]["before"][:, 2].tolist()
    same = [d for d in diagrams if d["before"][:, 2].tolist() == shape]
    return {
        "before": np.mean([d["before"] for d in same], axis=0),
        "after": np.mean([d["after"] for d in same], axis=0),
        "seeds": len(same),
        "bins": diagrams[0]["bins"],
    }


SHOWN = (
    "test_accuracy",
    "test_confidence",
    "test_ece",
    "test_cross_entropy",
    "test_brier",
    "temperature",
    "test_ts_ece",
)


def format_calibration(analysis):
    """The probability-quality table (means over seeds with 95% intervals), then its tested differences."""
    table = analysis.calibration
    if table is None or not len(table):
        return ""
    shown = pd.DataFrame({"condition": table["condition"], "seeds": table["seeds"]})
    for figure in SHOWN:
        shown[FIGURES[figure]] = [
            _interval(m, lo, hi)
            for m, lo, hi in zip(table[f"{figure}_mean"], table[f"{figure}_ci_low"], table[f"{figure}_ci_high"])
        ]
    lines = [
        "probability quality on the test rows (mean over the seeds that finished [95% CI]; ECE over "
        f"{analysis.calibration_bins} equal-mass bins; 'after scaling': the temperature fitted on validation):",
        shown.to_string(index=False),
    ]
    tested = analysis.calibration_pairs
    if tested is not None:
        tested = tested[tested["figure"].isin(("test_ece", "test_ts_ece"))]
    if tested is not None and len(tested):
        pairs = pd.DataFrame(
            {
                "figure": tested["figure"].map(FIGURES),
                "a - b": [f"{a} - {b}" for a, b in zip(tested["a"], tested["b"])],
                "seeds": tested["seeds"],
                "difference [95% CI]": [
                    _interval(m, lo, hi)
                    for m, lo, hi in zip(tested["mean_difference"], tested["ci_low"], tested["ci_high"])
                ],
                "p Holm": tested["p_holm"].map(lambda p: "" if p is None or pd.isna(p) else f"{p:.2g}"),
            }
        )
        lines += [
            "",
            "paired differences of ECE (over the seeds on these test rows; Holm within each figure; NLL and Brier "
            "too in calibration_pairs.csv):",
        ]
        lines.append(pairs.to_string(index=False))
    return "\n".join(lines)


def _interval(mean, low, high):
    if mean is None or pd.isna(mean):
        return "n/a"
    if low is None or pd.isna(low):
        return f"{mean:.4f}"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def finding(analysis, dataset, names, where=""):
    """(sentence, essential) on probability quality among ``names`` (one data set): whose probabilities can be
    taken at face value (the lowest test ECE) and whose the least, the tested ECE differences, and how far
    temperature scaling closes the gap. Essential when an ECE difference is significant."""
    from .findings import p_text as _p

    table = analysis.calibration
    if table is None:
        return None, False
    rows = table[table["condition"].isin(names) & table["test_ece_mean"].notna()]
    if len(rows) < 2:
        return None, False
    best, worst = rows.loc[rows["test_ece_mean"].idxmin()], rows.loc[rows["test_ece_mean"].idxmax()]
    sentence = (
        f"Probabilities{where}: {best.condition}'s come closest to face value (test ECE {_said(best, 'test_ece')}, "
        f"mean confidence {best.test_confidence_mean:.3f} at accuracy {best.test_accuracy_mean:.3f}); "
        f"{worst.condition}'s the least (ECE {_said(worst, 'test_ece')}, {_confidence(worst)})"
    )
    pairs = analysis.calibration_pairs
    ece = pairs[(pairs["figure"] == "test_ece") & (pairs["dataset"] == dataset)] if pairs is not None else pairs
    tested = ece[ece["p_value"].notna()] if ece is not None else []
    significant = tested[tested["significant"]] if len(tested) else tested
    if not len(tested):
        sentence += "; with fewer than 3 seeds per condition no ECE difference is tested"
    else:
        sentence += (
            f"; {len(significant)} of {len(tested)} ECE differences are significant (paired over the seeds on these "
            "test rows, Holm)"
        )
        listed = significant.sort_values("p_holm").head(MAX_LISTED)
        sentence += "".join(
            f"{': ' if i == 0 else '; '}{r.a} {'above' if r.mean_difference > 0 else 'below'} {r.b} by "
            f"{abs(r.mean_difference):.3f} (p Holm {_p(r.p_holm)})"
            for i, r in enumerate(listed.itertuples())
        )
        more = len(significant) - len(listed)
        sentence += f"; {more} more in the table" if more > 0 else ""
    return sentence + _scaling(analysis.study_settings, pairs, best, worst) + _left_out(rows) + ".", bool(
        len(significant)
    )


def _scaling(settings, pairs, best, worst):
    """How far temperature scaling moves the gap between the best- and worst-calibrated conditions, with the
    test of their difference after scaling."""
    gap, scaled = worst.test_ece_mean - best.test_ece_mean, worst.test_ts_ece_mean - best.test_ts_ece_mean
    if not gap > 0 or pd.isna(scaled):
        return ""
    text = (
        f". Temperature scaling fitted on validation moves {worst.condition}'s ECE from {worst.test_ece_mean:.3f} to "
        f"{worst.test_ts_ece_mean:.3f} (T = {worst.temperature_mean:.2f}) and {best.condition}'s from "
        f"{best.test_ece_mean:.3f} to {best.test_ts_ece_mean:.3f}: "
    )
    if scaled < 0:
        text += f"the order reverses, {worst.condition}'s now {-scaled:.3f} below"
    else:
        text += f"the gap of {gap:.3f} {'narrows' if scaled < gap else 'widens'} to {scaled:.3f}"
    text += _tested_after_scaling(pairs, best.condition, worst.condition)
    noisy = [r.condition for r in (worst, best) if _noisy_validation(settings.get(r.condition, {}))]
    if noisy:
        text += (
            f" ({' and '.join(dict.fromkeys(noisy))} tuned on noisy validation labels, so the temperature fits the "
            "noise, not the clean test labels; clean_validation = true in [fixed] keeps validation clean)"
        )
    return text


def _tested_after_scaling(pairs, a, b):
    from .findings import p_text

    if pairs is None:
        return ""
    found = pairs[(pairs["figure"] == "test_ts_ece") & pairs["a"].isin((a, b)) & pairs["b"].isin((a, b))]
    if not len(found) or pd.isna(found["p_holm"].iloc[0]):
        return " (untested: fewer than 3 seeds)"
    p = found["p_holm"].iloc[0]
    return f" ({'a significant' if p < ALPHA else 'not a significant'} difference after scaling, p Holm {p_text(p)})"


def _noisy_validation(settings):
    return float(settings.get("label_noise", 0.0) or 0.0) > 0 and not settings.get("clean_validation", False)


def _left_out(rows):
    excluded = [f"{r.condition} {r.seeds_diverged}" for r in rows.itertuples() if r.seeds_diverged]
    return f" (diverged seeds have no probabilities and are left out: {', '.join(excluded)})" if excluded else ""


def _said(row, figure):
    return _interval(row[f"{figure}_mean"], row[f"{figure}_ci_low"], row[f"{figure}_ci_high"])


def _confidence(row):
    confidence, accuracy = row.test_confidence_mean, row.test_accuracy_mean
    side = "overconfident" if confidence > accuracy else "underconfident"
    return f"mean confidence {confidence:.3f} at accuracy {accuracy:.3f}: {side}"
