"""evaluate: score one trained model on the validation and cross-dataset test splits.

Writes metrics/<model>.json (a description, then accuracy, sensitivity, specificity, precision, F1,
ROC AUC per split; Male is the positive class; the same keys for every model) and plots/<model>/:
ROC points and per-image predictions as CSV (DVC plot data) and PNG figures (learning curves, ROC,
confusion matrices).
The transfer model's frozen VGG16 base already ran over every split in the features stage, so unless
it was fine-tuned its head is evaluated on those cached features: the same numbers, minutes sooner.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from stages import cli
from stages.config import FEATURES_DIR, METRICS_DIR, MODELS_DIR, PLOTS_DIR, TFRECORDS_DIR, load_params
from stages.fsutil import staged_dir, write_json_atomic
from stages.metrics import METRIC_NAMES, classification_metrics, roc_points
from stages.errors import UserError

EVALUATED_SPLITS = ("val", "test")


def predict_split(model, tfrecords_root: Path, split: str, batch_size: int) -> pd.DataFrame:
    """P(class 1) for every image of a split, with its file name and true label index."""
    from stages.records import load_split

    files, labels, probabilities = [], [], []
    for images, batch_labels, batch_files in load_split(tfrecords_root, split, batch_size, with_filenames=True):
        probabilities.append(model.predict_on_batch(images).reshape(-1))
        labels.append(batch_labels.numpy().astype(int))
        files.extend(name.decode("utf-8") for name in batch_files.numpy())
    return pd.DataFrame({
        "file": files,
        "label": np.concatenate(labels) if labels else np.array([], dtype=int),
        "probability": np.concatenate(probabilities) if probabilities else np.array([], dtype=float),
    })


def predict_features(head, features_root: Path, split: str, batch_size: int) -> pd.DataFrame:
    """P(class 1) for every image of a split from the transfer head on its cached base features."""
    from stages.features import load_features

    features, labels, files = load_features(features_root, split)
    probabilities = head.predict(features, batch_size=batch_size, verbose=0).reshape(-1)
    return pd.DataFrame({"file": files, "label": labels.astype(int), "probability": probabilities})


def uses_cached_features(training: dict, features_root: Path) -> bool:
    """True when the model's base is frozen and is the one the features stage ran (same weights, same cut)."""
    from stages.features import read_features_manifest

    if training.get("model") != "transfer" or training.get("fine_tuned", True):
        return False
    manifest = Path(features_root) / "manifest.json"
    if not manifest.is_file():
        return False
    features = read_features_manifest(features_root)
    return all(features.get(key) == training.get(key) for key in ("weights", "feature_layer"))


def score(predictions: pd.DataFrame, classes: list[str], threshold: float) -> tuple[dict, pd.DataFrame, dict]:
    """Metrics, the plot-ready prediction rows (actual/predicted class names) and ROC points."""
    metrics = classification_metrics(predictions["label"], predictions["probability"], threshold)
    predicted = (predictions["probability"] >= threshold).astype(int)
    rows = pd.DataFrame({
        "file": predictions["file"],
        "actual": [classes[i] for i in predictions["label"]],
        "predicted": [classes[i] for i in predicted],
        "probability": predictions["probability"].round(6),
    })
    return metrics, rows, roc_points(predictions["label"], predictions["probability"])


def write_figures(out_dir: Path, name: str, classes: list[str], history: pd.DataFrame,
                  results: dict[str, tuple[dict, dict]]) -> None:
    """learning_curves.png, roc.png (val and test) and confusion_<split>.png."""
    from stages import figures

    figures.save(figures.learning_curves(history, name), out_dir / "learning_curves.png")
    curves = {figures.SPLIT_TITLES[split]: (roc["fpr"], roc["tpr"], metrics["roc_auc"])
              for split, (metrics, roc) in results.items()}
    figures.save(figures.roc_figure(curves, f"{name}: ROC"), out_dir / "roc.png")
    for split, (metrics, _) in results.items():
        title = f"{name}: {figures.SPLIT_TITLES[split]}"
        figures.save(figures.confusion_figure(metrics["confusion"], classes, title), out_dir / f"confusion_{split}.png")


def describe_model(name: str, training: dict) -> str:
    """What a model is, for metrics and titles; the transfer model names its base weights."""
    if name == "transfer":
        return training["weights_label"]
    return {"baseline": "baseline CNN (assignment Figure 1)", "improved": "improved CNN"}.get(name, name)


def evaluate(name: str, model_dir: Path, tfrecords_root: Path, out_dir: Path, classes: list[str],
             threshold: float, batch_size: int, features_root: Path = FEATURES_DIR) -> dict:
    """Evaluate the model saved in model_dir on val and test; write plot data and figures; return metrics."""
    from stages import models

    model = models.load(model_dir / "model.keras")
    training = json.loads((model_dir / "training.json").read_text())
    description = describe_model(name, training)
    summary: dict = {"description": description}
    if uses_cached_features(training, features_root):
        source, predict = features_root, partial(predict_features, model.get_layer("head"))
    else:
        source, predict = tfrecords_root, partial(predict_split, model)
    results = {}
    for split in EVALUATED_SPLITS:
        metrics, rows, roc = score(predict(source, split, batch_size), classes, threshold)
        rows.to_csv(out_dir / f"predictions_{split}.csv", index=False)
        pd.DataFrame(roc).to_csv(out_dir / f"roc_{split}.csv", index=False)
        summary[split] = {key: metrics[key] for key in METRIC_NAMES} | {"n": metrics["n"]}
        results[split] = (metrics, roc)
    title = name if name == description else f"{name} ({description})"
    write_figures(out_dir, title, classes, pd.read_csv(model_dir / "history.csv"), results)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    model = cli.parse_model_argument(argv, __doc__.splitlines()[0], params.model_names)
    model_dir = MODELS_DIR / model
    if not (model_dir / "model.keras").is_file():
        raise UserError(f"{model_dir}/model.keras: not found; run its train stage first (dvc repro train@{model})")
    with staged_dir(PLOTS_DIR / model) as staging:
        summary = evaluate(model, model_dir, TFRECORDS_DIR, staging, params.prepare.classes,
                           params.evaluate.threshold, params.evaluate.batch_size)
    write_json_atomic(METRICS_DIR / f"{model}.json", summary)
    print(summary["description"])
    for split in EVALUATED_SPLITS:
        metrics = summary[split]
        shown = ", ".join(f"{key} {metrics[key]:.3f}" for key in METRIC_NAMES if metrics[key] is not None)
        print(f"{model} {split}: {shown}")


if __name__ == "__main__":
    cli.run(main)
