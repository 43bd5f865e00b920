"""compare: every model's metrics side by side, with each model's difference to the baseline.

Writes metrics/comparison.json: {split: {metric: {model: value, "<model>_minus_baseline": diff}}}.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from stages import cli
from stages.config import METRICS_DIR, load_params
from stages.evaluate import EVALUATED_SPLITS
from stages.fsutil import write_json_atomic
from stages.metrics import METRIC_NAMES
from stages.errors import UserError

REFERENCE = "baseline"


def compare(metrics_by_model: dict[str, dict]) -> dict:
    """Per split and metric: each model's value and, for the others, its difference to the baseline."""
    table: dict = {"models": {model: metrics.get("description", model) for model, metrics in metrics_by_model.items()}}
    reference = metrics_by_model.get(REFERENCE)
    for split in EVALUATED_SPLITS:
        table[split] = {}
        for metric in METRIC_NAMES:
            row = {model: metrics[split][metric] for model, metrics in metrics_by_model.items()}
            if reference is not None:
                base = reference[split][metric]
                for model, value in list(row.items()):
                    if model != REFERENCE:
                        row[f"{model}_minus_{REFERENCE}"] = (
                            None if value is None or base is None else round(value - base, 6))
            table[split][metric] = row
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    metrics_by_model = {}
    for model in load_params().model_names:
        path = METRICS_DIR / f"{model}.json"
        if not path.is_file():
            raise UserError(f"{path}: not found; run its evaluate stage first (dvc repro evaluate@{model})")
        metrics_by_model[model] = json.loads(path.read_text())
    table = compare(metrics_by_model)
    write_json_atomic(METRICS_DIR / "comparison.json", table)
    for split in EVALUATED_SPLITS:
        auc = table[split]["roc_auc"]
        print(f"{split} ROC AUC: " + ", ".join(
            f"{model} {auc[model]:.3f}" for model in metrics_by_model if auc[model] is not None))


if __name__ == "__main__":
    cli.run(main)
