"""The one metrics function: what evaluate writes and what the report and comparisons read."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

# Each has a bootstrap interval. Balanced accuracy, the mean of the two classes' recall, does not move
# with the classes' shares as accuracy does (the test split is 65% Male: always answering Male scores 0.65).
METRIC_NAMES = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc")


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def _mean_recall(sensitivity: float | None, specificity: float | None) -> float | None:
    return None if sensitivity is None or specificity is None else (sensitivity + specificity) / 2


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy ((sensitivity + specificity) / 2), sensitivity (recall of class 1),
    specificity (recall of class 0), precision, F1, ROC AUC; and, of the labels alone, the majority rate
    (the larger class's share: what always answering it scores) and the confusion counts.

    labels: 0/1; probabilities: P(class 1). A value that is undefined on this data (no positives,
    say) is None, not a made-up number.
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
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    both_classes = 0 < labels.sum() < labels.size
    return {
        "accuracy": _ratio(tp + tn, labels.size),
        "balanced_accuracy": _mean_recall(sensitivity, specificity),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": f1,
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "n": int(labels.size),
        "majority_rate": _ratio(max(tp + fn, tn + fp), labels.size),
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


# --- uncertainty: stratified bootstrap intervals, and paired tests between two models -------------
#
# Every resample keeps each class's count (a stratified bootstrap: the test split's 65% men stay 65%)
# and is drawn as multinomial weights over the images, so a metric of 2,000 resamples is a few
# matrix products, not 2,000 Python loops.

def _class_weights(rng: np.random.Generator, count: int, resamples: int) -> np.ndarray:
    """How often each of `count` images is drawn in each resample: [resamples, count] float32."""
    if count == 0:
        return np.zeros((resamples, 0), dtype=np.float32)
    return rng.multinomial(count, np.full(count, 1.0 / count), size=resamples).astype(np.float32)


def _weighted_auc(positive_scores: np.ndarray, negative_scores: np.ndarray, positive_weights: np.ndarray,
                  negative_weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of weights: the weighted share of (positive, negative) pairs the positive
    outranks, ties counting half. Sorting once serves every resample."""
    order = np.argsort(negative_scores, kind="stable")
    sorted_negatives = negative_scores[order]
    below = np.searchsorted(sorted_negatives, positive_scores, side="left")    # negatives strictly lower
    up_to = np.searchsorted(sorted_negatives, positive_scores, side="right")   # ... or equal
    cumulative = np.concatenate([np.zeros((negative_weights.shape[0], 1), dtype=np.float64),
                                 np.cumsum(negative_weights[:, order], axis=1, dtype=np.float64)], axis=1)
    beaten = cumulative[:, below] + 0.5 * (cumulative[:, up_to] - cumulative[:, below])
    pairs = positive_weights.sum(axis=1) * negative_weights.sum(axis=1)
    return (positive_weights * beaten).sum(axis=1) / pairs


def bootstrap_draws(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5, resamples: int = 2000,
                    seed: int | np.random.SeedSequence = 0, chunk: int = 250) -> dict[str, np.ndarray]:
    """Every metric of classification_metrics on each of `resamples` stratified bootstrap resamples of
    the images: {metric: [resamples] values}, NaN where the metric is undefined on a resample."""
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    positive, negative = probabilities[labels == 1], probabilities[labels == 0]
    rng = np.random.default_rng(seed)
    values: dict[str, list[np.ndarray]] = {name: [] for name in METRIC_NAMES}
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        positive_weights = _class_weights(rng, positive.size, size)
        negative_weights = _class_weights(rng, negative.size, size)
        tp = positive_weights @ (positive >= threshold).astype(np.float32)
        fn = positive.size - tp
        fp = negative_weights @ (negative >= threshold).astype(np.float32)
        tn = negative.size - fp
        with np.errstate(invalid="ignore", divide="ignore"):
            values["accuracy"].append((tp + tn) / labels.size)
            values["sensitivity"].append(tp / (tp + fn))
            values["specificity"].append(tn / (tn + fp))
            values["balanced_accuracy"].append((values["sensitivity"][-1] + values["specificity"][-1]) / 2)
            values["precision"].append(tp / (tp + fp))
            values["f1"].append(2 * tp / (2 * tp + fp + fn))
        values["roc_auc"].append(_weighted_auc(positive, negative, positive_weights, negative_weights)
                                 if positive.size and negative.size else np.full(size, np.nan))
    return {name: np.concatenate(parts) if parts else np.array([]) for name, parts in values.items()}


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The middle `level` share of the finite draws, [low, high]; None where none is finite."""
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))] if draws.size else None


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5,
                        resamples: int = 2000, seed: int | np.random.SeedSequence = 0, level: float = 0.95,
                        chunk: int = 250) -> dict[str, list[float] | None]:
    """Percentile intervals of every metric of classification_metrics, from a stratified bootstrap
    over the images: {metric: [low, high]} (None where the metric is undefined on this data)."""
    draws = bootstrap_draws(labels, probabilities, threshold, resamples, seed, chunk)
    return {name: percentile_interval(values, level) for name, values in draws.items()}


def _placements(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive, the share of negatives it outranks (ties
    half); for each negative, the share of positives that outrank it."""
    sorted_negatives, sorted_positives = np.sort(negative), np.sort(positive)
    below = np.searchsorted(sorted_negatives, positive, side="left")
    equal = np.searchsorted(sorted_negatives, positive, side="right") - below
    positive_components = (below + 0.5 * equal) / negative.size
    above = positive.size - np.searchsorted(sorted_positives, negative, side="right")
    equal = np.searchsorted(sorted_positives, negative, side="right") - np.searchsorted(sorted_positives, negative,
                                                                                      side="left")
    negative_components = (above + 0.5 * equal) / positive.size
    return positive_components, negative_components


# DeLong's variance is a sample covariance within each class: it needs two images of each.
DELONG_SMALLEST_CLASS = 2


def _difference_variance(positive_matrix: np.ndarray, negative_matrix: np.ndarray) -> float:
    """DeLong's variance of AUC(first) - AUC(second) from the structural components, one row per model:
    the two classes' covariances, each over its own images, added."""
    covariance = (np.cov(positive_matrix) / positive_matrix.shape[1]
                  + np.cov(negative_matrix) / negative_matrix.shape[1])
    return float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])


def _undefined_delong(reason: str, aucs: list[float | None]) -> dict:
    """DeLong's result where the test is undefined: the AUCs where they exist, no error or p-value, and why."""
    difference = None if aucs[0] is None else aucs[0] - aucs[1]
    return {"auc_first": aucs[0], "auc_second": aucs[1], "difference": difference, "standard_error": None,
            "p_value": None, "undefined": reason}


def delong_test(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict:
    """DeLong, DeLong and Clarke-Pearson (1988): are two models' ROC AUCs on the same images different?
    Returns both AUCs, their difference (first - second), its standard error, the two-sided p-value and
    `undefined`: None, or why there is no test (one class only: no AUC; a class of one image: the AUCs
    but no variance), with the values it cannot give None rather than NaN."""
    from scipy.stats import norm

    labels = np.asarray(labels).astype(int).ravel()
    scores = [np.asarray(first, dtype=float).ravel(), np.asarray(second, dtype=float).ravel()]
    smallest = min(int(labels.sum()), int(labels.size - labels.sum()))
    if smallest == 0:
        return _undefined_delong("only one class among the images: ROC AUC is undefined", [None, None])
    components = [_placements(score[labels == 1], score[labels == 0]) for score in scores]
    aucs = [float(positive.mean()) for positive, _ in components]
    if smallest < DELONG_SMALLEST_CLASS:
        return _undefined_delong(f"DeLong's variance needs at least {DELONG_SMALLEST_CLASS} images of each class; "
                                 f"one class has {smallest}", aucs)
    variance = _difference_variance(np.vstack([positive for positive, _ in components]),
                                    np.vstack([negative for _, negative in components]))
    difference = aucs[0] - aucs[1]
    error = float(np.sqrt(max(variance, 0.0)))
    p_value = 1.0 if error == 0 else float(2 * norm.sf(abs(difference) / error))
    return {"auc_first": aucs[0], "auc_second": aucs[1], "difference": difference, "standard_error": error,
            "p_value": p_value, "undefined": None}


def _over_seeds(differences: np.ndarray, image_variances: np.ndarray) -> dict:
    """The mean of per-seed paired differences, its standard error from both sources of variance, and
    a two-sided normal p-value (seed_aware_delong's docstring says why the two parts add so)."""
    from scipy.stats import norm

    seed_variance = float(differences.var(ddof=1))
    error = float(np.sqrt(seed_variance / len(differences) + float(np.mean(image_variances))))
    mean = float(differences.mean())
    return {"difference": mean, "seed_standard_deviation": float(np.sqrt(seed_variance)), "standard_error": error,
            "p_value": 1.0 if error == 0 else float(2 * norm.sf(abs(mean) / error))}


def seed_aware_delong(labels: np.ndarray, first_runs: Sequence[np.ndarray], second_runs: Sequence[np.ndarray]) -> dict:
    """Two models each trained once per seed (the same seeds), all runs scored on the same images: is
    their mean ROC AUC different, allowing for both the training runs and the images drawn?

    Per seed s, d_s = AUC(first_s) - AUC(second_s) with DeLong's variance v_s. The variance of the mean
    difference has two parts (Bouthillier et al., "Accounting for variance in machine learning
    benchmarks", MLSys 2021): the training runs', the spread of d_s over seeds, which shrinks with
    more seeds (sample variance / S); and the images', which does not, since every seed is scored on
    the same images: the mean of the v_s. z = mean / sqrt(both), a two-sided normal p-value. With one
    seed the training part cannot be estimated: `undefined` says so (DeLong's test alone is
    delong_test's)."""
    if len(first_runs) != len(second_runs) or not first_runs:
        raise ValueError("both models need a run for every seed")
    per_seed = [delong_test(labels, first, second) for first, second in zip(first_runs, second_runs)]
    undefined = next((found["undefined"] for found in per_seed if found["undefined"]), None)
    differences = np.array([np.nan if found["difference"] is None else found["difference"] for found in per_seed])
    result = {"seeds": len(per_seed), "difference": None if np.isnan(differences).any() else float(differences.mean()),
              "seed_standard_deviation": None, "standard_error": None, "p_value": None, "undefined": undefined}
    if undefined is None and len(per_seed) < 2:
        result["undefined"] = "one seed: the spread between training runs is unknown"
    if result["undefined"] is not None:
        return result
    result.update(_over_seeds(differences, np.array([found["standard_error"] ** 2 for found in per_seed])))
    return result


def seed_aware_accuracy(labels: np.ndarray, first_runs: Sequence[np.ndarray],
                        second_runs: Sequence[np.ndarray]) -> dict:
    """seed_aware_delong's test for accuracy: per seed, the paired difference in accuracy d_s (first's
    predicted classes against second's, the same images) and its variance over the images, the
    variance of the mean of x_i = right_first_i - right_second_i (the paired-proportions Wald variance);
    then the same two-part variance and normal p-value. Needs two seeds or more (one seed: McNemar)."""
    if len(first_runs) != len(second_runs) or len(first_runs) < 2:
        raise ValueError("both models need a run for every seed, two seeds or more")
    labels = np.asarray(labels).astype(int).ravel()
    differences, variances = [], []
    for first, second in zip(first_runs, second_runs):
        gained = ((np.asarray(first).astype(int).ravel() == labels).astype(float)
                  - (np.asarray(second).astype(int).ravel() == labels).astype(float))
        differences.append(gained.mean())
        variances.append(gained.var(ddof=1) / gained.size if gained.size > 1 else 0.0)
    return {"seeds": len(differences), **_over_seeds(np.array(differences), np.array(variances))}


def mcnemar_test(labels: np.ndarray, first_predicted: np.ndarray, second_predicted: np.ndarray) -> dict[str, float]:
    """McNemar's exact test: do two models' accuracies on the same images differ? Only the images
    exactly one of them gets right count; under the null each such image is a fair coin."""
    from scipy.stats import binomtest

    labels = np.asarray(labels).astype(int).ravel()
    first_right = np.asarray(first_predicted).astype(int).ravel() == labels
    second_right = np.asarray(second_predicted).astype(int).ravel() == labels
    only_first, only_second = int(np.sum(first_right & ~second_right)), int(np.sum(~first_right & second_right))
    discordant = only_first + only_second
    p_value = 1.0 if discordant == 0 else float(binomtest(only_first, discordant, 0.5).pvalue)
    return {"only_first_right": only_first, "only_second_right": only_second, "p_value": p_value}


def holm_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given: the k-th smallest of m is
    multiplied by m - k + 1, then made non-decreasing, at most 1. Rejecting where the adjusted value is
    below a level keeps the chance of any false "significant" in the family under that level, whatever
    the dependence between the tests (these share their images, so they are dependent: Benjamini-
    Hochberg would need positive dependence). None (an undefined test) stays None and is not counted."""
    defined = [(value, index) for index, value in enumerate(p_values) if value is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (value, index) in enumerate(sorted(defined)):
        running = max(running, min(1.0, (len(defined) - rank) * value))
        adjusted[index] = running
    return adjusted
