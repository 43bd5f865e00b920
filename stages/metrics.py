"""The one metrics function: what evaluate writes and what the report and comparisons read."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc")


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, sensitivity (recall of class 1), specificity (recall of class 0), precision, F1, ROC AUC.

    labels: 0/1; probabilities: P(class 1). A value that is undefined on this data (no positives,
    say) is None, not a made-up number. Also returns the confusion counts.
    """
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    if labels.shape != probabilities.shape:
        raise ValueError(f"{labels.shape[0]} labels but {probabilities.shape[0]} probabilities")
    predicted = (probabilities >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    both_classes = 0 < labels.sum() < labels.size
    return {
        "accuracy": _ratio(tp + tn, labels.size),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "n": int(labels.size),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def roc_points(labels: np.ndarray, probabilities: np.ndarray, max_points: int | None = None) -> dict[str, list[float]]:
    """ROC curve points (fpr, tpr, threshold), thinned to the corners that shape the curve, and then,
    past max_points, to max_points of them evenly spaced along the curve (first and last kept): plot
    data whose size does not grow with the number of images."""
    fpr, tpr, thresholds = roc_curve(np.asarray(labels).astype(int), np.asarray(probabilities, dtype=float))
    # roc_curve's first threshold is +inf: JSON/CSV readers choke on it, 1.0 plots the same point.
    thresholds = np.minimum(thresholds, 1.0)
    if max_points is not None and len(fpr) > max_points:
        along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))])
        keep = np.unique(np.searchsorted(along, np.linspace(0.0, along[-1], max_points)))
        keep = np.unique(np.concatenate([[0], keep[keep < len(fpr)], [len(fpr) - 1]]))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "threshold": thresholds.tolist()}
