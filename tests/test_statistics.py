"""classification_metrics and roc_points against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stages.analysis import statistics
from stages.analysis.statistics import (METRIC_NAMES, _weighted_auc, bootstrap_intervals, classification_metrics,
                                        delong_test, mcnemar_test, roc_points)

# 4 positives (Male, 1) and 6 negatives (Female, 0).
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PROBS = [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05, 0.5]


def approx(value):
    return pytest.approx(value, abs=1e-12)


def test_hand_computed_case_at_half():
    # threshold 0.5 (>=): predicted 1 1 1 0 | 1 0 0 0 0 1  -> tp 3, fn 1, fp 2, tn 4
    m = classification_metrics(np.array(LABELS), np.array(PROBS), 0.5)
    assert m["confusion"] == {"tn": 4, "fp": 2, "fn": 1, "tp": 3}
    assert m["n"] == 10
    assert m["accuracy"] == approx(7 / 10)
    assert m["sensitivity"] == approx(3 / 4)
    assert m["specificity"] == approx(4 / 6)
    assert m["precision"] == approx(3 / 5)
    assert m["f1"] == approx(2 * 3 / (2 * 3 + 2 + 1))
    f1_from_pr = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    assert m["f1"] == approx(f1_from_pr)
    # AUC: of the 24 (positive, negative) pairs, 6 + 6 + 5 + 3 = 20 rank the positive higher.
    assert m["roc_auc"] == approx(20 / 24)
    assert set(METRIC_NAMES) <= set(m)
    for name in METRIC_NAMES:
        assert type(m[name]) is float, name  # plain floats: JSON-ready
    assert all(type(v) is int for v in m["confusion"].values())


def test_balanced_accuracy_and_the_majority_rate_by_hand():
    """65 men and 35 women, as the cross-dataset test is shared: always answering Male scores 0.65
    accuracy and 0.5 balanced accuracy; a model finding 52 of the men and 28 of the women scores
    (0.8 + 0.8) / 2."""
    labels = np.array([1] * 65 + [0] * 35)
    always_male = classification_metrics(labels, np.ones(100))
    assert always_male["accuracy"] == approx(0.65) and always_male["majority_rate"] == approx(0.65)
    assert always_male["balanced_accuracy"] == approx(0.5)
    found = np.concatenate([np.r_[np.ones(52), np.zeros(13)], np.r_[np.zeros(28), np.ones(7)]])
    model = classification_metrics(labels, found)
    assert model["sensitivity"] == approx(0.8) and model["specificity"] == approx(0.8)
    assert model["balanced_accuracy"] == approx(0.8) and model["accuracy"] == approx(0.8)
    assert model["majority_rate"] == approx(0.65)                            # the labels', whatever the model
    hand = classification_metrics(np.array(LABELS), np.array(PROBS))         # 6 of 10 are Female
    assert hand["balanced_accuracy"] == approx((3 / 4 + 4 / 6) / 2) and hand["majority_rate"] == approx(6 / 10)
    only_men = classification_metrics([1, 1, 1], [0.9, 0.2, 0.6])
    assert only_men["balanced_accuracy"] is None and only_men["majority_rate"] == 1.0   # no women: no specificity
    assert classification_metrics([], [])["majority_rate"] is None


def test_default_threshold_is_half():
    assert classification_metrics(LABELS, PROBS) == classification_metrics(LABELS, PROBS, 0.5)


def test_threshold_effect():
    # threshold 0.75: predicted 1 1 0 0 | 0 0 0 0 0 0 -> tp 2, fn 2, fp 0, tn 6
    m = classification_metrics(LABELS, PROBS, 0.75)
    assert m["confusion"] == {"tn": 6, "fp": 0, "fn": 2, "tp": 2}
    assert m["accuracy"] == approx(8 / 10)
    assert m["sensitivity"] == approx(2 / 4)
    assert m["specificity"] == approx(1.0)
    assert m["precision"] == approx(1.0)
    assert m["f1"] == approx(4 / 6)
    assert m["roc_auc"] == approx(20 / 24)  # threshold-free
    # threshold 0.25: everything but 0.2, 0.1, 0.05 predicted 1 -> tp 4, fp 3, tn 3, fn 0
    low = classification_metrics(LABELS, PROBS, 0.25)
    assert low["confusion"] == {"tn": 3, "fp": 3, "fn": 0, "tp": 4}
    assert low["sensitivity"] == approx(1.0)
    assert low["specificity"] == approx(0.5)
    assert low["precision"] == approx(4 / 7)


def test_threshold_is_inclusive():
    m = classification_metrics([1, 0], [0.5, 0.4999], 0.5)
    assert m["confusion"] == {"tn": 1, "fp": 0, "fn": 0, "tp": 1}
    m = classification_metrics([1, 0], [0.5, 0.4999], 0.50001)
    assert m["confusion"] == {"tn": 1, "fp": 0, "fn": 1, "tp": 0}


def test_perfect_and_inverted():
    perfect = classification_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert [perfect[k] for k in METRIC_NAMES] == [1.0] * len(METRIC_NAMES)
    inverted = classification_metrics([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert inverted["accuracy"] == 0.0
    assert inverted["sensitivity"] == 0.0 and inverted["specificity"] == 0.0 and inverted["balanced_accuracy"] == 0.0
    assert inverted["precision"] == 0.0 and inverted["f1"] == 0.0
    assert inverted["roc_auc"] == 0.0


def test_ties_count_half_in_auc():
    assert classification_metrics([0, 1], [0.5, 0.5])["roc_auc"] == approx(0.5)
    assert classification_metrics([0, 1, 1], [0.3, 0.3, 0.9])["roc_auc"] == approx(0.75)


def test_only_positives():
    # tp 2, fn 1, no negatives at all
    m = classification_metrics([1, 1, 1], [0.9, 0.2, 0.6])
    assert m["confusion"] == {"tn": 0, "fp": 0, "fn": 1, "tp": 2}
    assert m["accuracy"] == approx(2 / 3)
    assert m["sensitivity"] == approx(2 / 3)
    assert m["specificity"] is None
    assert m["precision"] == approx(1.0)
    assert m["f1"] == approx(4 / 5)
    assert m["roc_auc"] is None


def test_only_negatives_predicted_negative():
    m = classification_metrics([0, 0], [0.1, 0.2])
    assert m["confusion"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 0}
    assert m["accuracy"] == 1.0
    assert m["specificity"] == 1.0
    assert m["sensitivity"] is None
    assert m["precision"] is None  # nothing predicted positive
    assert m["f1"] is None
    assert m["roc_auc"] is None


def test_only_negatives_some_predicted_positive():
    m = classification_metrics([0, 0, 0], [0.9, 0.2, 0.1])
    assert m["sensitivity"] is None
    assert m["specificity"] == approx(2 / 3)
    assert m["precision"] == 0.0  # defined: one positive prediction, wrong
    assert m["roc_auc"] is None


def test_undefined_values_are_none_not_nan():
    for labels, probs in (([1, 1], [0.9, 0.8]), ([0, 0], [0.1, 0.2]), ([0], [0.7]), ([], [])):
        m = classification_metrics(labels, probs)
        for name in METRIC_NAMES:
            value = m[name]
            assert value is None or (type(value) is float and not math.isnan(value)), (labels, name, value)
        assert m["roc_auc"] is None


def test_empty_input():
    m = classification_metrics(np.array([], dtype=int), np.array([], dtype=float))
    assert m["n"] == 0
    assert all(m[name] is None for name in METRIC_NAMES)
    assert m["confusion"] == {"tn": 0, "fp": 0, "fn": 0, "tp": 0}


def test_mismatched_lengths():
    with pytest.raises(ValueError) as caught:
        classification_metrics([0, 1, 1], [0.2, 0.8])
    assert "3 labels" in str(caught.value) and "2 probabilities" in str(caught.value)


def test_accepts_model_shaped_inputs():
    # Keras predicts (n, 1); evaluate passes pandas Series and float labels.
    labels = pd.Series(np.array(LABELS, dtype=np.float32))
    probs = np.array(PROBS, dtype=np.float32).reshape(-1, 1)
    m = classification_metrics(labels, probs)
    assert m["confusion"] == {"tn": 4, "fp": 2, "fn": 1, "tp": 3}
    assert m["roc_auc"] == approx(20 / 24)


def test_roc_points_shape():
    roc = roc_points(np.array(LABELS), np.array(PROBS))
    fpr, tpr, thresholds = roc["fpr"], roc["tpr"], roc["threshold"]
    assert len(fpr) == len(tpr) == len(thresholds) >= 3
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert all(math.isfinite(t) for t in thresholds)
    assert all(t <= 1.0 for t in thresholds)
    assert thresholds[0] == 1.0  # roc_curve's +inf, clamped
    assert thresholds == sorted(thresholds, reverse=True)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)
    assert all(type(v) is float for v in fpr + tpr + thresholds)


def test_roc_points_match_auc():
    roc = roc_points(LABELS, PROBS)
    area = float(np.trapezoid(roc["tpr"], roc["fpr"]))
    assert area == approx(20 / 24)
    # A corner of the curve at threshold 0.6: tpr 3/4 with fpr 1/6 (only 0.7 among negatives).
    points = set(zip(roc["fpr"], roc["tpr"]))
    assert any(abs(f - 1 / 6) < 1e-12 and abs(t - 3 / 4) < 1e-12 for f, t in points)


def test_roc_points_perfect():
    roc = roc_points([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert (0.0, 1.0) in set(zip(roc["fpr"], roc["tpr"]))
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0


def test_roc_points_thinned_to_a_size_that_does_not_grow_with_the_data():
    rng = np.random.default_rng(3)
    labels = (rng.random(20_000) < 0.6).astype(int)
    scores = 1 / (1 + np.exp(-(1.6 * labels + rng.normal(0, 1, labels.size))))
    full, thinned = roc_points(labels, scores), roc_points(labels, scores, max_points=200)
    assert len(full["fpr"]) > 1000 and len(thinned["fpr"]) <= 200 + 2
    assert (thinned["fpr"][0], thinned["tpr"][0], thinned["fpr"][-1], thinned["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert set(zip(thinned["fpr"], thinned["tpr"])) <= set(zip(full["fpr"], full["tpr"]))   # points of the curve
    assert thinned["fpr"] == sorted(thinned["fpr"]) and thinned["threshold"] == sorted(thinned["threshold"], reverse=True)
    assert float(np.trapezoid(thinned["tpr"], thinned["fpr"])) == pytest.approx(float(np.trapezoid(full["tpr"], full["fpr"])),
                                                                         abs=2e-3)
    assert roc_points(LABELS, PROBS, max_points=200) == roc_points(LABELS, PROBS)   # small curves stay whole


# --- uncertainty: bootstrap intervals, DeLong, McNemar ---------------------------------------------

def scored(count: int, seed: int, signal: float = 1.0, male_share: float = 0.65, ties: bool = False):
    """Labels and two correlated models' probabilities, like a test split: `signal` sets how well
    the first separates the classes; the second sees the same images with more noise."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < male_share).astype(int)
    shared = rng.normal(size=count)
    first = 1 / (1 + np.exp(-(signal * (2 * labels - 1) + shared)))
    second = 1 / (1 + np.exp(-(0.8 * signal * (2 * labels - 1) + shared + 0.7 * rng.normal(size=count))))
    if ties:
        first, second = np.round(first, 1), np.round(second, 1)
    return labels, first, second


def stratified_resample(rng, labels):
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    return np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)])


def test_weighted_auc_with_unit_weights_is_sklearns_auc_ties_included():
    from sklearn.metrics import roc_auc_score

    for ties in (False, True):
        labels, first, _ = scored(500, 1, ties=ties)
        positive, negative = first[labels == 1], first[labels == 0]
        auc = _weighted_auc(positive, negative, np.ones((1, positive.size)), np.ones((1, negative.size)))[0]
        assert auc == pytest.approx(roc_auc_score(labels, first), abs=1e-12)


def test_bootstrap_intervals_match_a_plain_loop_bootstrap():
    """The vectorised bootstrap against the textbook one (resample indices per class, recompute with
    classification_metrics): the same distribution, so the same interval up to Monte Carlo noise."""
    labels, first, _ = scored(600, 2, ties=True)
    fast = bootstrap_intervals(labels, first, resamples=2000, seed=3)
    rng = np.random.default_rng(4)
    draws = {name: [] for name in METRIC_NAMES}
    for _ in range(1000):
        index = stratified_resample(rng, labels)
        values = classification_metrics(labels[index], first[index])
        for name in METRIC_NAMES:
            draws[name].append(values[name])
    point = classification_metrics(labels, first)
    for name in METRIC_NAMES:
        slow = np.percentile(draws[name], [2.5, 97.5])
        width = slow[1] - slow[0]
        assert fast[name][0] == pytest.approx(slow[0], abs=0.15 * width), name
        assert fast[name][1] == pytest.approx(slow[1], abs=0.15 * width), name
        assert fast[name][0] <= point[name] <= fast[name][1], name


def test_bootstrap_is_seeded_and_narrows_with_more_images():
    labels, first, _ = scored(400, 5)
    assert bootstrap_intervals(labels, first, resamples=500, seed=1) == bootstrap_intervals(labels, first,
                                                                                             resamples=500, seed=1)
    big_labels, big_first, _ = scored(6400, 5)
    small = bootstrap_intervals(labels, first, resamples=1000, seed=1)["roc_auc"]
    large = bootstrap_intervals(big_labels, big_first, resamples=1000, seed=1)["roc_auc"]
    assert (large[1] - large[0]) < 0.4 * (small[1] - small[0])    # 16x the images: about 1/4 the width


def test_bootstrap_undefined_metric_is_none():
    intervals = bootstrap_intervals(np.ones(20, dtype=int), np.linspace(0.1, 0.9, 20), resamples=50)
    assert intervals["roc_auc"] is None and intervals["specificity"] is None
    assert intervals["sensitivity"] is not None


def test_delong_agrees_with_the_bootstrap_standard_error():
    """DeLong's variance of the AUC difference is the large-sample variance of the stratified bootstrap
    (both hold each class's size fixed): the two standard errors agree within Monte Carlo noise."""
    from sklearn.metrics import roc_auc_score

    labels, first, second = scored(1500, 6)
    test = delong_test(labels, first, second)
    assert test["auc_first"] == pytest.approx(roc_auc_score(labels, first), abs=1e-12)
    assert test["auc_second"] == pytest.approx(roc_auc_score(labels, second), abs=1e-12)
    rng = np.random.default_rng(7)
    differences = []
    for _ in range(1000):
        index = stratified_resample(rng, labels)
        differences.append(roc_auc_score(labels[index], first[index]) - roc_auc_score(labels[index], second[index]))
    assert test["standard_error"] == pytest.approx(np.std(differences), rel=0.12)
    assert test["difference"] > 0 and test["p_value"] < 0.05     # the first model is clearly better here


def test_delong_of_a_model_against_itself():
    labels, first, _ = scored(800, 8)
    same = delong_test(labels, first, first)
    assert same["difference"] == 0 and same["p_value"] == 1.0


# The false-alarm check: two models that differ only by independent noise of equal size, FALSE_ALARM_DRAWS
# times, DeLong at 5%. A correct test rejects in 5% of them; for this design (800 images, 538 of class 1)
# it was measured at 0.0505 +- 0.0007 over 100,000 draws. The bounds are the binomial tails, computed for
# a true rate anywhere in 0.0484..0.0526 (that measurement +- 3 standard errors): a correct DeLong
# lands above 205 with probability < 8.9e-5 (at 0.0526), below 103 with < 6.9e-5 (at 0.0484), so the
# check fails falsely with probability < 1e-4 either way. A variance off by a quarter makes the rate
# 0.0907 (x0.75: DeLong overconfident) or 0.0231 (/0.75: too timid); either lands inside the bounds with
# probability < 1e-4 (5.4e-6 and 7.6e-5), so the controls below fail it for any seed, not just this one.
FALSE_ALARM_DRAWS = 3000
FALSE_ALARMS_AT_MOST = 205          # 6.8% of the draws
FALSE_ALARMS_AT_LEAST = 103         # 3.4%


def false_alarms(draws: int = FALSE_ALARM_DRAWS, seed: int = 0) -> int:
    """How many of `draws` DeLong tests at 5% call two equally good models different (the noise of
    every draw made at once: the test's time is DeLong's own)."""
    labels, _, _ = scored(800, 8)
    base = (2 * labels - 1) * 0.8
    noise = np.random.default_rng(seed).normal(size=(draws, 2, labels.size))
    p_values = [delong_test(labels, base + one, base + other)["p_value"] for one, other in noise]
    return int(np.sum(np.array(p_values) < 0.05))


def test_delong_false_alarms_are_the_nominal_5_percent():
    assert FALSE_ALARMS_AT_LEAST <= false_alarms() <= FALSE_ALARMS_AT_MOST


@pytest.mark.parametrize("factor", [0.75, 1 / 0.75], ids=["shrunk", "inflated"])
def test_the_false_alarm_check_catches_a_variance_off_by_a_quarter(monkeypatch, factor):
    """The negative control: the check above fails for a DeLong whose variance is 0.75x (too many
    false alarms) or 1/0.75x (too few) the right one."""
    right = statistics._difference_variance
    monkeypatch.setattr(statistics, "_difference_variance", lambda *matrices: factor * right(*matrices))
    alarms = false_alarms()
    assert not FALSE_ALARMS_AT_LEAST <= alarms <= FALSE_ALARMS_AT_MOST, alarms


def test_delong_with_a_class_of_one_image_is_undefined_not_nan():
    """DeLong's variance is a covariance within each class: one image of a class has none. The AUCs
    are still defined; the standard error and p-value are None, and `undefined` says why."""
    from sklearn.metrics import roc_auc_score

    labels = np.array([1] + [0] * 9)
    first, second = np.linspace(0.9, 0.1, 10), np.linspace(0.1, 0.9, 10)
    test = delong_test(labels, first, second)
    assert test["standard_error"] is None and test["p_value"] is None
    assert "2 images of each class" in test["undefined"]
    assert test["auc_first"] == roc_auc_score(labels, first) and test["difference"] == 1.0
    assert delong_test(1 - labels, first, second)["p_value"] is None         # the other class alone
    assert delong_test(np.array([1, 1, 0, 0]), first[:4], second[:4])["undefined"] is None


def test_delong_with_one_class_only_is_undefined():
    test = delong_test(np.ones(5, dtype=int), np.linspace(0, 1, 5), np.linspace(1, 0, 5))
    assert {key: test[key] for key in ("auc_first", "auc_second", "difference", "standard_error", "p_value")} == \
        dict.fromkeys(("auc_first", "auc_second", "difference", "standard_error", "p_value"))
    assert "one class" in test["undefined"]


def test_mcnemar_exact_hand_computed():
    # 1 image only the first gets right, 9 only the second: p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 22/1024.
    labels = np.array([1] * 10 + [0] * 5)
    first = np.array([1] + [0] * 9 + [0] * 5)
    second = np.array([0] + [1] * 9 + [0] * 5)
    test = mcnemar_test(labels, first, second)
    assert (test["only_first_right"], test["only_second_right"]) == (1, 9)
    assert test["p_value"] == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar_test(labels, first, first)["p_value"] == 1.0


# --- seed_aware_delong: training runs and images as the two sources of variance ---------------------

def _runs(rng, labels, shared, strength: float, seeds: int) -> list[np.ndarray]:
    """Scores of `seeds` training runs of one model: each run learns the signal with its own strength
    (the training run's luck) and adds its own noise; every run shares the images' difficulty."""
    return [labels * (strength + rng.normal(0, 0.35)) + 0.7 * shared + rng.normal(0, 1, labels.size)
            for _ in range(seeds)]


def test_seed_aware_test_holds_its_level_where_one_seed_delong_does_not():
    """Two models equally good on average, each run lucky or not: DeLong on one run per model calls
    far more than 5% of the pairs different; over five seeds, with both variances, about 5%."""
    rng = np.random.default_rng(11)
    labels = np.array([0, 1] * 150)
    one_seed, five_seeds = [], []
    for _ in range(300):
        shared = rng.normal(0, 1, labels.size)
        first, second = _runs(rng, labels, shared, 1.0, 5), _runs(rng, labels, shared, 1.0, 5)
        one_seed.append(delong_test(labels, first[0], second[0])["p_value"] < 0.05)
        five_seeds.append(statistics.seed_aware_delong(labels, first, second)["p_value"] < 0.05)
    assert np.mean(one_seed) > 0.15
    assert np.mean(five_seeds) <= 0.09


def test_seed_aware_test_finds_a_real_difference_and_adds_both_variances():
    rng = np.random.default_rng(12)
    labels = np.array([0, 1] * 150)
    shared = rng.normal(0, 1, labels.size)
    first, second = _runs(rng, labels, shared, 2.0, 5), _runs(rng, labels, shared, 0.6, 5)
    found = statistics.seed_aware_delong(labels, first, second)
    assert found["seeds"] == 5 and found["difference"] > 0 and found["p_value"] < 0.01
    per_seed = [delong_test(labels, a, b) for a, b in zip(first, second)]
    differences = [test["difference"] for test in per_seed]
    assert found["difference"] == pytest.approx(np.mean(differences))
    assert found["seed_standard_deviation"] == pytest.approx(np.std(differences, ddof=1))
    assert found["standard_error"] ** 2 == pytest.approx(
        np.var(differences, ddof=1) / 5 + np.mean([test["standard_error"] ** 2 for test in per_seed]))


def test_seed_aware_test_needs_two_seeds_and_both_classes():
    labels = np.array([0, 1, 0, 1])
    scores = [np.array([0.1, 0.9, 0.2, 0.8])]
    one = statistics.seed_aware_delong(labels, scores, scores)
    assert one["p_value"] is None and "one seed" in one["undefined"] and one["difference"] == 0.0
    single_class = statistics.seed_aware_delong(np.ones(4), scores * 2, scores * 2)
    assert single_class["p_value"] is None and "one class" in single_class["undefined"]
    with pytest.raises(ValueError, match="a run for every seed"):
        statistics.seed_aware_delong(labels, scores * 2, scores)


def test_seed_aware_accuracy_adds_the_seeds_spread_to_the_paired_image_variance():
    """Per seed the paired difference in accuracy and its variance over the images (x_i = right first
    minus right second); over seeds, the same two-part variance as seed_aware_delong."""
    rng = np.random.default_rng(13)
    labels = (rng.random(400) < 0.5).astype(int)
    firsts = [np.where(rng.random(400) < 0.8, labels, 1 - labels) for _ in range(4)]
    seconds = [np.where(rng.random(400) < 0.7, labels, 1 - labels) for _ in range(4)]
    found = statistics.seed_aware_accuracy(labels, firsts, seconds)
    gains = [(a == labels).astype(float) - (b == labels).astype(float) for a, b in zip(firsts, seconds)]
    differences = [gain.mean() for gain in gains]
    image_variance = np.mean([gain.var(ddof=1) / gain.size for gain in gains])
    assert found["seeds"] == 4 and np.mean(differences) > 0.05
    assert found["difference"] == pytest.approx(np.mean(differences))
    assert found["standard_error"] ** 2 == pytest.approx(np.var(differences, ddof=1) / 4 + image_variance)
    assert found["p_value"] < 0.001
    same = statistics.seed_aware_accuracy(labels, firsts[:2], firsts[:2])
    assert same["difference"] == 0.0 and same["p_value"] == 1.0             # identical runs: nothing to find
    with pytest.raises(ValueError, match="two seeds or more"):
        statistics.seed_aware_accuracy(labels, firsts[:1], seconds[:1])
