"""The figures people would rather look at than read: one function each, used by evaluate and report."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # no screen on CI or servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

SPLIT_TITLES = {"train": "training", "val": "validation", "test": "cross-dataset test"}


def learning_curves(history: pd.DataFrame, title: str) -> plt.Figure:
    """Loss and accuracy per epoch, training and validation, side by side."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    figure.suptitle(title)
    epochs = history["epoch"] + 1
    # Early stopping keeps the weights of the epoch with the lowest validation loss: show where it is.
    best = int(epochs[history["val_loss"].idxmin()]) if "val_loss" in history and len(history) > 1 else None
    for axis, metric in zip(axes, ("loss", "accuracy")):
        if best is not None:
            axis.axvline(best, color="grey", linestyle=":", label=f"lowest validation loss (epoch {best})")
        axis.plot(epochs, history[metric], marker="o", label=f"training {metric}")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        values = history[[c for c in (metric, f"val_{metric}") if c in history]].to_numpy(dtype=float)
        if metric == "loss" and values.min() > 0 and values.max() / values.min() > 20:
            # One huge first-epoch loss (an untrained head on raw VGG16 features) would flatten the rest.
            axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(metric)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.grid(alpha=0.3)
        axis.legend()
    return figure


def roc_figure(curves: dict[str, tuple], title: str) -> plt.Figure:
    """ROC curves, one per label: (fpr, tpr, auc[, (low, high)]), with the AUC and, when given, its
    interval in the legend, and the chance diagonal."""
    figure, axis = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    for label, (fpr, tpr, auc, *rest) in curves.items():
        auc_text = "n/a" if auc is None else f"{auc:.3f}"
        bounds = rest[0] if rest else None
        if auc is not None and bounds is not None:
            auc_text += f" [{bounds[0]:.3f}–{bounds[1]:.3f}]"
        axis.plot(fpr, tpr, label=f"{label} (AUC = {auc_text})")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false positive rate (1 - specificity)")
    axis.set_ylabel("true positive rate (sensitivity)")
    axis.set_title(textwrap.fill(title, 44))
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    return figure


def confusion_figure(confusion: dict[str, int], classes: list[str], title: str) -> plt.Figure:
    """Confusion-matrix heatmap: rows actual, columns predicted, counts and row percentages."""
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros_like(matrix, dtype=float), where=row_totals > 0)
    annotations = np.array([[f"{count}\n{share:.0%}" for count, share in zip(row, share_row)]
                            for row, share_row in zip(matrix, shares)])
    figure, axis = plt.subplots(figsize=(4.5, 4), constrained_layout=True)
    sns.heatmap(shares, annot=annotations, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=classes, yticklabels=classes, ax=axis, square=True)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(textwrap.fill(title, 36))  # long model descriptions would be cut at the edges
    return figure


def reliability_figure(curves: dict[str, tuple[list[dict], float | None, float | None]], title: str) -> plt.Figure:
    """Reliability diagram: per label (split) the bins of calibration.reliability, mean predicted
    P(positive) against the observed share of positives, with ECE
    and Brier in the legend; below, how many images fall in each bin. The diagonal is calibrated."""
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(5.5, 6.2), height_ratios=[3, 1], sharex=True,
                                          constrained_layout=True)
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    width = 1 / (2.5 * max(len(curves), 1))
    for index, (label, (rows, ece, brier)) in enumerate(curves.items()):
        predicted = [row["predicted"] for row in rows]
        observed = [row["observed"] for row in rows]
        sizes = np.array([row["count"] for row in rows], dtype=float)
        scores = "" if ece is None else f" (ECE {ece:.3f}, Brier {brier:.3f})"
        line, = axis.plot(predicted, observed, marker="o", label=f"{label}{scores}")
        centres = [(row["lower"] + row["upper"]) / 2 for row in rows]
        bins = rows[0]["upper"] - rows[0]["lower"] if rows else 0.1
        counts.bar(np.array(centres) + (index - (len(curves) - 1) / 2) * width * bins, sizes, width=width * bins,
                   color=line.get_color())
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_ylabel("observed share of positives")
    axis.set_title(textwrap.fill(title, 44))
    axis.legend(loc="upper left", fontsize="small")
    axis.grid(alpha=0.3)
    counts.set_xlabel("predicted probability of the positive class")
    counts.set_ylabel("images")
    counts.grid(alpha=0.3)
    return figure


def save(figure: plt.Figure, path) -> None:
    """Save a PNG at a fixed size and close the figure (no leaks across many figures)."""
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
