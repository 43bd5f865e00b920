"""A trained model, ready to predict: predict's settings from params.yaml (read once), the model's class
names and the engine its frozen base ran on (training.json beside it), and the model loaded on that
engine. Used by the predict command and the page (stages/serve.py), so both score as evaluate scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stages.common.config import PARAMS_FILE, PredictParams, load_params
from stages.common.errors import UserError
from stages.contracts.exports import ExportInfo
from stages.contracts.training import ModelDir, TrainedClasses, find_model
from stages.images.reading import DEFAULT_MAX_PIXELS
from stages.modelkit.exported import is_exported
from stages.modelkit.prediction import FaceOptions, model_image_size

# What predict uses where params.yaml cannot be read (a model file used outside the project); the
# threshold and the class names have no such default: a guess would mislabel images.
WITHOUT_PARAMS = PredictParams(detect_faces=False, min_face_confidence=0.9, face_crop=1.8)
EXPLAIN_WITHOUT_PARAMS = "auto"


@dataclass(frozen=True)
class Settings:
    """What predict takes from params.yaml, read once. Without a usable params.yaml: the defaults
    above, no model names, classes or threshold, and `problem` saying why (for the errors that need one)."""

    model_names: tuple[str, ...]          # train.<name>: names predict resolves to models/<name>/<seed>/
    classes: tuple[str, ...] | None       # prepare.classes, for a model without a training.json
    threshold: float | None               # evaluate.threshold: label images as evaluate scored them
    max_pixels: int                       # prepare.max_pixels: refuse what prepare skips
    faces: FaceOptions                    # predict.min_face_confidence, predict.face_crop
    detect_faces: bool                    # predict.detect_faces
    explain_method: str                   # evaluate.explain.method
    problem: str | None = None
    problem_key: str | None = None        # the params.yaml key `problem` names, if one
    seed: int | None = None               # seeds[0]: the run a model name means


def read_settings(path: Path = PARAMS_FILE) -> Settings:
    """predict's settings from params.yaml at `path`, or the defaults when it cannot be read."""
    try:
        params = load_params(path)
    except UserError as error:
        return Settings(model_names=(), classes=None, threshold=None, max_pixels=DEFAULT_MAX_PIXELS,
                        faces=FaceOptions(WITHOUT_PARAMS.min_face_confidence, WITHOUT_PARAMS.face_crop),
                        detect_faces=WITHOUT_PARAMS.detect_faces, explain_method=EXPLAIN_WITHOUT_PARAMS,
                        problem=str(error), problem_key=error.key)
    section = params.predict
    return Settings(model_names=tuple(params.model_names), classes=tuple(params.prepare.classes), seed=params.seeds[0],
                    threshold=params.evaluate.threshold, max_pixels=params.prepare.max_pixels,
                    faces=FaceOptions(section.min_face_confidence, section.face_crop),
                    detect_faces=section.detect_faces, explain_method=params.evaluate.explain.method)


def read_engine(model_path: Path) -> str:
    """What ran the model's frozen base when its features were cached (training.json beside it): keras
    or litert. predict runs it the same way, so that its probabilities are the ones evaluate scored."""
    training = ModelDir(model_path.parent).training
    return TrainedClasses.read(training).engine if training.is_file() else "keras"


def find_trained(spec: str, names: Sequence[str], seed: int | None) -> Path:
    """The model a command line names: an exported file or SavedModel folder as given (the export stage's),
    else a model name, .keras file or folder holding one (contracts.training.find_model)."""
    if is_exported(Path(spec)):
        return Path(spec)
    return find_model(spec, names, seed)


def read_classes(model_path: Path, settings: Settings) -> list[str]:
    """The class names the model was trained on: training.json beside it (its contract,
    contracts.training.TrainedClasses), else params.yaml's prepare.classes; for an export, its export.json."""
    if is_exported(model_path):
        return list(ExportInfo.read(ExportInfo.beside(model_path)).classes)
    training = ModelDir(model_path.parent).training
    if training.is_file():
        classes = TrainedClasses.read(training).classes
        if classes is not None:
            return list(classes)
        missing = f"{training} has no \"classes\""
    else:
        missing = f"{training} is missing"
    # Guessing the names would silently swap labels for a model trained with other classes.
    if settings.classes is None:
        raise UserError(f"cannot tell the class names: {missing}, and {PARAMS_FILE} gave none ({settings.problem})")
    return list(settings.classes)


@dataclass
class TrainedModel:
    """A model loaded once: the Keras model (heat maps come from it), `runner` (its predict_on_batch runs
    the frozen base on the engine recorded at training), its class names and image size."""

    name: str
    path: Path
    classes: list[str]
    model: object
    runner: object
    size: int


def load_trained(path: Path, settings: Settings, threads: int, name: str | None = None) -> TrainedModel:
    """The model at `path` with its classes (read_classes) on its engine (read_engine), `threads` for it. An
    export (model None: no heat maps) runs as exported."""
    from stages.modelkit.engines import on_engine
    from stages.modelkit.registry import load_model

    classes = read_classes(path, settings)
    if is_exported(path):
        from stages.modelkit.exported import ExportedModel

        exported = ExportedModel(path, threads)
        return TrainedModel(name or path.name, path, classes, None, exported, model_image_size(exported))
    model = load_model(path)
    size = model_image_size(model)
    return TrainedModel(name or path.parent.parent.name, path, classes, model,
                        on_engine(model, read_engine(path), threads), size)
