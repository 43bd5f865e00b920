"""The one typed, validated loader for params.yaml, and the pipeline's fixed paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from stages.common.errors import UserError

PARAMS_FILE = Path("params.yaml")

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
TFRECORDS_DIR = Path("data/tfrecords")
FEATURES_DIR = Path("data/features")
INPUTS_DIR = Path("data/inputs")       # per model: which folder it learns from, and its digest
MODELS_DIR = Path("models")
EVALUATE_DIR = Path("data/evaluate")   # per model: predictions per image and figures (DVC cache)
METRICS_DIR = Path("metrics")          # small JSON, in git: `dvc metrics show/diff` on any clone
PLOTS_DIR = Path("plots")              # small plot data, in git: `dvc plots show/diff` on any clone
REPORTS_DIR = Path("reports")

SPLITS = ("train", "val", "test")
EVALUATED_SPLITS = ("val", "test")     # the splits a trained model is scored on: validation and the cross-dataset test

YAML_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
LayerSize = Annotated[int, Field(gt=0)]   # a layer's size: a count of filters or units


class ParamsSection(BaseModel):
    # Unknown keys are typos (`dvc exp run -S train.baseline.epoch=3`): refuse them. Strict types: a
    # number is a number (`epochs: true` is not 1, `epochs: "3"` not 3); an int may stand for a float.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_float(cls, value: object, info: ValidationInfo) -> object:
        # PyYAML reads 1e-4 (no dot) as a string; YAML 1.2, DVC's -S and people mean a number.
        field = cls.model_fields.get(info.field_name)
        if isinstance(value, str) and field is not None and field.annotation in (float, Optional[float]) \
                and YAML_FLOAT.match(value):
            return float(value)
        return value


class DatasetSource(ParamsSection):
    slug: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    version: Optional[int] = Field(default=None, ge=1)


class SampleParams(ParamsSection):
    seed: int
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    unlabeled: int = Field(ge=0)
    test_images: int = Field(ge=2)
    test_male_fraction: float = Field(gt=0, lt=1)
    test_sizes: list[int] = Field(min_length=2, max_length=2)   # min and max side of the test photos, pixels

    @model_validator(mode="after")
    def _sizes_in_order(self) -> "SampleParams":
        low, high = self.test_sizes
        if not 32 <= low <= high:
            raise ValueError(f"test_sizes must be [min, max] with 32 <= min <= max, got [{low}, {high}]")
        return self


class DownloadParams(ParamsSection):
    source: Literal["sample", "kaggle", "own"]
    datasets: dict[str, DatasetSource]
    sample: SampleParams
    # source own: your own labelled faces, a folder (relative to the repository, or absolute) holding a
    # folder per class, train/val/test folders of them, or a labels.csv (stages/images/own_data.py).
    own: str = Field(min_length=1)

    @model_validator(mode="after")
    def _needs_both_datasets(self) -> "DownloadParams":
        missing = {"trainval", "test"} - set(self.datasets)
        if missing:
            raise ValueError(f"datasets needs entries {sorted(missing)}")
        return self


class SplitSource(ParamsSection):
    dataset: str
    folder: Optional[str] = None
    classes: dict[str, str]


class OwnSplitParams(ParamsSection):
    """The shares of val and test drawn, per class, from images whose split your data does not say."""

    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)
    seed: int

    @model_validator(mode="after")
    def _leaves_some_for_training(self) -> "OwnSplitParams":
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must leave some images for train, got {self.val} + {self.test}")
        return self


class OwnDataParams(ParamsSection):
    """How prepare reads download.source: own."""

    classes: dict[str, str]            # your label (any case) -> one of prepare.classes
    split: OwnSplitParams


class PrepareParams(ParamsSection):
    image_size: int = Field(ge=32, le=1024)
    # Most pixels (width x height, from the header) an image may declare; larger ones are skipped
    # before decoding (stages/images/reading.py, DEFAULT_MAX_PIXELS). strict: 2.5e7 or "25000000" is a typo.
    max_pixels: int = Field(ge=1, strict=True)
    # An image found both in train and in val or test (same pixels, or within near_duplicate_distance):
    # drop the training copy.
    drop_duplicates: bool
    # Most bits two images' perceptual hashes (256 bits, stages/images/near_duplicates.py) may differ in
    # to count as near duplicates; 0: identical pixels only. Past 32 bits distinct faces match too, and
    # the search slows towards comparing every pair.
    near_duplicate_distance: int = Field(ge=0, le=32)
    classes: list[str] = Field(min_length=2, max_length=2)
    splits: dict[Literal["train", "val", "test"], SplitSource]
    own: OwnDataParams

    @model_validator(mode="after")
    def _splits_are_consistent(self) -> "PrepareParams":
        missing = set(SPLITS) - set(self.splits)
        if missing:
            raise ValueError(f"splits needs entries {sorted(missing)}")
        for name, split in self.splits.items():
            unknown = set(split.classes.values()) - set(self.classes)
            if unknown:
                raise ValueError(f"splits.{name}.classes maps to {sorted(unknown)}, which are not in prepare.classes "
                                 f"{self.classes}")
        return self


class TfrecordsParams(ParamsSection):
    shard_size: int = Field(ge=1)
    seed: int


class ReduceLearningRate(ParamsSection):                  # Keras's ReduceLROnPlateau on val_loss
    patience: int = Field(ge=1)
    factor: float = Field(gt=0, lt=1)
    min_learning_rate: float = Field(ge=0)


class FitParams(ParamsSection):    # what every model's train.<name> section holds; a model's Params adds its own
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    optimizer: Literal["adam", "sgd", "rmsprop"]
    seed: int                                               # from params.yaml's seeds, one per training run
    shuffle_buffer: int = Field(ge=1)                       # training examples mixed per draw, every epoch
    early_stopping_patience: int = Field(ge=0)              # epochs without a lower val_loss; 0: off
    reduce_learning_rate: Optional[ReduceLearningRate]      # null: off


# A model's name is its module's name (stages/models/<name>.py), so it must be a Python identifier.
MODEL_NAME = r"^[a-z][a-z0-9_]*$"


class FeaturesParams(ParamsSection):
    batch_size: int = Field(ge=1)
    shard_size: int = Field(ge=1)


class DistributeParams(ParamsSection):
    strategy: Literal["auto", "default", "mirrored", "multi_worker"]   # stages/common/distribute.py


class BootstrapParams(ParamsSection):
    """The interval around every metric: a stratified bootstrap over the images (stages/analysis/statistics.py)."""

    resamples: int = Field(ge=0)                           # 0: no intervals
    level: float = Field(gt=0, lt=1)                       # 0.95: the 2.5th to 97.5th percentile
    seed: int


class ExplainParams(ParamsSection):
    """The test images evaluate shows heat maps for (stages/analysis/heatmaps.py)."""

    images: int = Field(ge=0, le=50)                       # most confident mistakes, and correct answers per class
    method: Literal["auto", "gradcam", "occlusion"]        # auto: Grad-CAM where it applies, else occlusion


class CalibrationParams(ParamsSection):
    """Whether the probabilities mean what they say (stages/analysis/calibration.py)."""

    bins: int = Field(ge=2, le=100)                        # equal-width bins of P(positive): diagram and ECE
    temperature: bool                                      # fit T on validation, report the test split with it
    youden: bool                                           # choose a threshold on validation, report test at it


class EvaluateParams(ParamsSection):
    threshold: float = Field(gt=0, lt=1)
    batch_size: int = Field(ge=1)
    roc_points: int = Field(ge=2)                          # most ROC points kept per split (plot data in git)
    bootstrap: BootstrapParams
    explain: ExplainParams
    calibration: CalibrationParams
    group_min_per_class: int = Field(ge=1)                 # a group with fewer of a class: its count, no numbers


class CompareParams(ParamsSection):
    reference: str                                          # the model every other is compared with


class PredictParams(ParamsSection):
    """python -m stages.predict's defaults (not a DVC stage)."""

    detect_faces: bool                                      # classify each face found, not the whole image
    min_face_confidence: float = Field(gt=0, lt=1)          # MTCNN confidence a face needs
    face_crop: float = Field(ge=1, le=4)                    # crop side / detector box's longer side


class ServeParams(ParamsSection):     # python -m stages.serve's defaults (the page; not a DVC stage)
    host: str = Field(min_length=1)                         # the address it listens on; 127.0.0.1: this computer only
    port: int = Field(ge=0, le=65535)                       # 0: any free port (the page's address is printed)
    max_upload_mb: float = Field(gt=0, le=1024)             # a bigger upload is refused before it is decoded
    max_requests: int = Field(ge=1, le=64)                  # photos in the server at once; more are told to retry


class ExportParams(ParamsSection):    # the export stage (exports/<model>/)
    quantized_auc_tolerance: float = Field(ge=0, le=1)      # keep the int8 LiteRT file while its val AUC is this close
    latency_images: int = Field(ge=1)                       # images timed one at a time, per format
    checked_images: int = Field(ge=1)                       # validation images each format is checked on


class Params(ParamsSection):
    download: DownloadParams
    prepare: PrepareParams
    tfrecords: TfrecordsParams
    features: FeaturesParams
    # One section per model, checked against its module's Params when a stage asks for the model
    # (stages.modelkit.family): the loader stays free of Keras.
    train: dict[Annotated[str, StringConstraints(pattern=MODEL_NAME)], dict[str, Any]] = Field(min_length=1)
    # The training seeds: every model trains and is evaluated once per seed (train@<model>-<seed>), and
    # compare judges the models over all of them. The first is the one predict and the figures use.
    seeds: list[int] = Field(min_length=1)
    distribute: DistributeParams
    evaluate: EvaluateParams
    compare: CompareParams
    predict: PredictParams
    serve: ServeParams
    export: ExportParams
    _source: str = PrivateAttr(default=str(PARAMS_FILE))    # the file it came from, for error messages

    @model_validator(mode="after")
    def _splits_name_known_datasets(self) -> "Params":
        for name, split in self.prepare.splits.items():
            if split.dataset not in self.download.datasets:
                raise ValueError(
                    f"prepare.splits.{name}.dataset is '{split.dataset}', "
                    f"not one of download.datasets {sorted(self.download.datasets)}"
                )
        unknown = set(self.prepare.own.classes.values()) - set(self.prepare.classes)
        if self.download.source == "own" and unknown:    # checked where used: renaming classes needs no own data
            raise ValueError(f"prepare.own.classes maps to {sorted(unknown)}, which are not in prepare.classes "
                             f"{self.prepare.classes}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists a seed twice: {self.seeds}; each seed trains every model once")
        if self.compare.reference not in self.train:
            raise ValueError(f"compare.reference is '{self.compare.reference}', not one of the models in "
                             f"train {sorted(self.train)}")
        return self

    @property
    def source(self) -> str:
        return self._source

    @property
    def model_names(self) -> list[str]:
        """The models, in params.yaml's order: train.<name>, stages/models/<name>.py, models/<name>/."""
        return list(self.train)


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


Schema = TypeVar("Schema", bound=BaseModel)


def validate_section(schema: type[Schema], raw: object, where: str = "", source: str = str(PARAMS_FILE)) -> Schema:
    """Validate one mapping against a schema; any problem becomes one UserError naming the key
    (`where` is the mapping's own key, e.g. train.improved)."""
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        first = dict(error.errors()[0])
        first["loc"] = (*(part for part in where.split(".") if part), *first["loc"])
        more = len(error.errors()) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise UserError(f"{source}: {_describe(first)}{extra}; fix it in {source}",
                        key=".".join(str(part) for part in first["loc"])) from None


def parse_params(raw: dict, source: str = str(PARAMS_FILE)) -> Params:
    """Validate a params mapping; any problem becomes one UserError naming the key."""
    params = validate_section(Params, raw, source=source)
    params._source = source
    return params


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
