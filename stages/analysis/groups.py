"""Results per group (a user's labels.csv `group` column, or the offline sample's synthetic skin tone):
each group's accuracy, balanced accuracy, the two classes' error rates and ROC AUC with bootstrap
intervals, and per metric the largest gap between two groups with the interval of that difference,
widened for having picked the most distant pair."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stages.analysis.statistics import bootstrap_draws, classification_metrics, percentile_interval
from stages.contracts.evaluation import NO_GROUP, Bounds, GroupGap, GroupMetrics, SplitGroups

# false_negative_rate: the positive class's (Male) images called the other class, 1 - sensitivity;
# false_positive_rate: the negative class's (Female) images called positive, 1 - specificity.
GROUP_METRICS = ("accuracy", "balanced_accuracy", "false_negative_rate", "false_positive_rate", "roc_auc")


def _complement(value):
    """1 - value for a number or an array of draws; None stays None."""
    return None if value is None else 1 - value


def group_values(metrics: dict) -> dict:
    """GROUP_METRICS from classification_metrics' values, or from bootstrap_draws' arrays."""
    return {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
            "false_negative_rate": _complement(metrics["sensitivity"]),
            "false_positive_rate": _complement(metrics["specificity"]), "roc_auc": metrics["roc_auc"]}


def too_small(counts: dict[str, int], min_per_class: int) -> str | None:
    """Why a group with these images per class gets no numbers, or None when it has enough of each."""
    short = [f"{count} {name}" for name, count in counts.items() if count < min_per_class]
    return (f"only {' and '.join(short)} images; a group needs {min_per_class} of each class for numbers"
            if short else None)


def group_results(labels: np.ndarray, probabilities: np.ndarray, groups: Sequence[str | None], classes: Sequence[str],
                  threshold: float = 0.5, min_per_class: int = 10, resamples: int = 2000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """Per group (an image's group None or "" is NO_GROUP): its images per class, and GROUP_METRICS with
    their bootstrap intervals (each group resampled within each class, on its own random stream), or
    `too_small` saying why there are none; per metric, the gap between the groups scoring highest and
    lowest (NO_GROUP left out) with the percentile interval of their difference over the same resamples
    (gaps()). That interval reaching below 0 means the images cannot tell which of the two is higher.
    labels: 0/1 (1: classes[1], the positive class); probabilities: P(class 1); resamples 0: no intervals."""
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    named = np.array([group or NO_GROUP for group in groups], dtype=object)
    if not labels.shape == probabilities.shape == named.shape:
        raise ValueError(f"{labels.size} labels, {probabilities.size} probabilities and {named.size} groups")
    names = sorted(set(named) - {NO_GROUP}) + ([NO_GROUP] if NO_GROUP in set(named) else [])
    streams = np.random.SeedSequence(seed).spawn(len(names))       # independent resamples per group
    found, draws = {}, {}
    for name, stream in zip(names, streams):
        inside = named == name
        counts = {classes[0]: int(np.sum(labels[inside] == 0)), classes[1]: int(np.sum(labels[inside] == 1))}
        entry: dict = {"n": int(inside.sum()), "counts": counts, "too_small": too_small(counts, min_per_class)}
        if entry["too_small"] is None:
            entry.update(group_values(classification_metrics(labels[inside], probabilities[inside], threshold)))
            if resamples:
                draws[name] = group_values(bootstrap_draws(labels[inside], probabilities[inside], threshold,
                                                           resamples, stream))
                entry["interval"] = {metric: percentile_interval(draws[name][metric], level)
                                     for metric in GROUP_METRICS}
        found[name] = entry
    return {"min_per_class": min_per_class, "groups": found, "gaps": gaps(found, draws, level)}


def gaps(found: dict[str, dict], draws: dict[str, dict[str, np.ndarray]], level: float = 0.95) -> dict[str, dict]:
    """Per metric, among the groups with a value (NO_GROUP left out): highest minus lowest, which two
    they are, and the percentile interval of that pair's difference over their resamples (None without
    resamples), at a level Bonferroni-widened over the k (k - 1) / 2 pairs of k groups: the pair was
    picked for being the farthest apart, and chance alone spreads many groups apart (with two groups it
    is `level` itself). Fewer than two such groups: no gap for that metric."""
    result = {}
    for metric in GROUP_METRICS:
        values = {name: entry[metric] for name, entry in found.items()
                  if name != NO_GROUP and entry.get(metric) is not None}
        if len(values) < 2:
            continue
        highest = max(values, key=values.get)
        lowest = min((name for name in values if name != highest), key=values.get)   # two groups, even if equal
        pairs = len(values) * (len(values) - 1) // 2
        widened = 1 - (1 - level) / pairs
        interval = (percentile_interval(draws[highest][metric] - draws[lowest][metric], widened)
                    if highest in draws and lowest in draws else None)
        result[metric] = {"gap": values[highest] - values[lowest], "highest": highest, "lowest": lowest,
                          "pairs": pairs, "level": widened if interval else None, "interval": interval}
    return result


def split_groups(labels: np.ndarray, probabilities: np.ndarray, groups: Sequence[str | None], classes: Sequence[str],
                 threshold: float, min_per_class: int, resamples: int, seed: int, level: float) -> SplitGroups:
    """group_results as metrics/evaluate/<model>/<seed>.json keeps it (intervals to 6 decimals)."""
    found = group_results(labels, probabilities, groups, classes, threshold, min_per_class, resamples, seed, level)
    return SplitGroups(
        min_per_class=min_per_class,
        groups={name: GroupMetrics(**{key: value for key, value in entry.items() if key != "interval"},
                                   interval={metric: Bounds.of(bounds)
                                             for metric, bounds in entry.get("interval", {}).items()})
                for name, entry in found["groups"].items()},
        gaps={metric: GroupGap(**{**gap, "interval": Bounds.of(gap["interval"])})
              for metric, gap in found["gaps"].items()})


def summary_line(found: SplitGroups) -> str:
    """One line: each group's images per class and its accuracy and balanced accuracy (or why it has
    none), then the largest gaps."""
    groups = "; ".join(f"{name} ({', '.join(f'{count} {label}' for label, count in entry.counts.items())}): " + (
        entry.too_small or f"accuracy {entry.accuracy:.3f}, balanced accuracy {entry.balanced_accuracy:.3f}")
        for name, entry in found.groups.items())
    gaps = ", ".join(f"{metric} {gap.gap:.3f} ({gap.highest} - {gap.lowest})" for metric, gap in found.gaps.items())
    return groups + (f"; largest gaps: {gaps}" if gaps else "")
