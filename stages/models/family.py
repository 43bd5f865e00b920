"""What every model implements, and the Keras pieces models share: training, scoring, augmentation.

A model is one module, stages/models/<name>.py, named like its params section train.<name>. It
defines `Params` (that section's schema, a FitParams) and `Family` (a ModelFamily): how to build
the network, and where it differs from the default, how it fits and how it is scored. The train and
evaluate stages only ever talk to this interface.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import keras
import pandas as pd
from keras import layers
from pydantic import Field

from stages.config import FEATURES_DIR, TFRECORDS_DIR, FitParams, ParamsSection
from stages.contracts import TrainingInfo
from stages.records import load_split, run_over_split


@dataclass(frozen=True)
class DataRoots:
    """What models learn from: the image TFRecords, and the frozen-base features some models cache."""

    tfrecords: Path = TFRECORDS_DIR
    features: Path = FEATURES_DIR


class ModelFamily:
    """One model of params.yaml's train section: built from its params, fitted, scored, described."""

    Params: ClassVar[type[FitParams]] = FitParams
    title: ClassVar[str] = ""          # what the model is, in a few words (metrics, figure titles)

    def __init__(self, name: str, params: FitParams):
        self.name = name
        self.params = params

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """The untrained model: raw 0-255 RGB pixels in, P(class 1) out."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line saying what this model is; every output of the model carries it."""
        return self.title or self.name

    def details(self) -> dict[str, str | bool | int | float]:
        """What training.json should record about this model beyond the common fields."""
        return {}

    def fit(self, data: DataRoots, input_shape: tuple[int, int, int], history: Path) -> tuple[keras.Model, int]:
        """Build, compile and fit on the image TFRecords; return the model and the epochs run.
        The learning curve goes to `history` (CSV, one row per epoch)."""
        model = self.build(input_shape)
        compile_model(model, self.params.optimizer, self.params.learning_rate)
        run = fit_on_records(model, self.params, data.tfrecords, history)
        return model, len(run.history["loss"])

    @classmethod
    def predict_split(cls, model: keras.Model, training: TrainingInfo, data: DataRoots, split: str,
                      batch_size: int) -> pd.DataFrame:
        """P(class 1) for every image of a split (columns file, label, probability), from the saved
        model and what training.json says about it: the params may have changed since."""
        return predict_records(model, data.tfrecords, split, batch_size)

    def more_compute(self) -> list[str]:
        """What this model would try with more compute, for the report."""
        return []


# --- the shared Keras training and scoring ---------------------------------------------------------

OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}


def compile_model(model: keras.Model, optimizer: str, learning_rate: float) -> None:
    """Binary cross-entropy and accuracy, with the optimizer called `optimizer`."""
    model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])


def training_callbacks(params: FitParams, history: Path, append: bool = False) -> list[keras.callbacks.Callback]:
    """The learning curve as CSV always; early stopping and learning-rate reduction when params ask."""
    callbacks = [keras.callbacks.CSVLogger(str(history), append=append)]
    if params.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True, verbose=1))
    reduce = params.reduce_learning_rate
    if reduce is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=reduce.factor, patience=reduce.patience, min_lr=reduce.min_learning_rate,
            verbose=1))
    return callbacks


def verbosity() -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs."""
    return 1 if sys.stdout.isatty() else 2


def fit_tensors(model: keras.Model, params: FitParams, train, val, history: Path,
                epochs: int | None = None, initial_epoch: int = 0) -> keras.callbacks.History:
    """model.fit with the params' callbacks; `epochs`/`initial_epoch` continue an earlier fit."""
    # shuffle=False: the datasets shuffle themselves (Keras would ignore True, with a warning).
    return model.fit(train, validation_data=val, epochs=epochs or params.epochs, initial_epoch=initial_epoch,
                     shuffle=False,
                     callbacks=training_callbacks(params, history, append=initial_epoch > 0), verbose=verbosity())


def fit_on_records(model: keras.Model, params: FitParams, tfrecords_root: Path, history: Path,
                   epochs: int | None = None, initial_epoch: int = 0) -> keras.callbacks.History:
    """Fit a whole model end to end on the image TFRecords, validating on the val split."""
    train = load_split(tfrecords_root, "train", params.batch_size, shuffle=(params.seed, params.shuffle_buffer),
                       cache=True)
    val = load_split(tfrecords_root, "val", params.batch_size, cache=True)
    return fit_tensors(model, params, train, val, history, epochs, initial_epoch)


def predict_records(model: keras.Model, tfrecords_root: Path, split: str, batch_size: int) -> pd.DataFrame:
    """P(class 1) for every image of a split, with its file name and true label index, in record order."""
    probabilities, labels, files = run_over_split(model.predict_on_batch, tfrecords_root, split, batch_size)
    return pd.DataFrame({"file": files, "label": labels.astype(int), "probability": probabilities.reshape(-1)})


# --- data augmentation: Keras preprocessing layers inside the model, active only in training ---------

class AugmentationParams(ParamsSection):
    """The augmentation: section of a model's params; 0 or false switches a layer off."""

    flip: bool                                              # horizontal
    rotation: float = Field(ge=0, le=0.5)                   # fraction of a full turn
    zoom: float = Field(ge=0, lt=1)
    translation: float = Field(ge=0, lt=1)                  # fraction of height and width
    contrast: float = Field(ge=0, lt=1)
    brightness: float = Field(ge=0, lt=1)

    @property
    def enabled(self) -> bool:
        return any(value for value in self.model_dump().values())


def make_augmentation(params: AugmentationParams, seed: int) -> keras.Sequential:
    """The enabled augmentation layers, in a Sequential (empty when all are off). Inputs are 0-255."""
    steps = []
    if params.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if params.rotation:
        steps.append(layers.RandomRotation(params.rotation, fill_mode="reflect", seed=seed))
    if params.zoom:
        steps.append(layers.RandomZoom(params.zoom, fill_mode="reflect", seed=seed))
    if params.translation:
        steps.append(layers.RandomTranslation(params.translation, params.translation, fill_mode="reflect", seed=seed))
    if params.contrast:
        steps.append(layers.RandomContrast(params.contrast, value_range=(0, 255), seed=seed))
    if params.brightness:
        steps.append(layers.RandomBrightness(params.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(steps, name="augmentation")
