"""stages/analysis/calibration.py against hand-computed cases, brute force and simulated models whose
calibration is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stages.analysis import calibration, statistics

LABELS = np.array([1, 0, 1, 1])
PROBABILITIES = np.array([0.9, 0.1, 0.6, 0.4])


def simulated(count: int, sharpness: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities p, and the model's output sigmoid(sharpness x logit p):
    calibrated for sharpness 1, over-confident above 1."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.02, 0.98, count)
    labels = (rng.uniform(size=count) < truth).astype(int)
    return labels, calibration.with_temperature(truth, 1 / sharpness)


def test_hand_computed_ece_brier_and_bins():
    # bins of width 0.5: {0.1 (label 0), 0.4 (label 1)} and {0.9, 0.6 (both label 1)}
    assert calibration.expected_calibration_error(LABELS, PROBABILITIES, bins=2) == pytest.approx(0.25)
    assert calibration.brier_score(LABELS, PROBABILITIES) == pytest.approx((0.01 + 0.01 + 0.16 + 0.36) / 4)
    rows = calibration.reliability(LABELS, PROBABILITIES, bins=2)
    assert [(row["count"], row["predicted"], row["observed"]) for row in rows] == [
        (2, pytest.approx(0.25), 0.5), (2, pytest.approx(0.75), 1.0)]
    # ECE is the bins' |observed - predicted| weighted by their share of the images
    assert sum(row["count"] / 4 * abs(row["observed"] - row["predicted"]) for row in rows) == pytest.approx(0.25)


def test_probability_one_falls_in_the_last_bin_and_empty_bins_are_left_out():
    rows = calibration.reliability([1, 1, 0], [1.0, 0.95, 0.0], bins=10)
    assert [(row["bin"], row["count"]) for row in rows] == [(0, 1), (9, 2)]
    assert calibration.expected_calibration_error([], [], bins=10) is None
    assert calibration.brier_score([], []) is None


def test_a_calibrated_model_scores_low_and_an_overconfident_one_high():
    labels, calibrated = simulated(200_000, 1.0)
    _, overconfident = simulated(200_000, 3.0)
    assert calibration.expected_calibration_error(labels, calibrated) < 0.01
    assert calibration.expected_calibration_error(labels, overconfident) > 0.08
    assert calibration.brier_score(labels, overconfident) > calibration.brier_score(labels, calibrated)


def test_temperature_undoes_overconfidence_and_keeps_ranking_and_decisions():
    labels, overconfident = simulated(100_000, 2.0)
    temperature = calibration.fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(2.0, rel=0.05)
    scaled = calibration.with_temperature(overconfident, temperature)
    assert calibration.expected_calibration_error(labels, scaled) < 0.01
    assert roc_auc_score(labels, scaled) == pytest.approx(roc_auc_score(labels, overconfident), abs=1e-12)
    assert np.array_equal(scaled >= 0.5, overconfident >= 0.5)
    assert calibration.fit_temperature([1, 1], [0.2, 0.9]) is None


def test_youden_threshold_is_the_brute_force_best():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    probabilities = np.clip(0.3 * labels + rng.normal(0.35, 0.2, 300), 0, 1).round(3)

    def j(threshold: float) -> float:
        predicted = probabilities >= threshold
        return predicted[labels == 1].mean() + (~predicted[labels == 0]).mean() - 1

    best = max(np.unique(probabilities), key=lambda t: (j(t), -t))
    assert calibration.youden_threshold(labels, probabilities) == pytest.approx(best)
    assert calibration.youden_threshold([0, 0], [0.1, 0.2]) is None


def test_bootstrap_intervals_equal_a_loop_over_the_same_resamples(monkeypatch):
    """The matrix form against the metric computed on each resample written out as a list of images."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    probabilities = rng.uniform(size=40)
    drawn: list[np.ndarray] = []
    real = statistics._class_weights

    def recording(generator, count, resamples):
        weights = real(generator, count, resamples)
        drawn.append(weights)
        return weights

    monkeypatch.setattr(statistics, "_class_weights", recording)
    found = calibration.calibration_intervals(labels, probabilities, bins=5, resamples=7, seed=1, level=0.5, chunk=7)
    positive_weights, negative_weights = drawn
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    ece, brier = [], []
    for row in range(7):
        chosen = np.concatenate([np.repeat(positives, positive_weights[row].astype(int)),
                                 np.repeat(negatives, negative_weights[row].astype(int))])
        ece.append(calibration.expected_calibration_error(labels[chosen], probabilities[chosen], bins=5))
        brier.append(calibration.brier_score(labels[chosen], probabilities[chosen]))
    assert found["ece"] == pytest.approx([np.percentile(ece, 25), np.percentile(ece, 75)])
    assert found["brier"] == pytest.approx([np.percentile(brier, 25), np.percentile(brier, 75)])


def test_intervals_cover_the_estimate_and_shrink_with_more_images():
    widths = []
    for count in (400, 6400):
        labels, probabilities = simulated(count, 2.0, seed=count)
        found = calibration.calibration_intervals(labels, probabilities, resamples=400, seed=0)
        for name, metric in (("ece", calibration.expected_calibration_error), ("brier", calibration.brier_score)):
            low, high = found[name]
            assert low <= metric(labels, probabilities) <= high
        widths.append(found["brier"][1] - found["brier"][0])
    assert widths[1] < widths[0] / 2.5       # about 1/sqrt(16) = 1/4 of the width
