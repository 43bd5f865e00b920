"""Whether a model's probabilities mean what they say: reliability, ECE, Brier, temperature, threshold.

All on P(positive) (Male, label 1), the probability the models output and the report shows:

- **reliability**: the images binned by predicted probability (equal-width bins on [0, 1]); per
  bin the mean predicted probability against the observed share of positives. A calibrated model
  lies on the diagonal (the reliability diagram: DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana,
  ICML 2005).
- **ECE**, expected calibration error: the bins' |observed - predicted| weighted by their share of
  the images (Naeini, Cooper & Hauskrecht, AAAI 2015; Guo et al., ICML 2017, who bin the top-label
  confidence; for two classes binning P(positive) is the usual form, and what the diagram shows).
- **Brier score**: the mean squared difference between probability and label (Brier 1950); lower is
  better, 0.25 is what a constant 0.5 scores.
- **Intervals**: the same stratified bootstrap as every other metric (statistics.py: each class
  keeps its count, multinomial weights over the images, a few matrix products per chunk).
- **Temperature scaling** (Guo et al. 2017): one number T fitted on the validation split,
  P = sigmoid(logit(p) / T), minimising the log loss. T > 0 keeps every logit's sign and order, so
  ROC AUC and the decisions at 0.5 stay exactly as they were; only calibration changes.
- **Youden's J**: the threshold where sensitivity + specificity - 1 is largest on the ROC curve
  (Youden 1950), chosen on validation and then applied to the test split beside 0.5.
"""

from __future__ import annotations

import numpy as np

# Probabilities are clipped this far from 0 and 1 before taking logits: a float32 sigmoid saturates.
EPSILON = 1e-7


def _arrays(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    if labels.shape != probabilities.shape:
        raise ValueError(f"{labels.size} labels for {probabilities.size} probabilities")
    return labels, probabilities


def bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """Each probability's equal-width bin, 0 .. bins-1 (1.0 falls in the last bin)."""
    return np.minimum((np.asarray(probabilities, dtype=float) * bins).astype(int), bins - 1)


def reliability(labels, probabilities, bins: int = 10) -> list[dict]:
    """Per non-empty bin: its bounds, the images in it, their mean predicted P(positive) and the
    observed share of positives."""
    labels, probabilities = _arrays(labels, probabilities)
    index = bin_index(probabilities, bins)
    rows = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        if count:
            rows.append({"bin": b, "lower": b / bins, "upper": (b + 1) / bins, "count": count,
                         "predicted": float(probabilities[inside].mean()), "observed": float(labels[inside].mean())})
    return rows


def expected_calibration_error(labels, probabilities, bins: int = 10) -> float | None:
    """Σ over bins of (images in bin / images) × |observed - predicted|; None without images."""
    labels, probabilities = _arrays(labels, probabilities)
    if labels.size == 0:
        return None
    index = bin_index(probabilities, bins)
    gaps = np.bincount(index, weights=labels - probabilities, minlength=bins)
    return float(np.abs(gaps).sum() / labels.size)


def brier_score(labels, probabilities) -> float | None:
    labels, probabilities = _arrays(labels, probabilities)
    return float(np.mean((probabilities - labels) ** 2)) if labels.size else None


def calibration_intervals(labels, probabilities, bins: int = 10, resamples: int = 2000, seed: int = 0,
                          level: float = 0.95, chunk: int = 250) -> dict[str, list[float] | None]:
    """Percentile intervals of ECE and Brier from a stratified bootstrap over the images, drawn as in
    statistics.bootstrap_intervals: {"ece": [low, high], "brier": [low, high]} (None without images)."""
    from stages.analysis.statistics import _class_weights

    labels, probabilities = _arrays(labels, probabilities)
    if labels.size == 0 or resamples == 0:
        return {"ece": None, "brier": None}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {"ece": [], "brier": []}
    by_class = [(labels == value) for value in (1, 0)]
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        gaps = np.zeros((size, bins))
        squared = np.zeros(size)
        for members in by_class:
            weights = _class_weights(rng, int(members.sum()), size).astype(np.float64)
            if weights.shape[1] == 0:
                continue
            one_hot = np.eye(bins)[bin_index(probabilities[members], bins)]             # [images, bins]
            gaps += weights @ (one_hot * (labels[members] - probabilities[members])[:, None])
            squared += weights @ ((probabilities[members] - labels[members]) ** 2)
        draws["ece"].append(np.abs(gaps).sum(axis=1) / labels.size)
        draws["brier"].append(squared / labels.size)
    tail = (1 - level) / 2 * 100
    return {name: [float(np.percentile(np.concatenate(parts), tail)),
                   float(np.percentile(np.concatenate(parts), 100 - tail))] for name, parts in draws.items()}


def logits(probabilities) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def with_temperature(probabilities, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): T > 1 softens over-confident probabilities, T < 1 sharpens them."""
    return 1.0 / (1.0 + np.exp(-logits(probabilities) / temperature))


def fit_temperature(labels, probabilities) -> float | None:
    """The T > 0 that minimises the log loss of with_temperature(probabilities, T) on these labels
    (bounded search over log T in [-5, 5]); None when one class is missing (any T fits)."""
    from scipy.optimize import minimize_scalar

    labels, probabilities = _arrays(labels, probabilities)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    z = logits(probabilities)

    def log_loss(log_temperature: float) -> float:
        scaled = z / np.exp(log_temperature)
        # -[y log s + (1-y) log(1-s)] with s = sigmoid(scaled), written to stay finite.
        return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))

    found = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


def youden_threshold(labels, probabilities) -> float | None:
    """The probability threshold with the largest sensitivity + specificity - 1 (predict positive at
    or above it); the lowest such threshold on ties. None when one class is missing."""
    from sklearn.metrics import roc_curve

    labels, probabilities = _arrays(labels, probabilities)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    fpr, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    j = np.where(finite, tpr - fpr, -np.inf)
    best = np.flatnonzero(j == j.max())
    return float(thresholds[best].min())
