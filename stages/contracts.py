"""The files one stage writes and another reads: for each, one typed definition beside its writer and reader.

Both sides use these, so a field has one name everywhere. A missing or malformed file is one
UserError that names the file and the stage that writes it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional, Union

import pandas as pd
from pydantic import BaseModel

from stages.config import EVALUATE_DIR, FEATURES_DIR, METRICS_DIR, MODELS_DIR, PLOTS_DIR, SPLITS, TFRECORDS_DIR
from stages.errors import UserError
from stages.fsutil import atomic_file, zip_entry
from stages.jsonfile import JsonFile, missing




def read_csv(path: Path, columns: tuple[str, ...], stage: str) -> pd.DataFrame:
    """A CSV another stage wrote, checked for the columns this contract promises."""
    if not path.is_file():
        raise missing(path, stage)
    table = pd.read_csv(path)
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise UserError(f"{path}: no column {', '.join(absent)}; rerun the {stage} stage (dvc repro -f {stage})")
    return table


# --- prepare: data/prepared/<split>.zip and metrics/prepare.json ------------------------------------

# data/prepared holds one uncompressed zip per split, its members <Class>/<name>.png: three files for
# DVC to hash and cache instead of one per image (README, Benchmark), and still a folder of PNGs to
# anyone who opens it (any zip viewer, `unzip`, Python's zipfile). An image's `file`, as later stages
# record it, is <split>/<Class>/<name>.png.

def prepared_archive(root: Path | str, split: str) -> Path:
    return Path(root) / f"{split}.zip"


class PreparedWriter:
    """Writes data/prepared's archives into `root` as images arrive: member order is arrival order, every
    entry dated 1980 (fsutil.zip_entry), so the same images in the same order give the same bytes."""

    def __init__(self, root: Path | str, classes: list[str]):
        self.archives = {}
        for split in SPLITS:
            archive = zipfile.ZipFile(prepared_archive(root, split), "w", zipfile.ZIP_STORED)
            for label in classes:
                archive.writestr(zip_entry(f"{label}/"), b"")     # the class folders, even when empty
            self.archives[split] = archive

    def add(self, split: str, label: str, name: str, png: bytes) -> None:
        self.archives[split].writestr(zip_entry(f"{label}/{name}"), png)

    def close(self) -> None:
        for archive in self.archives.values():
            archive.close()

    def __enter__(self) -> "PreparedWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PreparedSplit:
    """One split of data/prepared, open for reading: its image files and their PNG bytes."""

    def __init__(self, root: Path | str, split: str):
        self.split, self.path = split, prepared_archive(root, split)
        if not self.path.is_file():
            raise missing(self.path, PrepareSummary.written_by)
        try:
            self.archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise UserError(f"{self.path}: not a zip archive (damaged); rerun the prepare stage "
                            "(dvc repro -f prepare)") from None

    def files(self, label: str | None = None) -> list[str]:
        """The split's image files (<split>/<Class>/<name>.png), sorted; only class `label`'s if given."""
        prefix = "" if label is None else f"{label}/"
        return [f"{self.split}/{name}" for name in sorted(self.archive.namelist())
                if not name.endswith("/") and name.startswith(prefix)]

    def read(self, file: str) -> bytes:
        return self.archive.read(file.split("/", 1)[1])

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> "PreparedSplit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_prepared(root: Path | str, file: str) -> bytes:
    """One prepared image's PNG bytes, by its `file` (<split>/<Class>/<name>.png)."""
    with PreparedSplit(root, file.split("/", 1)[0]) as split:
        return split.read(file)


class SkippedFile(BaseModel):
    split: str
    file: str
    reason: str


class PrepareSummary(JsonFile):
    """metrics/prepare.json: images per split and class (with a "total"), every skipped file and why."""

    written_by: ClassVar[str] = "prepare"
    path: ClassVar[Path] = METRICS_DIR / "prepare.json"

    image_size: int
    counts: dict[str, dict[str, int]]
    skipped_count: int
    skipped: list[SkippedFile]
    # Images with the same decoded pixels in two splits, per pair ("train-test": 3), and how many
    # training copies were dropped for it (prepare.drop_duplicates).
    duplicates: dict[str, int]
    duplicates_dropped: int


# --- tfrecords: data/tfrecords/*.tfrecord and manifest.json (the record schema: stages/records.py) --

class SplitShards(BaseModel):
    count: int
    per_class: dict[str, int]
    shards: list[str]


class TfrecordsManifest(JsonFile):
    """data/tfrecords/manifest.json: image size, class names (label index = position), shards per split."""

    written_by: ClassVar[str] = "tfrecords"
    name: ClassVar[str] = "manifest.json"

    image_size: int
    classes: list[str]
    splits: dict[str, SplitShards]

    @classmethod
    def read_from(cls, root: Path | str = TFRECORDS_DIR) -> "TfrecordsManifest":
        return cls.read(Path(root) / cls.name)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)


# --- features: data/features/<split>-NNNNN-of-NNNNN.tfrecord and manifest.json (schema: records.py) -

class FeatureShards(BaseModel):
    count: int
    shape: list[int]          # one image's base output
    shards: list[str]


class FeaturesManifest(JsonFile):
    """data/features/manifest.json: which frozen base made the features, in what precision, and each
    split's shards. The features are stored in the dtype the base computes in (exactly its output)."""

    written_by: ClassVar[str] = "features"
    name: ClassVar[str] = "manifest.json"

    weights: str
    feature_layer: str
    precision: str
    weights_label: str
    dtype: str                # float32 | bfloat16 | float16
    splits: dict[str, FeatureShards]

    @classmethod
    def read_from(cls, root: Path | str = FEATURES_DIR) -> "FeaturesManifest":
        return cls.read(Path(root) / cls.name)


@dataclass(frozen=True)
class ModelOutputs:
    """One model's folder of a per-model stage's output, <parent>/<name>/."""

    root: Path
    parent: ClassVar[Path]

    @classmethod
    def of(cls, name: str, parent: Path | None = None):
        return cls(Path(parent or cls.parent) / name)


# --- train: models/<name>/ ------------------------------------------------------------------------

MODEL_FILE = "model.keras"


class ModelDir(ModelOutputs):
    """models/<name>/ (DVC cache): model.keras, training.json, summary.txt."""

    parent: ClassVar[Path] = MODELS_DIR

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def training(self) -> Path:
        return self.root / "training.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.txt"


# Keras's per-epoch log (0-based epoch), training then validation loss and accuracy.
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# Each learning-curve file: one row per epoch (1-based), the metric on training and validation.
CURVE_COLUMNS = ("epoch", "training", "validation")


class LearningCurves(ModelOutputs):
    """plots/learning_curves/<name>/ (git): loss.csv and accuracy.csv, per epoch on training and validation."""

    parent: ClassVar[Path] = PLOTS_DIR / "learning_curves"
    metrics: ClassVar[tuple[str, ...]] = ("loss", "accuracy")

    def file(self, metric: str) -> Path:
        return self.root / f"{metric}.csv"

    def write(self, history: pd.DataFrame) -> None:
        """From Keras's log (HISTORY_COLUMNS) to one small file per metric."""
        for metric in self.metrics:
            curve = pd.DataFrame({"epoch": history["epoch"] + 1, "training": history[metric],
                                  "validation": history[f"val_{metric}"]})
            with atomic_file(self.file(metric), "w") as handle:
                curve.to_csv(handle, index=False, lineterminator="\n")

    def read(self) -> pd.DataFrame:
        """Back to Keras's log layout (HISTORY_COLUMNS), as the figures draw it."""
        history = None
        for metric in self.metrics:
            curve = read_csv(self.file(metric), CURVE_COLUMNS, "train")
            part = pd.DataFrame({"epoch": curve["epoch"] - 1, metric: curve["training"],
                                 f"val_{metric}": curve["validation"]})
            history = part if history is None else history.merge(part, on="epoch")
        return history[list(HISTORY_COLUMNS)]


class TrainMetrics(JsonFile):
    """metrics/train/<name>.json (git): epochs run, and loss and accuracy at the epoch with the lowest
    validation loss (the weights early stopping keeps)."""

    written_by: ClassVar[str] = "train"

    epochs_run: int
    best_epoch: int                     # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float

    @staticmethod
    def path(name: str, root: Path = METRICS_DIR / "train") -> Path:
        return Path(root) / f"{name}.json"


class LayerRow(BaseModel):
    name: str
    type: str
    output_shape: str
    parameters: int


class ParameterCounts(BaseModel):
    total: int
    trainable: int
    non_trainable: int


class TrainingInfo(JsonFile):
    """models/<name>/training.json: what was trained, how long, its layer table (the assignment's Figure 1
    columns) and the classes; `details` holds what the model's family records about itself."""

    written_by: ClassVar[str] = "train"

    model: str
    description: str
    classes: list[str]
    epochs_requested: int
    epochs_run: int
    parameters: ParameterCounts
    layers: list[LayerRow]
    details: dict[str, Union[str, bool, int, float]] = {}
    more_compute: list[str] = []        # what the model would try with more compute, for the report


# --- evaluate: metrics/evaluate/<name>.json, plots/roc/<name>/, plots/confusion/<name>/, data/evaluate/<name>/


class Bounds(BaseModel):
    low: float
    high: float


class SplitMetrics(BaseModel):
    """Male (label 1) is the positive class; a value undefined on the data (no positives, say) is None.
    interval: each metric's bootstrap interval (ModelMetrics.bootstrap says which), None where undefined."""

    accuracy: Optional[float]
    sensitivity: Optional[float]
    specificity: Optional[float]
    precision: Optional[float]
    f1: Optional[float]
    roc_auc: Optional[float]
    n: int
    interval: dict[str, Optional[Bounds]] = {}


class BootstrapInfo(BaseModel):
    """How the intervals were made: evaluate.bootstrap at the time."""

    level: float
    resamples: int
    seed: int


class ModelMetrics(JsonFile):
    """metrics/evaluate/<name>.json (git): the model's description and its metrics per evaluated split."""

    written_by: ClassVar[str] = "evaluate"

    description: str
    bootstrap: Optional[BootstrapInfo] = None     # None: no intervals (evaluate.bootstrap.resamples 0)
    val: SplitMetrics
    test: SplitMetrics

    @staticmethod
    def path(name: str, root: Path = METRICS_DIR / "evaluate") -> Path:
        return Path(root) / f"{name}.json"

    def split(self, name: str) -> SplitMetrics:
        return getattr(self, name)


# Per image: its prepared file, actual and predicted class names, P(class 1).
PREDICTION_COLUMNS = ("file", "actual", "predicted", "probability")
# One row per test image with a heat map: group is "mistake" or "correct", figure is its PNG's name
# inside the model's data/evaluate folder, method the one that made the map (stages/explain.py).
EXPLANATION_COLUMNS = ("group", "file", "actual", "predicted", "probability", "method", "figure")
ROC_COLUMNS = ("fpr", "tpr", "threshold")
CONFUSION_COLUMNS = ("actual", "predicted", "count")


def write_csv(path: Path, table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """The contract's columns, in order, written atomically with "\n" line ends (the same bytes everywhere)."""
    with atomic_file(path, "w") as handle:
        table[list(columns)].to_csv(handle, index=False, lineterminator="\n")


class SplitCsvs(ModelOutputs):
    """A per-model folder of one small CSV per evaluated split, <split>.csv, with fixed columns."""

    columns: ClassVar[tuple[str, ...]]

    def file(self, split: str) -> Path:
        return self.root / f"{split}.csv"

    def write(self, split: str, table: pd.DataFrame) -> None:
        write_csv(self.file(split), table, self.columns)

    def read(self, split: str) -> pd.DataFrame:
        return read_csv(self.file(split), self.columns, "evaluate")


class RocCurves(SplitCsvs):
    """plots/roc/<name>/<split>.csv (git): ROC points, thinned to the corners that shape the curve."""

    parent: ClassVar[Path] = PLOTS_DIR / "roc"
    columns: ClassVar[tuple[str, ...]] = ROC_COLUMNS


class ConfusionCounts(SplitCsvs):
    """plots/confusion/<name>/<split>.csv (git): images per (actual, predicted) class pair: four rows,
    whatever the number of images (DVC template confusion_counts)."""

    parent: ClassVar[Path] = PLOTS_DIR / "confusion"
    columns: ClassVar[tuple[str, ...]] = CONFUSION_COLUMNS


class EvaluationDir(ModelOutputs):
    """data/evaluate/<name>/ (DVC cache): per-image predictions per split (as many rows as images, too
    many for git at real scale) and the PNG figures the report shows."""

    parent: ClassVar[Path] = EVALUATE_DIR

    def predictions(self, split: str) -> Path:
        return self.root / f"predictions_{split}.csv"

    def confusion_figure(self, split: str) -> Path:
        return self.root / f"confusion_{split}.png"

    @property
    def learning_curves_figure(self) -> Path:
        return self.root / "learning_curves.png"

    @property
    def roc_figure(self) -> Path:
        return self.root / "roc.png"

    def write_predictions(self, split: str, rows: pd.DataFrame) -> None:
        write_csv(self.predictions(split), rows, PREDICTION_COLUMNS)

    def read_predictions(self, split: str) -> pd.DataFrame:
        return read_csv(self.predictions(split), PREDICTION_COLUMNS, "evaluate")

    @property
    def explanations(self) -> Path:
        return self.root / "explanations.csv"

    def explanation_figure(self, group: str, label: str, rank: int) -> Path:
        """explain/<group>_<label>_<rank>.png: the test image beside its heat map."""
        return self.root / "explain" / f"{group}_{label}_{rank}.png"

    def write_explanations(self, rows: pd.DataFrame) -> None:
        write_csv(self.explanations, rows, EXPLANATION_COLUMNS)

    def read_explanations(self) -> pd.DataFrame:
        return read_csv(self.explanations, EXPLANATION_COLUMNS, "evaluate")


# --- compare: metrics/comparison.json --------------------------------------------------------------

class PairedTest(BaseModel):
    """Two models on the same images: DeLong's test of their ROC AUCs, McNemar's of their accuracies
    (stages/metrics.py). Differences are first minus second."""

    first: str
    second: str
    images: int
    roc_auc_difference: Optional[float]
    roc_auc_standard_error: Optional[float]
    roc_auc_p_value: Optional[float]                       # None: one class only
    accuracy_difference: float
    only_first_right: int
    only_second_right: int
    accuracy_p_value: float


class Comparison(JsonFile):
    """metrics/comparison.json (git): per split and metric, every model's value and, for each other
    model, "<model>_minus_<reference>"; per split, a paired test for every pair of models,
    "<first>_vs_<second>" (the reference second)."""

    written_by: ClassVar[str] = "compare"
    path: ClassVar[Path] = METRICS_DIR / "comparison.json"

    reference: str
    models: dict[str, str]                                  # name -> description
    val: dict[str, dict[str, Optional[float]]]
    test: dict[str, dict[str, Optional[float]]]
    tests: dict[str, dict[str, PairedTest]] = {}            # split -> "<first>_vs_<second>" -> test

    def paired(self, split: str, first: str, second: str) -> Optional[PairedTest]:
        """The test of `first` against `second` on a split, whichever way round it was stored."""
        return self.tests.get(split, {}).get(f"{first}_vs_{second}") or self.tests.get(split, {}).get(
            f"{second}_vs_{first}")

    def split(self, name: str) -> dict[str, dict[str, Optional[float]]]:
        return getattr(self, name)


# All models' ROC points on one chart per split (DVC template roc_by_model).
ROC_BY_MODEL_COLUMNS = ("model", "fpr", "tpr")


def roc_by_model_file(split: str, root: Path = PLOTS_DIR / "compare") -> Path:
    """plots/compare/roc_<split>.csv (git)."""
    return Path(root) / f"roc_{split}.csv"


def write_roc_by_model(split: str, table: pd.DataFrame, root: Path = PLOTS_DIR / "compare") -> None:
    write_csv(roc_by_model_file(split, root), table, ROC_BY_MODEL_COLUMNS)
