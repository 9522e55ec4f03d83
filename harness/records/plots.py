"""Figures a run leaves as artifacts. matplotlib's object API (no pyplot), safe off the main thread.

Layout is fixed by hand (no tight_layout): it halves the rendering time, which is paid on every run.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure(width, height, **margins):
    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**margins)
    return fig


def curves_png(history, path, title):
    """Training loss and train/validation accuracy per epoch."""
    fig = figure(9, 3.6, left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = np.arange(1, len(history.get("train_loss", [])) + 1)
    if len(epochs):
        loss_ax.plot(epochs, history["train_loss"], label="train loss (training objective)")
        loss_ax.plot(epochs, history["val_cross_entropy"], label="validation cross-entropy")
        acc_ax.plot(epochs, history["train_accuracy"], label="train")
        acc_ax.plot(epochs, history["val_accuracy"], label="validation")
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="loss", title=title)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if len(epochs):
            ax.legend(fontsize=8)
    fig.savefig(path, format="png")


def confusion_png(matrix, classes, path, title):
    fig = figure(5, 4.4, left=0.14, right=0.98, bottom=0.12, top=0.92)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black"
            )
    fig.savefig(path, format="png")
