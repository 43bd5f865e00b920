"""The one typed, validated loader for params.yaml, and the pipeline's fixed paths."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stages.errors import UserError

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
TFRECORDS_DIR = Path("data/tfrecords")
FEATURES_DIR = Path("data/features")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")

SPLITS = ("train", "val", "test")


class _Section(BaseModel):
    # Unknown keys are typos (`dvc exp run -S train.baseline.epoch=3`): refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSource(_Section):
    slug: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    version: Optional[int] = Field(default=None, ge=1)


class SampleParams(_Section):
    seed: int
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    unlabeled: int = Field(ge=0)
    test_images: int = Field(ge=2)
    test_male_fraction: float = Field(gt=0, lt=1)


class DownloadParams(_Section):
    source: Literal["sample", "kaggle"]
    datasets: dict[str, DatasetSource]
    sample: SampleParams

    @model_validator(mode="after")
    def _needs_both_datasets(self) -> "DownloadParams":
        missing = {"trainval", "test"} - set(self.datasets)
        if missing:
            raise ValueError(f"datasets needs entries {sorted(missing)}")
        return self


class SplitSource(_Section):
    dataset: str
    folder: Optional[str] = None
    classes: dict[str, str]


class PrepareParams(_Section):
    image_size: int = Field(ge=32, le=1024)
    classes: list[str] = Field(min_length=2, max_length=2)
    splits: dict[Literal["train", "val", "test"], SplitSource]

    @model_validator(mode="after")
    def _splits_are_consistent(self) -> "PrepareParams":
        missing = set(SPLITS) - set(self.splits)
        if missing:
            raise ValueError(f"splits needs entries {sorted(missing)}")
        for name, split in self.splits.items():
            unknown = set(split.classes.values()) - set(self.classes)
            if unknown:
                raise ValueError(
                    f"splits.{name}.classes maps to {sorted(unknown)}, "
                    f"which are not in prepare.classes {self.classes}"
                )
        return self


class TfrecordsParams(_Section):
    shard_size: int = Field(ge=1)
    seed: int


class FitParams(_Section):
    """What every model's training shares."""

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    optimizer: Literal["adam", "sgd", "rmsprop"]
    seed: int


class BaselineParams(FitParams):
    pass


class AugmentationParams(_Section):
    """Keras preprocessing layers, active only while training; 0 or false switches one off."""

    flip: bool = False
    rotation: float = Field(default=0.0, ge=0, le=0.5)      # fraction of a full turn
    zoom: float = Field(default=0.0, ge=0, lt=1)
    translation: float = Field(default=0.0, ge=0, lt=1)    # fraction of height and width
    contrast: float = Field(default=0.0, ge=0, lt=1)
    brightness: float = Field(default=0.0, ge=0, lt=1)

    @property
    def enabled(self) -> bool:
        return any(value for value in self.model_dump().values())


class ImprovedParams(FitParams):
    filters: list[int] = Field(min_length=1)                # one conv block per entry
    first_stride: int = Field(ge=1, le=4)                  # stride of the very first conv
    convs_per_block: int = Field(ge=1, le=3)
    batch_norm: bool
    dropout: float = Field(ge=0, lt=1)
    global_pooling: bool                                   # else Flatten
    dense_units: int = Field(ge=0)                         # 0: no hidden dense layer
    l2: float = Field(ge=0)
    early_stopping_patience: int = Field(ge=0)             # 0: off
    reduce_lr_patience: int = Field(ge=0)                  # 0: off
    augmentation: AugmentationParams


class FineTuneParams(_Section):
    enabled: bool
    epochs: int = Field(ge=1)
    learning_rate: float = Field(gt=0)


class TransferParams(FitParams):
    weights: str = Field(min_length=1)                     # hed | imagenet | none | a file path
    feature_layer: str = Field(min_length=1)               # the VGG16 layer whose output is the feature
    head_units: list[int]
    dropout: float = Field(ge=0, lt=1)
    early_stopping_patience: int = Field(ge=0)
    augmentation: AugmentationParams
    fine_tune: FineTuneParams


class TrainParams(_Section):
    baseline: BaselineParams
    improved: ImprovedParams
    transfer: TransferParams


# The models, as TrainParams declares them: train.<name>, models/<name>/, metrics/<name>.json.
MODEL_NAMES = list(TrainParams.model_fields)


class EvaluateParams(_Section):
    threshold: float = Field(gt=0, lt=1)
    batch_size: int = Field(ge=1)


class ReportParams(_Section):
    mistakes_per_model: int = Field(ge=0, le=50)            # gallery of the most confident wrong test images


class Params(_Section):
    download: DownloadParams
    prepare: PrepareParams
    tfrecords: TfrecordsParams
    train: TrainParams
    evaluate: EvaluateParams
    report: ReportParams

    @model_validator(mode="after")
    def _splits_name_known_datasets(self) -> "Params":
        for name, split in self.prepare.splits.items():
            if split.dataset not in self.download.datasets:
                raise ValueError(
                    f"prepare.splits.{name}.dataset is '{split.dataset}', "
                    f"not one of download.datasets {sorted(self.download.datasets)}"
                )
        return self

    @property
    def model_names(self) -> list[str]:
        return list(MODEL_NAMES)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (typo?)"
    if error["type"] == "missing":
        return f"{where}: missing"
    value = error.get("input")
    if isinstance(value, (dict, list)):  # a whole section: naming the key says enough
        return f"{where}: {message}" if where else message
    return f"{where}: {message} (got {value!r})" if where else message


def parse_params(raw: dict, source: str = str(PARAMS_FILE)) -> Params:
    """Validate a params mapping; any problem becomes one UserError naming the key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        more = len(error.errors()) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{source}: {_describe(first)}{extra}; fix it in {source}") from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(raw, str(path))
