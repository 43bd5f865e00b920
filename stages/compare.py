"""compare: every model's metrics side by side, with each model's difference to the reference model.

Writes, in git: metrics/comparison.json, {split: {metric: {model: value, "<model>_minus_<reference>":
diff}}}, the reference (compare.reference in params.yaml) and each model's description, and per split
a paired test for every pair of models on the same images (DeLong for ROC AUC, McNemar for accuracy:
tests.<split>.<first>_vs_<second>, the reference second), each p-value also adjusted by Holm's method
over the file's whole family of paired tests (both tests, every pair, both splits: the report draws
its conclusions from all of them together); and
plots/compare/roc_<split>.csv, every model's ROC points in one file per split (one chart in DVC).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import pandas as pd

from stages.analysis.statistics import METRIC_NAMES, delong_test, holm_adjusted, mcnemar_test
from stages.common import cli
from stages.common.config import EVALUATED_SPLITS, load_params
from stages.common.errors import UserError
from stages.contracts.comparison import Adjustment, Comparison, PairedTest, write_roc_by_model
from stages.contracts.evaluation import EvaluationDir, ModelMetrics, RocCurves


def rounded(value: float | None) -> float | None:
    """A difference or standard error as comparison.json keeps it: 6 decimals (None stays None)."""
    return None if value is None else round(value, 6)


def paired_test(first: str, second: str, predictions: dict[str, pd.DataFrame], positive: str) -> PairedTest:
    """DeLong's and McNemar's tests of two models' predictions on the same images (matched by file)."""
    both = predictions[first].merge(predictions[second], on="file", suffixes=("_first", "_second"), validate="1:1")
    if not len(both) == len(predictions[first]) == len(predictions[second]) or \
            not (both["actual_first"] == both["actual_second"]).all():
        raise UserError(f"{first} and {second} were not scored on the same images; rerun their evaluate stages")
    labels = (both["actual_first"] == positive).to_numpy().astype(int)
    predicted = {side: (both[f"predicted_{side}"] == positive).to_numpy().astype(int) for side in ("first", "second")}
    right = {side: predicted[side] == labels for side in predicted}
    mcnemar = mcnemar_test(labels, predicted["first"], predicted["second"])
    auc = delong_test(labels, both["probability_first"], both["probability_second"])
    return PairedTest(
        first=first, second=second, images=len(both),
        roc_auc_difference=rounded(auc["difference"]), roc_auc_standard_error=rounded(auc["standard_error"]),
        roc_auc_p_value=auc["p_value"], roc_auc_test_undefined=auc["undefined"],
        accuracy_difference=round(float(right["first"].mean() - right["second"].mean()), 6),
        only_first_right=mcnemar["only_first_right"], only_second_right=mcnemar["only_second_right"],
        accuracy_p_value=mcnemar["p_value"])


def paired_tests(predictions: dict[str, dict[str, pd.DataFrame]], reference: str,
                 positive: str) -> dict[str, dict[str, PairedTest]]:
    """Per split, every pair of models: the reference always second, else in params order."""
    models = list(predictions)
    pairs = [(first, second) for index, second in enumerate(models) for first in models[index + 1:]]
    pairs = [(second, first) if first == reference else (first, second) for first, second in pairs]
    tests: dict[str, dict[str, PairedTest]] = {}
    for split in EVALUATED_SPLITS:
        by_model = {model: predictions[model][split] for model in models}
        tests[split] = {f"{first}_vs_{second}": paired_test(first, second, by_model, positive)
                        for first, second in pairs}
    return tests


FAMILY = "every paired test in this file: DeLong and McNemar, every pair of models, both splits"


def adjust_for_multiplicity(tests: dict[str, dict[str, PairedTest]]) -> tuple[dict[str, dict[str, PairedTest]],
                                                                               Adjustment]:
    """The tests with Holm-adjusted p-values, all of them one family, and how they were adjusted."""
    slots = [(split, name, kind) for split, by_name in tests.items() for name in by_name for kind in ("roc_auc",
                                                                                                       "accuracy")]
    raw = [getattr(tests[split][name], f"{kind}_p_value") for split, name, kind in slots]
    adjusted = holm_adjusted(raw)
    updates: dict[tuple[str, str], dict] = {}
    for (split, name, kind), value in zip(slots, adjusted):
        updates.setdefault((split, name), {})[f"{kind}_p_adjusted"] = value
    result = {split: {name: test.model_copy(update=updates[(split, name)]) for name, test in by_name.items()}
              for split, by_name in tests.items()}
    return result, Adjustment(method="holm", family=FAMILY, tests=sum(value is not None for value in raw))


def compare(metrics_by_model: dict[str, ModelMetrics], reference: str,
            tests: dict[str, dict[str, PairedTest]] | None = None) -> Comparison:
    """Per split and metric: each model's value and, for the others, its difference to `reference`;
    and the paired tests, when given."""
    tables = {}
    base = metrics_by_model.get(reference)
    for split in EVALUATED_SPLITS:
        tables[split] = {}
        for metric in METRIC_NAMES:
            row = {model: getattr(metrics.split(split), metric) for model, metrics in metrics_by_model.items()}
            if base is not None:
                base_value = getattr(base.split(split), metric)
                for model, value in list(row.items()):
                    if model != reference:
                        row[f"{model}_minus_{reference}"] = (
                            None if value is None or base_value is None else round(value - base_value, 6))
            tables[split][metric] = row
    adjusted, adjustment = adjust_for_multiplicity(tests) if tests else ({}, None)
    return Comparison(reference=reference,
                      models={model: metrics.description for model, metrics in metrics_by_model.items()},
                      tests=adjusted, adjustment=adjustment, **tables)


def roc_by_model(curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's ROC points in one long table: model, fpr, tpr."""
    return pd.concat([curve.assign(model=model)[["model", "fpr", "tpr"]] for model, curve in curves.items()],
                     ignore_index=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    metrics_by_model = {model: ModelMetrics.read(ModelMetrics.path(model)) for model in params.model_names}
    predictions = {model: {split: EvaluationDir.of(model).read_predictions(split) for split in EVALUATED_SPLITS}
                   for model in params.model_names}
    comparison = compare(metrics_by_model, params.compare.reference,
                         paired_tests(predictions, params.compare.reference, params.prepare.classes[1]))
    for split in EVALUATED_SPLITS:
        write_roc_by_model(split, roc_by_model({model: RocCurves.of(model).read(split) for model in metrics_by_model}))
    comparison.write(Comparison.path)
    for split in EVALUATED_SPLITS:
        auc = comparison.split(split)["roc_auc"]
        print(f"{split} ROC AUC: " + ", ".join(
            f"{model} {auc[model]:.3f}" for model in metrics_by_model if auc[model] is not None))
        for name, test in comparison.tests[split].items():
            if test.roc_auc_difference is None:
                continue
            delong = (f"DeLong p {test.roc_auc_p_value:.3g}, Holm {test.roc_auc_p_adjusted:.3g}"
                      if test.roc_auc_p_value is not None else f"DeLong undefined: {test.roc_auc_test_undefined}")
            print(f"  {name}: AUC {test.roc_auc_difference:+.3f} ({delong}), accuracy {test.accuracy_difference:+.3f} "
                  f"(McNemar p {test.accuracy_p_value:.3g}, Holm {test.accuracy_p_adjusted:.3g})")


if __name__ == "__main__":
    cli.run(main)
