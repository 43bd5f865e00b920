"""The end of make run: the verdict table (model x split against the reference), the report's path, and
one line when the numbers differ from the committed ones; and make compare's experiments side by side."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stages import experiments, verdict
from stages.contracts.comparison import Comparison, PairedTest
from stages.contracts.evaluation import BootstrapInfo, Bounds, ModelMetrics, SplitMetrics

MODELS = ["baseline", "improved", "a_model_with_a_long_name"]


def split_metrics(auc: float, majority: float = 0.65) -> SplitMetrics:
    return SplitMetrics(accuracy=0.8, balanced_accuracy=0.75, sensitivity=0.9, specificity=0.6, precision=0.8, f1=0.8,
                        roc_auc=auc, n=300, majority_rate=majority,
                        interval={"roc_auc": Bounds(low=auc - 0.04, high=auc + 0.04)})


def paired(first: str, second: str, difference: float, p: float) -> PairedTest:
    return PairedTest(first=first, second=second, images=300, roc_auc_difference=difference,
                      roc_auc_standard_error=0.01, roc_auc_p_value=p, accuracy_difference=0.0, only_first_right=1,
                      only_second_right=1, accuracy_p_value=1.0)


@pytest.fixture
def results() -> tuple[dict[str, ModelMetrics], Comparison]:
    metrics = {name: ModelMetrics(description=name, bootstrap=BootstrapInfo(level=0.95, resamples=2000, seed=1),
                                  val=split_metrics(0.80 + 0.05 * i, 0.5), test=split_metrics(0.75 + 0.05 * i))
               for i, name in enumerate(MODELS)}
    tests = {split: {"improved_vs_baseline": paired("improved", "baseline", 0.05, 0.0004),
                     # stored the other way round: the verdict turns the sign
                     "baseline_vs_a_model_with_a_long_name": paired("baseline", "a_model_with_a_long_name", -0.1, 0.3)}
             for split in ("val", "test")}
    empty = {metric: {} for metric in ("accuracy",)}
    return metrics, Comparison(reference="baseline", models={name: name for name in MODELS}, val=empty, test=empty,
                               tests=tests)


def test_the_verdict_is_one_row_per_model_and_split_within_110_columns(results):
    """Accuracy with balanced accuracy beside it, and under the table what always answering each split's
    larger class scores; a 24-character model name still fits 110 columns."""
    lines = verdict.verdict_lines(*results)
    assert lines[0].split()[:3] == ["model", "split", "ROC"] and "95% interval" in lines[0]
    assert "accuracy  balanced  AUC vs baseline" in lines[0] and len(lines) == 1 + 2 * len(MODELS) + 1
    assert max(map(len, lines)) <= 110
    assert lines[1].split() == ["baseline", "val", "0.800", "0.760-0.840", "0.800", "0.750", "reference"]
    assert lines[3].split() == ["improved", "val", "0.850", "0.810-0.890", "0.800", "0.750", "+0.050", "<0.001"]
    assert lines[6].split()[-2:] == ["+0.100", "0.3"]                       # the sign follows the reference
    assert lines[-1] == "Always answering the larger class scores 0.500 on val, 0.650 on test: the accuracy to beat."


def test_an_undefined_delong_test_shows_as_undefined_with_its_reason(results):
    metrics, comparison = results
    reason = "DeLong's variance needs at least 2 images of each class; one class has 1"
    undefined = paired("improved", "baseline", 0.05, 0.5).model_copy(
        update={"roc_auc_p_value": None, "roc_auc_standard_error": None, "roc_auc_test_undefined": reason})
    tests = {split: dict(comparison.tests[split]) for split in comparison.tests}
    tests["test"]["improved_vs_baseline"] = undefined
    lines = verdict.verdict_lines(metrics, comparison.model_copy(update={"tests": tests}))
    assert lines[4].split()[0] == "test" and lines[4].split()[-2:] == ["+0.050", "undefined"]
    assert lines[3].split()[-1] == "<0.001"                                  # val: tested as before
    assert lines[-1] == f"improved test: no DeLong p-value: {reason}"


def test_with_several_seeds_the_verdict_shows_means_and_their_spread(results):
    """Three seeds: each ROC AUC and accuracy is compare's mean over the runs, the interval column their
    standard deviation, and the header says the tests are over the seeds."""
    from stages.contracts.comparison import SeedSpread

    metrics, comparison = results
    means = {split: {"roc_auc": {name: 0.7 + 0.01 * i for i, name in enumerate(MODELS)},
                     "accuracy": {name: 0.6 for name in MODELS},
                     "balanced_accuracy": {name: 0.55 for name in MODELS}} for split in ("val", "test")}
    spread = {split: {"roc_auc": {name: SeedSpread(values=[0.69, 0.7, 0.71], standard_deviation=0.01, low=0.69,
                                                   high=0.71) for name in MODELS}} for split in ("val", "test")}
    lines = verdict.verdict_lines(metrics, comparison.model_copy(update={
        "seeds": [2021, 1, 2], "spread": spread, **means}))
    assert "ROC AUC, mean of 3 seeds" in lines[0] and "p (DeLong over seeds)" in lines[0]
    assert lines[1].split() == ["baseline", "val", "0.700", "±", "0.010", "0.600", "0.550", "reference"]
    assert lines[3].split()[:5] == ["improved", "val", "0.710", "±", "0.010"]


def test_compare_carries_balanced_accuracy_and_each_splits_majority_rate(results, tmp_path):
    """metrics/comparison.json: balanced accuracy per model, its difference to the reference, and the
    share of each split's larger class (what always answering it scores), the same for every model."""
    from stages.compare import compare

    metrics, _ = results
    runs = {name: [found.model_copy(update={"test": found.test.model_copy(update={"balanced_accuracy": 0.7 + i / 10})})]
            for i, (name, found) in enumerate(metrics.items())}
    compare(runs, "baseline").write(tmp_path / "comparison.json")
    stored = Comparison.read(tmp_path / "comparison.json")
    assert stored.test["balanced_accuracy"]["improved"] == pytest.approx(0.8)
    assert stored.test["balanced_accuracy"]["improved_minus_baseline"] == pytest.approx(0.1)
    assert stored.majority_rate == {"val": 0.5, "test": 0.65}


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder, check=True,
                   capture_output=True)


def test_one_line_says_why_the_numbers_differ_from_the_committed_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert verdict.committed_difference() is None                           # no git repository: nothing to say
    for name, text in (("metrics/baseline.json", "1\n"), ("metrics/export/baseline.json", "1\n"), ("params.yaml", "a: 1\n"),
                       ("stages/x.py", "x = 1\n")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "run")
    assert verdict.committed_difference() is None                           # the committed numbers
    (tmp_path / "metrics/export/baseline.json").write_text("2\n")
    assert verdict.committed_difference() is None                           # only the exports' timings moved
    (tmp_path / "metrics/baseline.json").write_text("2\n")
    note = verdict.committed_difference()
    assert "same code and params" in note and "another CPU or TensorFlow" in note and "dvc metrics diff" in note
    assert note.count("\n") == 0 and "flags" not in note and "(" in note     # names this CPU, in one line
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert "params.yaml or the code changed" in verdict.committed_difference()


def exp_show(name: str, learning_rate: float, auc: float | None, seeds: tuple[int, ...] = (2021,)) -> dict:
    """One row of `dvc exp show --json`: the baseline's runs (one per seed) have val AUC auc + index / 100."""
    metrics = {} if auc is None else {f"metrics/baseline/{seed}.json": {"data": {
        "val": {"auc": auc + index / 100}, "test": {"auc": auc - 0.1}}} for index, seed in enumerate(seeds)}
    return {"rev": "a" * 40, "name": name, "data": {
        "params": {"params.yaml": {"data": {"train": {"baseline": {"learning_rate": learning_rate, "epochs": 10}}}}},
        "metrics": metrics}}


def test_experiments_side_by_side_in_120_columns():
    head = exp_show("main", 0.001, 0.80) | {"experiments": [
        {"revs": [exp_show("lr-0.01", 0.01, 0.75)]}, {"revs": [exp_show("lr-" + "9" * 200, 0.0001, None)]},
        {"revs": [exp_show("three-seeds", 0.001, 0.80, (2021, 1, 2))]}]}
    workspace = exp_show("", 0.001, 0.80) | {"rev": "workspace", "name": None}    # as dvc exp show --json has it
    shown = [workspace, head]
    lines = experiments.comparison_lines(shown, ["baseline", "improved"])
    assert max(map(len, lines)) <= 120
    assert [line.split()[0] for line in lines[1:]][:3] == ["workspace", "main", "lr-0.01"]
    assert lines[1].split()[1:] == ["-", "0.800/0.700", "-/-"]
    assert "train.baseline.learning_rate=0.01" in lines[3] and "0.750/0.650" in lines[3]
    assert lines[4].split()[0].endswith("…") and lines[4].split()[-2:] == ["-/-", "-/-"]   # a long name cut
    assert "0.810/0.700 (3 seeds)" in lines[5]                             # the mean over the seeds' runs
