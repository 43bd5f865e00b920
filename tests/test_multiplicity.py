"""Holm's adjustment of the paired tests (stages/analysis/statistics.py holm_adjusted, compare's family)
and the words and tables that decide from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages import verdict
from stages.analysis.discussion import discussion
from stages.analysis.statistics import holm_adjusted
from stages.compare import adjust_for_multiplicity, compare, paired_tests
from stages.contracts.comparison import Comparison
from stages.contracts.evaluation import ModelMetrics


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, None, 0.2]) == pytest.approx([0.5, None, 0.4])     # None is not counted
    assert holm_adjusted([0.9, 0.8]) == [1.0, 1.0]
    assert holm_adjusted([]) == []


def step_down_rejections(p_values: list[float], level: float) -> set[int]:
    """Holm's procedure as he wrote it: reject the smallest while it is below level / (m - k)."""
    order = np.argsort(p_values, kind="stable")
    rejected = set()
    for rank, index in enumerate(order):
        if p_values[index] > level / (len(p_values) - rank):
            break
        rejected.add(int(index))
    return rejected


def test_adjusted_values_reject_exactly_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(1)
    for _ in range(300):
        p_values = list(rng.uniform(0, 0.1, rng.integers(1, 13)))
        adjusted = holm_adjusted(p_values)
        for level in (0.01, 0.05):
            assert {i for i, value in enumerate(adjusted) if value <= level} == step_down_rejections(p_values, level)


def test_holm_keeps_the_familywise_error_under_five_percent_for_twelve_null_tests():
    """Twelve true null hypotheses, 20,000 families: unadjusted about 46% of families have a false
    "significant"; adjusted at most 5% (binomial sd 0.15% at 5%)."""
    rng = np.random.default_rng(2)
    p_values = rng.uniform(size=(20_000, 12))
    any_raw = (p_values < 0.05).any(axis=1).mean()
    any_adjusted = np.mean([min(value for value in holm_adjusted(list(row))) < 0.05 for row in p_values])
    assert any_raw > 0.4 and any_adjusted <= 0.055


def predictions(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = (rng.random(120) < 0.5).astype(int)
    classes = ["Female", "Male"]
    scores = {"baseline": labels * 0.2 + rng.random(120) * 0.8, "improved": labels * 0.6 + rng.random(120) * 0.4,
              "transfer": labels * 0.25 + rng.random(120) * 0.75}
    return {model: {split: [pd.DataFrame({"file": [f"{i}.png" for i in range(120)],
                                         "actual": [classes[i] for i in labels],
                                         "predicted": [classes[int(p >= 0.5)] for p in probabilities],
                                         "probability": probabilities})] for split in ("val", "test")}
            for model, probabilities in scores.items()}


def metrics_of(auc: float) -> ModelMetrics:
    values = {"accuracy": 0.7, "sensitivity": 0.7, "specificity": 0.7, "precision": 0.7, "f1": 0.7, "roc_auc": auc,
              "n": 120}
    return ModelMetrics(description="d", val=values, test=values)


def test_compare_adjusts_every_paired_test_as_one_family():
    tests = paired_tests(predictions(), "baseline", "Male")
    comparison = compare({"baseline": [metrics_of(0.6)], "improved": [metrics_of(0.9)], "transfer": [metrics_of(0.65)]},
                         "baseline", tests)
    assert comparison.adjustment.method == "holm" and comparison.adjustment.tests == 12
    raw, adjusted = [], []
    for by_name in comparison.tests.values():
        for test in by_name.values():
            for kind in ("roc_auc", "accuracy"):
                raw.append(getattr(test, f"{kind}_p_value"))
                adjusted.append(getattr(test, f"{kind}_p_adjusted"))
    assert adjusted == pytest.approx(holm_adjusted(raw))
    assert all(a >= r for a, r in zip(adjusted, raw))
    again, _ = adjust_for_multiplicity(comparison.tests)          # adjusting is a function of the raw values
    assert again == comparison.tests


def test_the_words_decide_from_the_adjusted_p_value():
    tests = paired_tests(predictions(), "baseline", "Male")
    comparison = compare({"baseline": [metrics_of(0.6)], "improved": [metrics_of(0.9)], "transfer": [metrics_of(0.65)]},
                         "baseline", tests)
    # One test whose raw p-value is under 5% but whose adjusted one is not: it must read "not significant".
    test = comparison.tests["val"]["transfer_vs_baseline"].model_copy(
        update={"roc_auc_p_value": 0.02, "roc_auc_p_adjusted": 0.2})
    comparison.tests["val"]["transfer_vs_baseline"] = test
    results = {name: metrics_of(auc) for name, auc in (("baseline", 0.6), ("improved", 0.9), ("transfer", 0.65))}
    text = " ".join(getattr(block, "text", " ".join(getattr(block, "items", [])))
                    for block in discussion(results, ["Female", "Male"], {"Female": 0.5, "Male": 0.5}, comparison))
    assert "not significant at 5% after Holm's correction (DeLong, p = 0.02, adjusted 0.2)" in text
    assert "Holm's method over all 12 paired tests" in text
    lines = verdict.verdict_lines(results, comparison)
    assert "p (DeLong, Holm)" in lines[0]
    assert any(line.split()[:2] == ["transfer", "val"] and line.rstrip().endswith("0.2") for line in lines)


def test_several_seeds_give_means_spreads_and_tests_over_the_seeds():
    """Three runs per model: each table value is the mean over the runs, the spread lists every run,
    and each paired test is over the seeds (seed_aware_delong and seed_aware_accuracy), Holm-adjusted."""
    from stages.analysis.statistics import seed_aware_accuracy, seed_aware_delong

    runs = [predictions(seed) for seed in (0, 0, 0)]
    for index, run in enumerate(runs):          # same images and labels, each run its own scores
        rng = np.random.default_rng(100 + index)
        for model, by_split in run.items():
            for split, [table] in by_split.items():
                noisy = np.clip(table["probability"] + rng.normal(0, 0.1, len(table)), 0, 1)
                by_split[split] = [table.assign(probability=noisy,
                                                predicted=np.where(noisy >= 0.5, "Male", "Female"))]
    merged = {model: {split: [run[model][split][0] for run in runs] for split in ("val", "test")}
              for model in runs[0]}
    tests = paired_tests(merged, "baseline", "Male")
    found = tests["test"]["improved_vs_baseline"]
    labels = (merged["baseline"]["test"][0]["actual"] == "Male").to_numpy().astype(int)
    expected = seed_aware_delong(labels, [t["probability"].to_numpy() for t in merged["improved"]["test"]],
                                 [t["probability"].to_numpy() for t in merged["baseline"]["test"]])
    assert (found.seeds, found.roc_auc_test) == (3, "DeLong over seeds")
    assert found.accuracy_test == "paired accuracy over seeds"
    assert found.roc_auc_p_value == pytest.approx(expected["p_value"])
    assert found.roc_auc_seed_standard_deviation == pytest.approx(expected["seed_standard_deviation"], abs=1e-6)
    accuracy = seed_aware_accuracy(labels, [(t["predicted"] == "Male").to_numpy() for t in merged["improved"]["test"]],
                                   [(t["predicted"] == "Male").to_numpy() for t in merged["baseline"]["test"]])
    assert found.accuracy_p_value == pytest.approx(accuracy["p_value"])
    comparison = compare({"baseline": [metrics_of(0.6), metrics_of(0.64), metrics_of(0.62)],
                          "improved": [metrics_of(0.9), metrics_of(0.8), metrics_of(0.85)],
                          "transfer": [metrics_of(0.65)] * 3}, "baseline", tests, seeds=[2021, 1, 2])
    assert comparison.seeds == [2021, 1, 2] and comparison.adjustment.tests == 12
    assert comparison.val["roc_auc"]["improved"] == pytest.approx(0.85)
    assert comparison.val["roc_auc"]["improved_minus_baseline"] == pytest.approx(0.23)
    spread = comparison.spread["val"]["roc_auc"]["improved"]
    assert spread.values == [0.9, 0.8, 0.85] and spread.standard_deviation == pytest.approx(0.05)
    assert (spread.low, spread.high) == (0.8, 0.9)
    assert comparison.spread["val"]["roc_auc"]["transfer"].standard_deviation == 0
    text = comparison.text()
    assert "NaN" not in text and Comparison.model_validate_json(text) == comparison


def test_a_seed_taken_out_of_seeds_stops_compare_until_its_outputs_are_removed(tmp_path):
    """DVC leaves the outputs of stages that are gone: seed 7's, after seeds [2021, 7] became [2021].
    compare names them and the command that removes them; the kept seed's and other files stay."""
    from stages import compare as compare_stage
    from stages.common.errors import UserError

    for model in ("baseline", "transfer"):
        for seed in (2021, 7):
            for output in compare_stage.run_outputs(model, seed):
                path = tmp_path / output
                if path.suffix == ".json":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}")
                else:
                    path.mkdir(parents=True)
    (tmp_path / "plots/compare").mkdir(parents=True)
    (tmp_path / "plots/compare/roc_val.csv").write_text("")
    found = compare_stage.leftover_runs(["baseline", "transfer"], [2021], tmp_path)
    assert list(found) == [7] and len(found[7]) == 2 * len(compare_stage.run_outputs("baseline", 7))
    assert all("7" in path.parts[-1] and "2021" not in str(path) for path in found[7])
    with pytest.raises(UserError) as refused:
        compare_stage.refuse_leftover_runs(["baseline", "transfer"], [2021], tmp_path)
    message = str(refused.value)
    assert message.startswith("seed 7 left params.yaml's seeds, but 18 of its runs' outputs remain (models/baseline/7, ")
    assert "\n" not in message and "rm -r models/baseline/7 models/transfer/7 data/evaluate/baseline/7" in message
    assert message.endswith("metrics/transfer/7.json), or put the seed back")
    compare_stage.refuse_leftover_runs(["baseline", "transfer"], [2021, 7], tmp_path)          # both listed: nothing to say
