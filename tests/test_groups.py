"""Results per group (stages/analysis/groups.py) against a direct computation on hand-made groups; a
group too small says so; the gap between groups and its interval; evaluate's per-split section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages import evaluate
from stages.analysis.groups import GROUP_METRICS, group_results, split_groups, summary_line
from stages.analysis.statistics import classification_metrics
from stages.common.config import BootstrapParams
from stages.contracts.evaluation import NO_GROUP, ModelMetrics, SplitMetrics

CLASSES = ["Female", "Male"]


def group(men_right: int, men_wrong: int, women_right: int, women_wrong: int) -> tuple[list[int], list[float]]:
    """Labels and P(Male) of a group whose answers at 0.5 are right and wrong these many times per class."""
    labels = [1] * (men_right + men_wrong) + [0] * (women_right + women_wrong)
    probabilities = ([0.9] * men_right + [0.2] * men_wrong + [0.1] * women_right + [0.7] * women_wrong)
    return labels, probabilities


def hand_made(**sizes: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels, probabilities, groups = [], [], []
    for name, counts in sizes.items():
        found = group(*counts)
        labels += found[0]
        probabilities += found[1]
        groups += [name] * len(found[0])
    return np.array(labels), np.array(probabilities), groups


def test_each_groups_numbers_equal_a_direct_computation_on_its_images():
    """Three groups with known counts: a 40 of 50 men and 20 of 30 women right; b 45/50 and 27/30; c 30/30
    and 14/20. Each group's values are classification_metrics on its own images, the error rates one
    minus its recalls."""
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), b=(45, 5, 27, 3), c=(30, 0, 14, 6))
    found = group_results(labels, probabilities, groups, CLASSES, min_per_class=10, resamples=300, seed=1)
    assert list(found["groups"]) == ["a", "b", "c"]
    a = found["groups"]["a"]
    assert (a["n"], a["counts"], a["too_small"]) == (80, {"Female": 30, "Male": 50}, None)
    assert a["accuracy"] == pytest.approx(60 / 80) and a["balanced_accuracy"] == pytest.approx((40 / 50 + 20 / 30) / 2)
    assert a["false_negative_rate"] == pytest.approx(10 / 50) and a["false_positive_rate"] == pytest.approx(10 / 30)
    for name in "abc":
        inside = np.array(groups) == name
        direct = classification_metrics(labels[inside], probabilities[inside])
        entry = found["groups"][name]
        assert entry["accuracy"] == pytest.approx(direct["accuracy"])
        assert entry["balanced_accuracy"] == pytest.approx(direct["balanced_accuracy"])
        assert entry["false_negative_rate"] == pytest.approx(1 - direct["sensitivity"])
        assert entry["false_positive_rate"] == pytest.approx(1 - direct["specificity"])
        assert entry["roc_auc"] == pytest.approx(direct["roc_auc"])
        for metric in GROUP_METRICS:
            low, high = entry["interval"][metric]
            assert low - 1e-6 <= entry[metric] <= high + 1e-6, (name, metric)
    assert found["groups"]["c"]["false_negative_rate"] == 0.0


def test_the_largest_gap_names_both_groups_and_its_interval_holds_the_gap():
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), b=(45, 5, 27, 3), c=(30, 0, 14, 6))
    found = group_results(labels, probabilities, groups, CLASSES, min_per_class=10, resamples=1000, seed=1)
    accuracy = found["gaps"]["accuracy"]
    assert (accuracy["highest"], accuracy["lowest"]) == ("b", "a")
    assert accuracy["gap"] == pytest.approx(72 / 80 - 60 / 80)
    missed_men = found["gaps"]["false_negative_rate"]
    assert (missed_men["highest"], missed_men["lowest"], missed_men["gap"]) == ("a", "c", pytest.approx(10 / 50))
    for metric, gap in found["gaps"].items():
        low, high = gap["interval"]
        assert low <= gap["gap"] <= high, metric
    # b and a were picked as the farthest of 3 pairs: the interval is Bonferroni-widened, 1 - 0.05 / 3.
    assert accuracy["pairs"] == 3 and accuracy["level"] == pytest.approx(1 - 0.05 / 3)
    from stages.analysis.groups import gaps
    from stages.analysis.statistics import percentile_interval

    two = {name: found["groups"][name] for name in ("a", "b")}
    draws = {name: {"accuracy": np.random.default_rng(index).normal(0.8, 0.05, 1000)}
             for index, name in enumerate("ab")}
    plain = gaps({name: {"accuracy": entry["accuracy"]} for name, entry in two.items()}, draws)["accuracy"]
    assert plain["pairs"] == 1 and plain["interval"] == percentile_interval(draws["b"]["accuracy"]
                                                                           - draws["a"]["accuracy"], 0.95)
    assert found["gaps"]["accuracy"]["interval"][0] > 0        # 0.75 against 0.90 on 80 images each: a real gap
    again = group_results(labels, probabilities, groups, CLASSES, min_per_class=10, resamples=1000, seed=1)
    assert again == found                                       # seeded


def test_a_group_too_small_says_so_and_is_left_out_of_the_gap():
    """d has 3 women (fewer than 10) and e no man at all: a count and a reason each, no numbers; with a
    and b the only groups measured, every gap is between them."""
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), b=(45, 5, 27, 3), d=(20, 0, 3, 0),
                                              e=(0, 0, 12, 0))
    found = group_results(labels, probabilities, groups, CLASSES, min_per_class=10, resamples=100)
    d, e = found["groups"]["d"], found["groups"]["e"]
    assert d["counts"] == {"Female": 3, "Male": 20} and d["too_small"] == "only 3 Female images; a group needs 10 of each class for numbers"
    assert e["too_small"].startswith("only 0 Male images") and "accuracy" not in e and "interval" not in e
    assert all({gap["highest"], gap["lowest"]} == {"a", "b"} for gap in found["gaps"].values())
    one_left = group_results(labels, probabilities, ["a"] * 80 + [None] * (len(labels) - 80), CLASSES, resamples=0)
    assert one_left["gaps"] == {}                               # a single measured group: no gap to give


def test_the_printed_line_gives_each_groups_images_per_class_and_why_a_small_one_has_no_numbers():
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), d=(20, 0, 3, 0))
    line = summary_line(split_groups(labels, probabilities, groups, CLASSES, 0.5, 10, 0, 0, 0.95))
    assert line.startswith("a (30 Female, 50 Male): accuracy ")
    assert "; d (3 Female, 20 Male): only 3 Female images; a group needs 10 of each class for numbers" in line


def test_images_without_a_group_are_shown_as_none_and_left_out_of_the_gaps():
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), b=(45, 5, 27, 3), c=(30, 0, 14, 6))
    groups = [None if name == "c" else name for name in groups]
    found = group_results(labels, probabilities, groups, CLASSES, resamples=0)
    assert list(found["groups"]) == ["a", "b", NO_GROUP] and found["groups"][NO_GROUP]["n"] == 50
    assert found["groups"][NO_GROUP]["false_negative_rate"] == 0.0            # c's numbers, as (none)
    assert all(NO_GROUP not in (gap["highest"], gap["lowest"]) for gap in found["gaps"].values())
    assert "interval" not in found["groups"]["a"] and found["gaps"]["accuracy"]["interval"] is None   # resamples 0


def test_evaluate_writes_a_groups_section_only_where_the_split_has_groups(tmp_path):
    labels, probabilities, groups = hand_made(a=(40, 10, 20, 10), b=(45, 5, 27, 3), small=(5, 0, 5, 0))
    files = [f"test/{CLASSES[label]}/img{index}.png" for index, label in enumerate(labels)]
    predictions = pd.DataFrame({"file": files, "label": labels, "probability": probabilities})
    by_file = dict(zip(files, groups))
    bootstrap = BootstrapParams(resamples=200, level=0.9, seed=3)
    found = evaluate.split_groups(predictions, by_file, CLASSES, 0.5, 10, bootstrap)
    assert found.min_per_class == 10 and list(found.groups) == ["a", "b", "small"]
    assert found.groups["small"].too_small and found.groups["small"].accuracy is None
    a = found.groups["a"]
    assert a.interval["roc_auc"].low <= a.roc_auc <= a.interval["roc_auc"].high
    assert found.gaps["accuracy"].highest == "b" and found.gaps["accuracy"].interval is not None
    other_split = {file.replace("test/", "val/"): name for file, name in by_file.items()}
    assert evaluate.split_groups(predictions, other_split, CLASSES, 0.5, 10, bootstrap) is None
    values = dict.fromkeys(["accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"], 0.5)
    metrics = ModelMetrics(description="d", val=SplitMetrics(**values, n=4),
                           test=SplitMetrics(**values, n=len(labels), groups=found))
    metrics.write(tmp_path / "m.json")
    assert ModelMetrics.read(tmp_path / "m.json") == metrics          # the section survives the file
