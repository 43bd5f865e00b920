"""evaluate: score one trained model (one seed's run) on the validation and cross-dataset test splits.

Per run (`python -m stages.evaluate <model> --seed <seed>`; <run> below is <model>/<seed>), writes, in
git: metrics/<run>.json (the headline scores people compare, DVC's declared metrics: accuracy, balanced
accuracy, majority-class rate, ROC AUC, F1, sensitivity, specificity per split, epochs trained),
metrics/evaluate/<run>.json (the model's description; per split accuracy, balanced accuracy, sensitivity,
specificity, precision, F1, ROC AUC with bootstrap intervals, the majority-class rate and, where groups.csv
gives groups, results per group; Male is the positive class; and its calibration: ECE and Brier with
intervals, a temperature and a threshold chosen on validation, evaluate.calibration),
plots/roc/<run>/, plots/confusion/<run>/ and plots/calibration/<run>/ (DVC plot data); in the DVC cache:
data/evaluate/<run>/ (per-image predictions; PNG figures: learning curves, ROC, confusion, reliability; heat maps
of where the model looks on the test images it is most confidently wrong and right about, listed in
explanations.csv). The model's module says how it is scored (a frozen base's head, say, on that
base's cached features); heat maps always come from the whole saved model on the prepared images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from stages.analysis import groups as grouping
from stages.analysis.statistics import METRIC_NAMES, bootstrap_intervals, classification_metrics, roc_points
from stages.common import cli, machine
from stages.common.atomic_files import atomic_file, staged_dir
from stages.common.config import (EVALUATED_SPLITS, PREPARED_DIR, BootstrapParams, CalibrationParams, ExplainParams,
                                  load_params)
from stages.common.errors import UserError
from stages.contracts.evaluation import (BootstrapInfo, Bounds, Calibration, ChosenThreshold, ConfusionCounts,
                                         EvaluationDir, ModelMetrics, ReliabilityCurves, RocCurves, Scores,
                                         SplitCalibration, SplitGroups, SplitMetrics, TemperatureScaling)
from stages.contracts.jsonfile import missing
from stages.contracts.prepared import PreparedSplit, read_groups
from stages.contracts.training import LearningCurves, ModelDir, TrainingInfo

if TYPE_CHECKING:  # Keras loads only when a model is scored
    from stages.modelkit.family import DataRoots, ModelFamily


def score(predictions: pd.DataFrame, classes: list[str], threshold: float,
          roc_points_kept: int | None = None) -> tuple[dict, pd.DataFrame, dict]:
    """Metrics, the plot-ready prediction rows (actual/predicted class names) and ROC points."""
    metrics = classification_metrics(predictions["label"], predictions["probability"], threshold)
    predicted = (predictions["probability"] >= threshold).astype(int)
    rows = pd.DataFrame({
        "file": predictions["file"],
        "actual": [classes[i] for i in predictions["label"]],
        "predicted": [classes[i] for i in predicted],
        "probability": predictions["probability"].round(6),
    })
    return metrics, rows, roc_points(predictions["label"], predictions["probability"], roc_points_kept)


def confusion_counts(confusion: dict[str, int], classes: list[str]) -> pd.DataFrame:
    """The confusion matrix as four (actual, predicted, count) rows."""
    negative, positive = classes
    return pd.DataFrame({"actual": [negative, negative, positive, positive],
                         "predicted": [negative, positive, negative, positive],
                         "count": [confusion["tn"], confusion["fp"], confusion["fn"], confusion["tp"]]})


@dataclass(frozen=True)
class Outputs:
    """Where one model's evaluation goes."""

    evaluation: EvaluationDir   # data/evaluate/<name>/ (DVC cache): predictions per image, figures
    roc: RocCurves              # plots/roc/<name>/ (git)
    confusion: ConfusionCounts  # plots/confusion/<name>/ (git)
    reliability: ReliabilityCurves  # plots/calibration/<name>/ (git)


def write_figures(evaluation: EvaluationDir, title: str, classes: list[str], history: pd.DataFrame,
                  results: dict[str, tuple[dict, dict]], auc_intervals: dict[str, Bounds | None] | None = None) -> None:
    """learning_curves.png, roc.png (val and test, each AUC with its interval when given) and
    confusion_<split>.png."""
    from stages.analysis import figures

    figures.save(figures.learning_curves(history, title), evaluation.learning_curves_figure)
    bounds = {split: (found.low, found.high) if found else None for split, found in (auc_intervals or {}).items()}
    curves = {figures.SPLIT_TITLES[split]: (roc["fpr"], roc["tpr"], metrics["roc_auc"], bounds.get(split))
              for split, (metrics, roc) in results.items()}
    figures.save(figures.roc_figure(curves, f"{title}: ROC"), evaluation.roc_figure)
    for split, (metrics, _) in results.items():
        figures.save(figures.confusion_figure(metrics["confusion"], classes, f"{title}: {figures.SPLIT_TITLES[split]}"),
                     evaluation.confusion_figure(split))


def intervals(predictions: pd.DataFrame, threshold: float, bootstrap: BootstrapParams) -> dict[str, Bounds | None]:
    """Every metric's bootstrap interval on these predictions (evaluate.bootstrap)."""
    found = bootstrap_intervals(predictions["label"].to_numpy(), predictions["probability"].to_numpy(), threshold,
                                bootstrap.resamples, bootstrap.seed, bootstrap.level)
    return {name: Bounds.of(bounds) for name, bounds in found.items()}


def split_groups(predictions: pd.DataFrame, groups: dict[str, str], classes: list[str], threshold: float,
                 min_per_class: int, bootstrap: BootstrapParams | None) -> SplitGroups | None:
    """Per group (groups: file -> group, data/prepared/groups.csv) on one split's predictions, with
    intervals when `bootstrap` asks; None when no image of the split has a group."""
    found = [groups.get(file) or None for file in predictions["file"]]
    if not any(found):
        return None
    return grouping.split_groups(predictions["label"].to_numpy(), predictions["probability"].to_numpy(), found,
                                 classes, threshold, min_per_class, bootstrap.resamples if bootstrap else 0,
                                 bootstrap.seed if bootstrap else 0, bootstrap.level if bootstrap else 0.95)


def split_calibration(labels, probabilities, params: CalibrationParams,
                      bootstrap: BootstrapParams | None) -> SplitCalibration:
    """ECE and Brier of P(positive) on one split, each with its bootstrap interval when asked."""
    from stages.analysis import calibration

    interval = {}
    if bootstrap and bootstrap.resamples:
        found = calibration.calibration_intervals(labels, probabilities, params.bins, bootstrap.resamples,
                                                  bootstrap.seed, bootstrap.level)
        interval = {name: Bounds.of(bounds) for name, bounds in found.items()}
    ece, brier = calibration.expected_calibration_error(labels, probabilities, params.bins), \
        calibration.brier_score(labels, probabilities)
    return SplitCalibration(ece=None if ece is None else round(ece, 6), brier=None if brier is None else round(brier, 6),
                            interval=interval)


def calibrate(predictions: dict[str, pd.DataFrame], params: CalibrationParams,
              bootstrap: BootstrapParams | None, reliability: ReliabilityCurves) -> Calibration:
    """evaluate.calibration on every split: the reliability points (written), ECE and Brier; then, as
    asked, a temperature and a threshold chosen on validation and what they give on the test split."""
    from stages.analysis import calibration

    found = {}
    for split, rows in predictions.items():
        labels, probabilities = rows["label"].to_numpy(), rows["probability"].to_numpy()
        reliability.write(split, pd.DataFrame(calibration.reliability(labels, probabilities, params.bins),
                                              columns=list(reliability.columns)).round(6))
        found[split] = split_calibration(labels, probabilities, params, bootstrap)
    val, test = predictions["val"], predictions["test"]
    temperature = threshold = None
    if params.temperature:
        fitted = calibration.fit_temperature(val["label"], val["probability"])
        scaled = None if fitted is None else split_calibration(
            test["label"].to_numpy(), calibration.with_temperature(test["probability"], fitted), params, bootstrap)
        temperature = TemperatureScaling(temperature=None if fitted is None else round(fitted, 6), test=scaled)
    if params.youden:
        chosen = calibration.youden_threshold(val["label"], val["probability"])
        at_chosen = {} if chosen is None else classification_metrics(test["label"], test["probability"], chosen)
        threshold = ChosenThreshold(method="youden", threshold=None if chosen is None else round(chosen, 6),
                                    test={key: at_chosen.get(key) for key in METRIC_NAMES if key != "roc_auc"})
    return Calibration(bins=params.bins, temperature=temperature, threshold=threshold, **found)


def confident_examples(rows: pd.DataFrame, count: int, classes: Sequence[str],
                       threshold: float = 0.5) -> pd.DataFrame:
    """The `count` wrong predictions furthest from the decision threshold (evaluate.threshold: where
    the rows' predicted class changes; group "mistake"), then for each class the `count` right ones
    furthest from it (group "correct"): most confident first, ties by file."""
    confidence = (rows["probability"] - threshold).abs()
    ranked = rows.assign(confidence=confidence).sort_values(["confidence", "file"], ascending=[False, True])
    right = ranked["actual"] == ranked["predicted"]
    groups = [ranked[~right].head(count).assign(group="mistake")]
    groups += [ranked[right & (ranked["actual"] == label)].head(count).assign(group="correct") for label in classes]
    return pd.concat(groups).drop(columns="confidence").reset_index(drop=True)


def write_explanations(model, rows: pd.DataFrame, prepared_root: Path, evaluation: EvaluationDir,
                       settings: ExplainParams, classes: Sequence[str], threshold: float) -> pd.DataFrame:
    """Heat maps (stages/analysis/heatmaps.py) for the confident_examples of these test predictions, each for
    the class `threshold` predicts (as the rows do): each image beside its map in evaluation's explain/
    folder, listed in explanations.csv; returns that table."""
    import io

    import numpy as np
    from PIL import Image

    from stages.analysis import heatmaps

    chosen = confident_examples(rows, settings.images, classes, threshold)
    if chosen.empty:
        evaluation.write_explanations(chosen.assign(method="", figure=""))
        return chosen
    with PreparedSplit(prepared_root, "test") as split:
        images = np.stack([np.asarray(Image.open(io.BytesIO(split.read(file))).convert("RGB"), np.float32)
                           for file in chosen["file"]])
    try:
        maps, method = heatmaps.explain(model, images, settings.method, threshold=threshold)
    except ValueError as error:       # method gradcam for a model it does not apply to
        raise UserError(f"evaluate.explain.method: {error} (or auto)") from None
    return save_explanations(chosen, images, maps, method, evaluation)


def save_explanations(chosen: pd.DataFrame, images, maps, method: str, evaluation: EvaluationDir) -> pd.DataFrame:
    """Each chosen image beside its map, named by group, class and rank (mistakes are ranked together,
    correct answers within their class), and explanations.csv listing them; returns that table."""
    from stages.analysis import heatmaps

    kinds = chosen["actual"].where(chosen["group"] == "correct", "any")
    ranks = chosen.groupby([chosen["group"], kinds]).cumcount() + 1
    figures = []
    for group, kind, rank, image, heat in zip(chosen["group"], kinds, ranks, images, maps):
        target = evaluation.explanation_figure(group, kind, rank)
        heatmaps.write_explanation(target, image, heat)
        figures.append(target.relative_to(evaluation.root).as_posix())
    chosen = chosen.assign(method=method, figure=figures)
    evaluation.write_explanations(chosen)
    return chosen


def evaluate(family_class: type[ModelFamily], model_dir: ModelDir, curves: LearningCurves, data: DataRoots,
             out: Outputs, classes: list[str], threshold: float, batch_size: int,
             roc_points_kept: int | None = None, bootstrap: BootstrapParams | None = None,
             explain: ExplainParams | None = None, prepared_root: Path = PREPARED_DIR,
             calibration: CalibrationParams | None = None, group_min_per_class: int | None = None) -> ModelMetrics:
    """Score the model in model_dir (a family_class model) on val and test; write plot data, predictions and figures
    into `out`; return the metrics, with intervals, heat maps and per-group results (prepared_root's) where asked."""
    from stages.modelkit.registry import load_model

    training = TrainingInfo.read(model_dir.training)
    model = load_model(model_dir.model, training.model)
    group_of = read_groups(prepared_root) if group_min_per_class else {}
    results, summary, by_split = {}, {}, {}
    for split in EVALUATED_SPLITS:
        predictions = by_split[split] = family_class.predict_split(model, training, data, split, batch_size)
        metrics, rows, roc = score(predictions, classes, threshold, roc_points_kept)
        out.evaluation.write_predictions(split, rows)
        out.roc.write(split, pd.DataFrame(roc))
        out.confusion.write(split, confusion_counts(metrics["confusion"], classes))
        interval = intervals(predictions, threshold, bootstrap) if bootstrap and bootstrap.resamples else {}
        per_group = split_groups(predictions, group_of, classes, threshold, group_min_per_class, bootstrap)
        summary[split] = SplitMetrics(**{key: metrics[key] for key in METRIC_NAMES}, n=metrics["n"],
                                      majority_rate=metrics["majority_rate"], interval=interval, groups=per_group)
        results[split] = (metrics, roc)
        if split == "test" and explain and explain.images:
            write_explanations(model, rows, prepared_root, out.evaluation, explain, classes, threshold)
    name, description = training.model, training.description
    title = name if name == description else f"{name} ({description})"
    write_figures(out.evaluation, title, classes, curves.read(), results,
                  {split: summary[split].interval.get("roc_auc") for split in EVALUATED_SPLITS})
    calibrated = calibrate(by_split, calibration, bootstrap, out.reliability) if calibration else None
    if calibrated is not None:
        write_reliability_figure(out, title, calibrated)
    info = BootstrapInfo(**bootstrap.model_dump()) if bootstrap and bootstrap.resamples else None
    return ModelMetrics(description=description, bootstrap=info, calibration=calibrated,
                        evaluated_on=machine.describe_cpu(), **summary)


def write_reliability_figure(out: Outputs, title: str, calibrated: Calibration) -> None:
    """reliability.png: both splits' reliability points (plots/calibration), ECE and Brier in the legend."""
    from stages.analysis import figures

    curves = {figures.SPLIT_TITLES[split]: (out.reliability.read(split).to_dict("records"),
                                            getattr(calibrated, split).ece, getattr(calibrated, split).brier)
              for split in EVALUATED_SPLITS}
    figures.save(figures.reliability_figure(curves, f"{title}: reliability"), out.evaluation.reliability_figure)


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    name, seed = cli.parse_run_arguments(argv, __doc__.splitlines()[0], params.model_names, params.seeds)
    model_dir = ModelDir.of(name, seed)
    if not model_dir.model.is_file():
        raise missing(model_dir.model, f"train@{name}-{seed}")
    from stages.common import distribute
    from stages.modelkit import registry
    from stages.modelkit.family import DataRoots

    distribute.limit_threads()
    # Outputs change together: everything is staged (metrics files first), then renamed into place.
    with (staged_dir(EvaluationDir.of(name, seed).root) as evaluation, staged_dir(RocCurves.of(name, seed).root) as roc,
          staged_dir(ConfusionCounts.of(name, seed).root) as confusion,
          staged_dir(ReliabilityCurves.of(name, seed).root) as reliability,
          atomic_file(ModelMetrics.path(name, seed), "w") as metrics_file,
          atomic_file(Scores.path(name, seed), "w") as scores_file):
        metrics = evaluate(registry.family_class(name), model_dir, LearningCurves.of(name, seed), DataRoots(),
                           Outputs(EvaluationDir(evaluation), RocCurves(roc), ConfusionCounts(confusion),
                                   ReliabilityCurves(reliability)),
                           params.prepare.classes, params.evaluate.threshold, params.evaluate.batch_size,
                           params.evaluate.roc_points, params.evaluate.bootstrap, params.evaluate.explain,
                           calibration=params.evaluate.calibration,
                           group_min_per_class=params.evaluate.group_min_per_class)
        metrics_file.write(metrics.text())
        scores_file.write(Scores.of(metrics, TrainingInfo.read(model_dir.training).epochs_run).text())
    print(metrics.description)
    for split in EVALUATED_SPLITS:
        values = metrics.split(split)
        shown = ", ".join(f"{key} {getattr(values, key):.3f}" + (
            f" [{values.interval[key].low:.3f}–{values.interval[key].high:.3f}]" if values.interval.get(key) else "")
            for key in METRIC_NAMES if getattr(values, key) is not None)
        majority = "" if values.majority_rate is None else f"; always the larger class {values.majority_rate:.3f}"
        print(f"{name} (seed {seed}) {split}: {shown}{majority}")
        if values.groups is not None:
            print(f"{name} {split} by group: {grouping.summary_line(values.groups)}")
        if metrics.calibration is not None:
            found = getattr(metrics.calibration, split)
            print(f"{name} {split} calibration: ECE {found.ece:.3f}, Brier {found.brier:.3f}")


if __name__ == "__main__":
    cli.run(main)
