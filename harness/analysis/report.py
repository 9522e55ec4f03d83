"""The comparison report: plots of a study's records and one self-contained HTML page.

Inputs are the resolved study, the table of records (``records``) and a function giving a run's
per-epoch curve, so the report is drawn the same way from any store. Optuna's own plots come through
the Optuna adapter (``sweep.optuna_plots``, which ``compare`` is handed).
"""

import base64
import html
from pathlib import Path

import numpy as np

from ..records.plots import figure
from ..records.table import current

PLOTS = ("curves_by_condition.png", "lr_sensitivity.png", "epochs_to_target.png", "budget_curves.png")
RELIABILITY_PLOT = "reliability.png"


def plot_all(study, frame, curve, folder, analysis=None):
    """Draw every plot into ``folder``; returns their paths. ``curve(run_id, key)`` -> per-epoch values."""
    search, confirm = current(study, frame)
    colours = {c.name: f"C{i % 10}" for i, c in enumerate(study.conditions)}
    curves_by_condition(study, confirm, curve, colours).savefig(folder / PLOTS[0])
    lr_sensitivity(study, search, colours).savefig(folder / PLOTS[1])
    plot_epochs_to_target(study, confirm, colours).savefig(folder / PLOTS[2])
    bands = analysis.budget_bands if analysis else {}
    budget_curves(study, analysis.budget_curves if analysis else {}, colours, bands).savefig(folder / PLOTS[3])
    drawn = [folder / p for p in PLOTS]
    if analysis is not None and any(analysis.reliability.values()):
        reliability_diagram(analysis.reliability, colours).savefig(folder / RELIABILITY_PLOT)
        drawn.insert(1, folder / RELIABILITY_PLOT)
    return drawn


def reliability_diagram(diagrams, colours):
    """Each condition's test reliability diagram (mean over its seeds, bin by bin), before and after
    temperature scaling: accuracy against mean confidence per equal-mass bin; on the diagonal a "75%" is
    right 75% of the time, below it the model is overconfident."""
    fig = figure(11, 4.8, left=0.07, right=0.98, bottom=0.12, top=0.85, wspace=0.08)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, part, title in zip(axes, ("before", "after"), ("as trained", "after temperature scaling")):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for condition, found in diagrams.items():
            if found is None:
                continue
            points = found[part]
            ax.plot(points[:, 0], points[:, 1], marker=".", color=colours[condition], label=condition)
        ax.set(xlabel="mean confidence in bin", title=title, xlim=(0, 1.01), ylim=(0, 1.01))
        ax.grid(alpha=0.3)
    rows = next((f["before"][:, 2] for f in diagrams.values() if f is not None), None)
    if rows is not None:
        size = f"{rows.min():g}" if rows.min() == rows.max() else f"{rows.min():g}-{rows.max():g}"
        fig.suptitle(f"test rows, mean over seeds: {len(rows)} equal-mass bins of {size} rows each", fontsize=10)
    axes[0].set(ylabel="accuracy in bin (mean over seeds)")
    axes[0].legend(fontsize=8)
    return fig


def curves_by_condition(study, confirm, curve, colours):
    """Validation cross-entropy and accuracy of each condition's confirmed best: mean, min..max band."""
    fig = figure(11, 4, left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for condition, colour in colours.items():
        ids = confirm[confirm["condition"] == condition]["run_id"].tolist() if len(confirm) else []
        for ax, key in ((loss_ax, "val_cross_entropy"), (acc_ax, "val_accuracy")):
            curves = [c for c in (curve(r, key) for r in ids) if c]
            if not curves:
                continue
            length = min(map(len, curves))
            stack = np.array([c[:length] for c in curves])
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, stack.mean(0), color=colour, label=condition)
            ax.fill_between(epochs, stack.min(0), stack.max(0), color=colour, alpha=0.2)
    loss_ax.set(
        xlabel="epoch",
        ylabel="validation cross-entropy",
        yscale="log",
        title="confirmed best: mean, band = min..max over seeds",
    )
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    acc_ax.axhline(study.target_accuracy, color="grey", linestyle=":", linewidth=1)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def lr_sensitivity(study, search, colours):
    """The objective of every search trial against its learning rate; diverged trials as x."""
    fig = figure(8, 4.5, left=0.1, right=0.98, bottom=0.12, top=0.9)
    ax = fig.subplots()
    column = f"metric.{study.objective}"
    floor = search[column].min() if column in search and search[column].notna().any() else 0.0
    for condition, colour in colours.items():
        part = search[search["condition"] == condition] if len(search) else search
        if not len(part) or "param.lr" not in part:
            continue
        ok = part[part["state"].isin(["complete", "pruned"])]
        bad = part[part["state"] == "diverged"]
        ax.scatter(ok["param.lr"].astype(float), ok[column].astype(float), color=colour, label=condition, s=18)
        if len(bad):
            ax.scatter(bad["param.lr"].astype(float), [floor] * len(bad), color=colour, marker="x", s=40)
    ax.set(
        xscale="log",
        xlabel="learning rate",
        ylabel=f"{study.objective} (search trials)",
        title="learning-rate sensitivity (x: diverged)",
    )
    ax.grid(alpha=0.3)
    if len(search):
        ax.legend(fontsize=8)
    return fig


def budget_curves(study, curves, colours, bands=None):
    """Expected best validation score after k search trials, k = 1..n (Dodge et al. 2019), with each
    condition's bootstrap 95% band."""
    fig = figure(8, 4.5, left=0.1, right=0.98, bottom=0.12, top=0.9)
    ax = fig.subplots()
    for condition, values in curves.items():
        if values:
            ks = range(1, len(values) + 1)
            ax.plot(ks, values, marker=".", color=colours[condition], label=condition)
            low, high = (bands or {}).get(condition, ([], []))
            if len(low) == len(values):
                ax.fill_between(ks, low, high, color=colours[condition], alpha=0.15)
    ax.set(
        xlabel="search trials per condition (k)",
        ylabel=f"expected best {study.objective}",
        title="tuning budget: expected best validation score after k trials",
    )
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize=8)
    return fig


def plot_epochs_to_target(study, confirm, colours):
    """Epochs each confirmation seed took to reach the target accuracy; how many never did."""
    fig = figure(8, 4, left=0.1, right=0.98, bottom=0.25, top=0.9)
    ax = fig.subplots()
    for i, (condition, colour) in enumerate(colours.items()):
        part = confirm[confirm["condition"] == condition] if len(confirm) else confirm
        reached = part["epochs_to_target"].tolist() if len(part) else []
        hit = [e for e in reached if not np.isnan(e)]
        ax.scatter([i] * len(hit), hit, color=colour)
        if hit:
            ax.hlines(np.median(hit), i - 0.3, i + 0.3, color=colour)
        if len(reached) > len(hit):
            ax.annotate(f"{len(reached) - len(hit)} never", (i, 0), ha="center", fontsize=8)
    ax.set_xticks(range(len(colours)), list(colours), rotation=20, fontsize=8)
    ax.set(ylabel="epochs", title=f"epochs to reach validation accuracy {study.target_accuracy:g} (line: median)")
    ax.grid(alpha=0.3)
    return fig


STYLE = (
    "body{font-family:sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
    "th{background:#f3f3f3;text-align:left} td{white-space:nowrap} .wide{overflow-x:auto;max-width:100%}"
    "img{max-width:100%;height:auto} li{margin:.3em 0} pre{overflow-x:auto;max-width:100%}"
)


def html_report(study, analysis, images, board=None):
    """One self-contained page, read as the printed comparison is: the answer in plain words first, then
    findings, the leaderboard (a study over several data sets), the two tables, the pairs and effects, and
    where each term is explained (as the terminal's last lines); every plot last."""
    from .answer import answer
    from .calibration_comparison import format_calibration
    from .glossary import explained
    from .leaderboard import format_leaderboard
    from .summary import format_pairs, table_frames

    results, tuning, notes = table_frames(study, analysis.table)
    said = " ".join(answer(study, analysis))
    board_text = format_leaderboard(board) if board else ""
    pairs = format_pairs(analysis)
    calibration = format_calibration(analysis) if analysis.calibration is not None else ""
    texts = [f"answer: {said}" if said else "", *analysis.findings, board_text, results.to_string(), tuning.to_string()]
    doors = explained("\n".join([*texts, *notes, pairs, calibration]))
    findings = "".join(f"<li>{html.escape(s)}</li>" for s in analysis.findings)
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(study.name)}</title><style>{STYLE}</style>",
        f"</head><body><h1>Study {html.escape(study.name)}</h1>",
        f"<p>{html.escape(study.description)}</p>" if study.description else "",
        f"<h2>Answer</h2><p class='answer'>{html.escape(said)}</p>" if said else "",
        f"<h2>Findings</h2><ul>{findings}</ul>" if findings else "",
        f"<h2>Leaderboard</h2><pre>{html.escape(board_text)}</pre>" if board else "",
        "<h2>Results</h2><div class='wide'>",
        results.to_html(index=False, na_rep="", border=0),
        "</div><h2>Tuning</h2><div class='wide'>",
        tuning.to_html(index=False, na_rep="", border=0),
        "</div>",
        "".join(f"<p>{html.escape(n)}</p>" for n in notes),
        f"<h2>Comparisons</h2><pre>{html.escape(pairs)}</pre>",
        f"<h2>Probability quality</h2><pre>{html.escape(calibration)}</pre>" if calibration else "",
        f"<p class='explained'>{html.escape(doors)}</p>" if doors else "",
    ]
    for image in images:
        encoded = base64.b64encode(Path(image).read_bytes()).decode()
        title = Path(image).stem.replace("_", " ")
        parts.append(f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
