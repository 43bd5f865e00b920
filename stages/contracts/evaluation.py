"""What evaluate hands over: metrics/<name>/<seed>.json (the headline scores, DVC's declared metrics),
metrics/evaluate/<name>/<seed>.json (every metric with its interval, and the calibration), plots/roc/<name>/<seed>/,
plots/confusion/<name>/<seed>/, plots/calibration/<name>/<seed>/ (git) and data/evaluate/<name>/<seed>/ (predictions per
image, figures, heat maps)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional

import pandas as pd
from pydantic import BaseModel

from stages.common.config import EVALUATE_DIR, METRICS_DIR, PLOTS_DIR
from stages.contracts.jsonfile import JsonFile
from stages.contracts.tables import ModelOutputs, read_csv, run_file, write_csv


class Bounds(BaseModel):
    low: float
    high: float

    @classmethod
    def of(cls, pair: Optional[list[float]]) -> Optional["Bounds"]:
        """An interval [low, high] as the metrics files keep it, 6 decimals; None stays None."""
        return None if pair is None else cls(low=round(pair[0], 6), high=round(pair[1], 6))


class GroupMetrics(BaseModel):
    """One group's results on one split (stages/analysis/groups.py): its images per class, and its
    metrics with their bootstrap intervals, or none and `too_small` saying why."""

    n: int
    counts: dict[str, int]                          # images per class
    too_small: Optional[str] = None                 # why no numbers: a class under evaluate.group_min_per_class
    accuracy: Optional[float] = None
    balanced_accuracy: Optional[float] = None
    false_negative_rate: Optional[float] = None     # the positive class's (Male) images called the other
    false_positive_rate: Optional[float] = None     # the negative class's (Female) images called positive
    roc_auc: Optional[float] = None
    interval: dict[str, Optional[Bounds]] = {}


class GroupGap(BaseModel):
    """The largest difference in one metric between two groups: highest minus lowest, and the bootstrap
    interval of those two groups' difference at `level`, widened for picking them among `pairs` pairs of
    groups (below 0 at its low end: the images cannot tell them apart)."""

    gap: float
    highest: str
    lowest: str
    pairs: int                          # pairs of measured groups the two were picked from
    level: Optional[float] = None       # the interval's level: evaluate.bootstrap.level, Bonferroni over the pairs
    interval: Optional[Bounds] = None


# The group of a grouped split's images that groups.csv gives none: shown, left out of the gaps.
NO_GROUP = "(none)"


class SplitGroups(BaseModel):
    """Per group (data/prepared/groups.csv) on one split; images there without a group are the group
    NO_GROUP, shown but left out of the gaps. gaps: per metric, absent with fewer than two groups."""

    min_per_class: int
    groups: dict[str, GroupMetrics]
    gaps: dict[str, GroupGap] = {}


class SplitMetrics(BaseModel):
    """Male (label 1) is the positive class; a value undefined on the data (no positives, say) is None.
    interval: each metric's bootstrap interval (ModelMetrics.bootstrap says which), None where undefined.
    balanced_accuracy and majority_rate are None in files written before evaluate measured them."""

    accuracy: Optional[float]
    balanced_accuracy: Optional[float] = None   # (sensitivity + specificity) / 2: blind to the classes' shares
    sensitivity: Optional[float]
    specificity: Optional[float]
    precision: Optional[float]
    f1: Optional[float]
    roc_auc: Optional[float]
    n: int
    majority_rate: Optional[float] = None       # the larger class's share: what always answering it scores
    interval: dict[str, Optional[Bounds]] = {}
    groups: Optional[SplitGroups] = None        # None: no image of the split has a group


class BootstrapInfo(BaseModel):
    """How the intervals were made: evaluate.bootstrap at the time."""

    level: float
    resamples: int
    seed: int


class SplitCalibration(BaseModel):
    """Whether P(Male) means what it says on one split (stages/analysis/calibration.py): expected
    calibration error and Brier score, each with its bootstrap interval (the same resamples' settings as
    the other metrics); None without images."""

    ece: Optional[float]
    brier: Optional[float]
    interval: dict[str, Optional[Bounds]] = {}


class TemperatureScaling(BaseModel):
    """One temperature fitted on validation (log loss), applied to the cross-dataset test: its ECE and
    Brier then. ROC AUC and the decisions at 0.5 cannot change (T > 0 keeps each logit's sign and order)."""

    temperature: Optional[float]          # None: validation has one class only, nothing to fit
    test: Optional[SplitCalibration]


class ChosenThreshold(BaseModel):
    """A decision threshold chosen on validation, and the test split's metrics at it (beside those at
    evaluate.threshold, in the split's own metrics)."""

    method: Literal["youden"]             # largest sensitivity + specificity - 1 on validation
    threshold: Optional[float]            # None: validation has one class only
    test: dict[str, Optional[float]] = {}  # accuracy, balanced accuracy, sensitivity, specificity, precision, f1


class Calibration(BaseModel):
    """evaluate.calibration's results: per split, and optionally the temperature and the chosen threshold."""

    bins: int
    val: SplitCalibration
    test: SplitCalibration
    temperature: Optional[TemperatureScaling] = None
    threshold: Optional[ChosenThreshold] = None


class ModelMetrics(JsonFile):
    """metrics/evaluate/<name>/<seed>.json (git): the model's description and its metrics per evaluated split."""

    written_by: ClassVar[str] = "evaluate"

    description: str
    bootstrap: Optional[BootstrapInfo] = None     # None: no intervals (evaluate.bootstrap.resamples 0)
    val: SplitMetrics
    test: SplitMetrics
    calibration: Optional[Calibration] = None     # None in files written before evaluate measured it
    evaluated_on: str = ""                        # the CPU (stages/common/machine.py describe_cpu); "" before

    @staticmethod
    def path(name: str, seed: int, root: Path = METRICS_DIR / "evaluate") -> Path:
        return run_file(root, name, seed)

    def split(self, name: str) -> SplitMetrics:
        return getattr(self, name)


class SplitScores(BaseModel):
    """A split's headline scores, short-named for DVC's tables; None where undefined on the data."""

    acc: Optional[float]        # accuracy
    bal_acc: Optional[float] = None   # balanced accuracy: (sens + spec) / 2
    majority: Optional[float] = None  # the larger class's share: the accuracy of always answering it
    auc: Optional[float]        # ROC AUC
    f1: Optional[float]
    sens: Optional[float]       # sensitivity: the share of the positive class (Male) found
    spec: Optional[float]       # specificity: the share of the negative class (Female) found


# Headline scores keep this many decimals: enough to tell models apart, narrow in a terminal.
SCORE_DECIMALS = 4


class Scores(JsonFile):
    """metrics/<name>/<seed>.json (git): what people compare, and all that dvc.yaml declares as metrics:
    `dvc metrics show`, `dvc metrics diff` and `dvc exp show` show these. Intervals, counts and
    settings are in metrics/evaluate/<name>/<seed>.json, undeclared."""

    written_by: ClassVar[str] = "evaluate"

    val: SplitScores
    test: SplitScores
    epochs: int                 # epochs the model trained

    @staticmethod
    def path(name: str, seed: int, root: Path = METRICS_DIR) -> Path:
        return run_file(root, name, seed)

    @classmethod
    def of(cls, metrics: ModelMetrics, epochs: int) -> "Scores":
        """The headline of a model's full metrics, rounded to SCORE_DECIMALS."""
        def short(split: SplitMetrics) -> SplitScores:
            def rounded(value: float | None) -> float | None:
                return None if value is None else round(value, SCORE_DECIMALS)
            return SplitScores(acc=rounded(split.accuracy), bal_acc=rounded(split.balanced_accuracy),
                               majority=rounded(split.majority_rate), auc=rounded(split.roc_auc), f1=rounded(split.f1),
                               sens=rounded(split.sensitivity), spec=rounded(split.specificity))
        return cls(val=short(metrics.val), test=short(metrics.test), epochs=epochs)


# Per image: its prepared file, actual and predicted class names, P(class 1).
PREDICTION_COLUMNS = ("file", "actual", "predicted", "probability")
# One row per test image with a heat map: group is "mistake" or "correct", figure is its PNG's name
# inside the model's data/evaluate folder, method the one that made the map (stages/analysis/heatmaps.py).
EXPLANATION_COLUMNS = ("group", "file", "actual", "predicted", "probability", "method", "figure")
ROC_COLUMNS = ("fpr", "tpr", "threshold")
# One row per non-empty bin of P(Male): its bounds, images, mean predicted P(Male), observed share of Male.
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "count", "predicted", "observed")
CONFUSION_COLUMNS = ("actual", "predicted", "count")


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
    """plots/roc/<name>/<seed>/<split>.csv (git): ROC points, thinned to the corners that shape the curve."""

    parent: ClassVar[Path] = PLOTS_DIR / "roc"
    columns: ClassVar[tuple[str, ...]] = ROC_COLUMNS


class ConfusionCounts(SplitCsvs):
    """plots/confusion/<name>/<seed>/<split>.csv (git): images per (actual, predicted) class pair: four rows,
    whatever the number of images (DVC template confusion_counts)."""

    parent: ClassVar[Path] = PLOTS_DIR / "confusion"
    columns: ClassVar[tuple[str, ...]] = CONFUSION_COLUMNS


class ReliabilityCurves(SplitCsvs):
    """plots/calibration/<name>/<seed>/<split>.csv (git): the reliability diagram's points, a row per bin."""

    parent: ClassVar[Path] = PLOTS_DIR / "calibration"
    columns: ClassVar[tuple[str, ...]] = RELIABILITY_COLUMNS


class EvaluationDir(ModelOutputs):
    """data/evaluate/<name>/<seed>/ (DVC cache): per-image predictions per split (as many rows as images, too
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

    @property
    def reliability_figure(self) -> Path:
        return self.root / "reliability.png"

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
