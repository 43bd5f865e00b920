"""What train hands over: models/<name>/<seed>/ (model, training record, summary), plots/learning_curves/<name>/<seed>/
and metrics/train/<name>/<seed>.json."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Optional, Sequence, Union

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from stages.common.atomic_files import atomic_file
from stages.common.config import METRICS_DIR, MODEL_NAME, MODELS_DIR, PLOTS_DIR
from stages.common.errors import UserError
from stages.contracts.jsonfile import JsonFile
from stages.contracts.tables import ModelOutputs, read_csv, run_file

MODEL_FILE = "model.keras"


class ModelDir(ModelOutputs):
    """models/<name>/<seed>/ (DVC cache): model.keras, training.json, summary.txt."""

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
    """plots/learning_curves/<name>/<seed>/ (git): loss.csv and accuracy.csv, per epoch on training and validation."""

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


class TrainedOn(BaseModel):
    """Where a model was trained: another CPU or TensorFlow build rounds differently, and a trained
    model's numbers with it (the docs name it beside them)."""

    cpu: str
    flags: list[str]                    # stages.common.machine.FLAGS_OF_INTEREST it has
    cores: int
    tensorflow: str


class TrainMetrics(JsonFile):
    """metrics/train/<name>/<seed>.json (git): epochs run, loss and accuracy at the epoch with the lowest
    validation loss (the weights early stopping keeps), and the machine it trained on."""

    written_by: ClassVar[str] = "train"

    epochs_run: int
    best_epoch: int                     # 1-based
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    trained_on: Optional[TrainedOn] = None

    @staticmethod
    def path(name: str, seed: int, root: Path = METRICS_DIR / "train") -> Path:
        return run_file(root, name, seed)


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
    """models/<name>/<seed>/training.json: what was trained, how long, its layer table (the assignment's Figure 1
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


class TrainedClasses(JsonFile):
    """What predict reads of a model's training.json: its class names (label index = position), and
    what ran its frozen base (details.engine: keras, or litert; stages/modelkit/engines.py).

    A view of TrainingInfo's file, lenient on purpose: a model copied from elsewhere may come with a
    training.json of an older run, or one written by hand, holding only some fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    written_by: ClassVar[str] = "train"

    classes: Optional[list[Annotated[str, Field(min_length=1)]]] = Field(default=None, min_length=2, max_length=2)
    details: dict[str, str | bool | int | float] = {}

    @property
    def engine(self) -> str:
        return str(self.details.get("engine", "keras"))



def find_model(spec: str, names: Sequence[str] = (), seed: int | None = None) -> Path:
    """The model file for a name (models/<name>/<seed>/model.keras: params.yaml's first seed, or without
    params.yaml the one run there is), a .keras file, or a folder holding one; `names` are params.yaml's
    models."""
    # A name from params.yaml, or (params.yaml aside) a bare name that is no file or folder here.
    if spec in names or (re.fullmatch(MODEL_NAME, spec) and not Path(spec).exists()):
        runs = ([ModelDir.of(spec, seed).model] if seed is not None
                else sorted(MODELS_DIR.glob(f"{spec}/*/{MODEL_FILE}")))
        if len(runs) > 1:
            raise UserError(f"{MODELS_DIR / spec}: {len(runs)} training runs (one per seed) and no params.yaml to say "
                            f"which; give the folder of one, e.g. {runs[0].parent}")
        if not runs or not runs[0].is_file():
            raise UserError(f"{runs[0] if runs else MODELS_DIR / spec}: not found; train it first (dvc repro "
                            f"train@{spec}-{'<seed>' if seed is None else seed}) or give the path of a .keras file")
        return runs[0]
    path = Path(spec)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        given = f"a model name ({', '.join(names)}), " if names else "a model name from params.yaml's train section, "
        raise UserError(f"{path}: not found; give {given}a .keras file or a folder holding {MODEL_FILE}")
    return path
