"""compare: every model's metrics side by side, with each model's difference to the reference model.

Writes, in git: metrics/comparison.json, {split: {metric: {model: value, "<model>_minus_<reference>":
diff}}}, the reference (compare.reference in params.yaml) and each model's description; and
plots/compare/roc_<split>.csv, every model's ROC points in one file per split (one chart in DVC).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import pandas as pd

from stages import cli
from stages.config import EVALUATED_SPLITS, load_params
from stages.contracts import Comparison, ModelMetrics, RocCurves, write_roc_by_model
from stages.metrics import METRIC_NAMES


def compare(metrics_by_model: dict[str, ModelMetrics], reference: str) -> Comparison:
    """Per split and metric: each model's value and, for the others, its difference to `reference`."""
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
    return Comparison(reference=reference,
                      models={model: metrics.description for model, metrics in metrics_by_model.items()}, **tables)


def roc_by_model(curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's ROC points in one long table: model, fpr, tpr."""
    return pd.concat([curve.assign(model=model)[["model", "fpr", "tpr"]] for model, curve in curves.items()],
                     ignore_index=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    metrics_by_model = {model: ModelMetrics.read(ModelMetrics.path(model)) for model in params.model_names}
    comparison = compare(metrics_by_model, params.compare.reference)
    for split in EVALUATED_SPLITS:
        write_roc_by_model(split, roc_by_model({model: RocCurves.of(model).read(split) for model in metrics_by_model}))
    comparison.write(Comparison.path)
    for split in EVALUATED_SPLITS:
        auc = comparison.split(split)["roc_auc"]
        print(f"{split} ROC AUC: " + ", ".join(
            f"{model} {auc[model]:.3f}" for model in metrics_by_model if auc[model] is not None))


if __name__ == "__main__":
    cli.run(main)
