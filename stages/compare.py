"""compare: every model's metrics side by side, with each model's difference to the reference model.

Every model trained once per seed (params.yaml's seeds). Writes, in git: metrics/comparison.json,
{split: {metric: {model: value, "<model>_minus_<reference>": diff}}} (a model's value is its mean
over the seeds; balanced accuracy beside accuracy), the spread over seeds (spread.<split>.<metric>.<model>),
each split's majority-class rate (majority_rate.<split>: what always answering its larger class scores),
the reference (compare.reference in params.yaml) and each model's description, and per split a paired test for
every pair of models on the same images (tests.<split>.<first>_vs_<second>, the reference second:
with one seed DeLong for ROC AUC and McNemar for accuracy; with several, each over the seeds, its
variance the training runs' spread plus the images'), each p-value also adjusted by Holm's method
over the file's whole family of paired tests (both tests, every pair, both splits: the report draws
its conclusions from all of them together); and
plots/compare/roc_<split>.csv, every model's ROC points (the first seed's run) in one file per split
(one chart in DVC).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import fmean, stdev
from typing import Sequence

import numpy as np
import pandas as pd

from stages.analysis.statistics import (METRIC_NAMES, delong_test, holm_adjusted, mcnemar_test, seed_aware_accuracy,
                                        seed_aware_delong)
from stages.common import cli
from stages.common.config import EVALUATED_SPLITS, load_params
from stages.common.errors import UserError
from stages.contracts.comparison import Adjustment, Comparison, PairedTest, SeedSpread, write_roc_by_model
from stages.contracts.evaluation import (ConfusionCounts, EvaluationDir, ModelMetrics, ReliabilityCurves, RocCurves,
                                         Scores)
from stages.contracts.training import LearningCurves, ModelDir, TrainMetrics


def rounded(value: float | None) -> float | None:
    """A difference or standard error as comparison.json keeps it: 6 decimals (None stays None)."""
    return None if value is None else round(value, 6)


def aligned(first: str, second: str, first_runs: list[pd.DataFrame], second_runs: list[pd.DataFrame],
            positive: str) -> tuple[np.ndarray, list[pd.DataFrame]]:
    """Per seed, the two models' predictions on the same images (matched by file, in file order), and
    the images' labels (1: the positive class): one table per seed."""
    both_runs = []
    for first_run, second_run in zip(first_runs, second_runs):
        both = first_run.merge(second_run, on="file", suffixes=("_first", "_second"), validate="1:1")
        if not len(both) == len(first_run) == len(second_run) or \
                not (both["actual_first"] == both["actual_second"]).all():
            raise UserError(f"{first} and {second} were not scored on the same images; rerun their evaluate stages")
        both_runs.append(both.sort_values("file", ignore_index=True))
    if any(not both["file"].equals(both_runs[0]["file"]) for both in both_runs[1:]):
        raise UserError(f"{first}'s runs (one per seed) were not scored on the same images; rerun its evaluate stages")
    return (both_runs[0]["actual_first"] == positive).to_numpy().astype(int), both_runs


def paired_test(first: str, second: str, predictions: dict[str, list[pd.DataFrame]], positive: str) -> PairedTest:
    """Two models' predictions on the same images, one table per seed: with one seed, DeLong's and
    McNemar's tests; with several, both tests over seeds (seed_aware_delong, seed_aware_accuracy)."""
    labels, both_runs = aligned(first, second, predictions[first], predictions[second], positive)
    probabilities = {side: [both[f"probability_{side}"].to_numpy() for both in both_runs]
                     for side in ("first", "second")}
    predicted = {side: [(both[f"predicted_{side}"] == positive).to_numpy().astype(int) for both in both_runs]
                 for side in ("first", "second")}
    only = [mcnemar_test(labels, one, other) for one, other in zip(predicted["first"], predicted["second"])]
    counts = {key: sum(found[key] for found in only) for key in ("only_first_right", "only_second_right")}
    if len(both_runs) == 1:
        auc = delong_test(labels, probabilities["first"][0], probabilities["second"][0])
        right = {side: predicted[side][0] == labels for side in predicted}
        return PairedTest(
            first=first, second=second, images=len(labels),
            roc_auc_difference=rounded(auc["difference"]), roc_auc_standard_error=rounded(auc["standard_error"]),
            roc_auc_p_value=auc["p_value"], roc_auc_test_undefined=auc["undefined"],
            accuracy_difference=round(float(right["first"].mean() - right["second"].mean()), 6),
            accuracy_p_value=only[0]["p_value"], **counts)
    auc = seed_aware_delong(labels, probabilities["first"], probabilities["second"])
    accuracy = seed_aware_accuracy(labels, predicted["first"], predicted["second"])
    return PairedTest(
        first=first, second=second, images=len(labels), seeds=len(both_runs),
        roc_auc_test="DeLong over seeds", accuracy_test="paired accuracy over seeds",
        roc_auc_difference=rounded(auc["difference"]), roc_auc_standard_error=rounded(auc["standard_error"]),
        roc_auc_seed_standard_deviation=rounded(auc["seed_standard_deviation"]),
        roc_auc_p_value=auc["p_value"], roc_auc_test_undefined=auc["undefined"],
        accuracy_difference=rounded(accuracy["difference"]),
        accuracy_standard_error=rounded(accuracy["standard_error"]),
        accuracy_seed_standard_deviation=rounded(accuracy["seed_standard_deviation"]),
        accuracy_p_value=accuracy["p_value"], **counts)


def paired_tests(predictions: dict[str, dict[str, list[pd.DataFrame]]], reference: str,
                 positive: str) -> dict[str, dict[str, PairedTest]]:
    """Per split, every pair of models (each a table per seed): the reference always second, else in
    params order."""
    models = list(predictions)
    pairs = [(first, second) for index, second in enumerate(models) for first in models[index + 1:]]
    pairs = [(second, first) if first == reference else (first, second) for first, second in pairs]
    tests: dict[str, dict[str, PairedTest]] = {}
    for split in EVALUATED_SPLITS:
        by_model = {model: predictions[model][split] for model in models}
        tests[split] = {f"{first}_vs_{second}": paired_test(first, second, by_model, positive)
                        for first, second in pairs}
    return tests


FAMILY = "every paired test in this file: ROC AUC and accuracy, every pair of models, both splits"


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


def over_seeds(values: list[float | None]) -> tuple[float | None, SeedSpread]:
    """A model's metric over its seeds: the mean (the value itself with one seed), and the spread."""
    if any(value is None for value in values):
        return None, SeedSpread(values=values, standard_deviation=None, low=None, high=None)
    deviation = round(stdev(values), 6) if len(values) > 1 else None
    return fmean(values), SeedSpread(values=values, standard_deviation=deviation, low=min(values),
                                                high=max(values))


def compare(metrics_by_model: dict[str, list[ModelMetrics]], reference: str,
            tests: dict[str, dict[str, PairedTest]] | None = None, seeds: list[int] | None = None) -> Comparison:
    """Per split and metric: each model's value, its mean over its runs (one per seed, in `seeds`'
    order), its spread, and for the others its difference to `reference`; and the paired tests, when
    given."""
    tables, spread = {}, {}
    for split in EVALUATED_SPLITS:
        tables[split], spread[split] = {}, {}
        for metric in METRIC_NAMES:
            row, spread[split][metric] = {}, {}
            for model, runs in metrics_by_model.items():
                row[model], spread[split][metric][model] = over_seeds([getattr(run.split(split), metric)
                                                                       for run in runs])
            base_value = row.get(reference)
            if reference in metrics_by_model:
                for model in metrics_by_model:
                    if model != reference:
                        value = row[model]
                        row[f"{model}_minus_{reference}"] = (
                            None if value is None or base_value is None else round(value - base_value, 6))
            tables[split][metric] = row
    adjusted, adjustment = adjust_for_multiplicity(tests) if tests else ({}, None)
    first_run = next(iter(metrics_by_model.values()))[0]          # every run is scored on the same images
    return Comparison(reference=reference,
                      models={model: runs[0].description for model, runs in metrics_by_model.items()},
                      seeds=list(seeds or []), spread=spread, tests=adjusted, adjustment=adjustment,
                      majority_rate={split: first_run.split(split).majority_rate for split in EVALUATED_SPLITS},
                      **tables)


def roc_by_model(curves: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's ROC points in one long table: model, fpr, tpr."""
    return pd.concat([curve.assign(model=model)[["model", "fpr", "tpr"]] for model, curve in curves.items()],
                     ignore_index=True)


def run_outputs(model: str, seed: int | str) -> list[Path]:
    """What a training run (train@<model>-<seed>, evaluate@<model>-<seed>) leaves in the workspace, by the
    contracts' paths. DVC leaves a stage's outputs when the stage goes: a seed taken out of params.yaml's
    seeds leaves these."""
    folders = (ModelDir, EvaluationDir, LearningCurves, RocCurves, ConfusionCounts, ReliabilityCurves)
    return [*(kind.of(model, seed).root for kind in folders),
            *(kind.path(model, seed) for kind in (TrainMetrics, ModelMetrics, Scores))]


def leftover_runs(models: Sequence[str], seeds: Sequence[int], root: Path = Path(".")) -> dict[int, list[Path]]:
    """Per seed not in `seeds`, the outputs its training runs left (run_outputs), relative to root."""
    found: dict[int, list[Path]] = {}
    for each_model in zip(*(run_outputs(model, "*") for model in models)):     # kind by kind
        for pattern in each_model:
            for path in sorted(root.glob(str(pattern))):
                seed = path.name.removesuffix(".json")
                if seed.isdigit() and int(seed) not in seeds:
                    found.setdefault(int(seed), []).append(path.relative_to(root))
    return found


def refuse_leftover_runs(models: Sequence[str], seeds: Sequence[int], root: Path = Path(".")) -> None:
    """One line naming a removed seed's outputs and the command that removes them: they would go into
    git with `git add -A`, and the report's folders would keep them."""
    found = leftover_runs(models, seeds, root)
    if found:
        gone = sorted(found)
        paths = [str(path) for seed in gone for path in found[seed]]
        raise UserError(f"seed{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))} left params.yaml's seeds, "
                        f"but {len(paths)} of its runs' outputs remain ({paths[0]}, ...): remove them "
                        f"(rm -r {' '.join(paths)}), or put the seed back")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    models, seeds = params.model_names, params.seeds
    refuse_leftover_runs(models, seeds)
    metrics_by_model = {model: [ModelMetrics.read(ModelMetrics.path(model, seed)) for seed in seeds]
                        for model in models}
    predictions = {model: {split: [EvaluationDir.of(model, seed).read_predictions(split) for seed in seeds]
                           for split in EVALUATED_SPLITS} for model in models}
    comparison = compare(metrics_by_model, params.compare.reference,
                         paired_tests(predictions, params.compare.reference, params.prepare.classes[1]), seeds)
    for split in EVALUATED_SPLITS:
        write_roc_by_model(split, roc_by_model({model: RocCurves.of(model, seeds[0]).read(split) for model in models}))
    comparison.write(Comparison.path)
    over = f" (mean ± SD over seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    for split in EVALUATED_SPLITS:
        for metric, title in (("roc_auc", "ROC AUC"), ("accuracy", "accuracy"), ("balanced_accuracy",
                                                                                   "balanced accuracy")):
            values, spread = comparison.split(split)[metric], comparison.spread[split][metric]
            print(f"{split} {title}{over}: " + ", ".join(
                f"{model} {values[model]:.3f}" + (f" ± {spread[model].standard_deviation:.3f}"
                                                  if spread[model].standard_deviation is not None else "")
                for model in models if values[model] is not None))
        majority = comparison.majority_rate.get(split)
        if majority is not None:
            print(f"{split}: always answering the larger class scores {majority:.3f}")
        for name, test in comparison.tests[split].items():
            if test.roc_auc_difference is None:
                continue
            auc_test = (f"{test.roc_auc_test} p {test.roc_auc_p_value:.3g}, Holm {test.roc_auc_p_adjusted:.3g}"
                        if test.roc_auc_p_value is not None else f"{test.roc_auc_test} undefined: "
                                                                 f"{test.roc_auc_test_undefined}")
            print(f"  {name}: AUC {test.roc_auc_difference:+.3f} ({auc_test}), "
                  f"accuracy {test.accuracy_difference:+.3f} "
                  f"({test.accuracy_test} p {test.accuracy_p_value:.3g}, Holm {test.accuracy_p_adjusted:.3g})")


if __name__ == "__main__":
    cli.run(main)
