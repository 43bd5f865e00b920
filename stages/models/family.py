"""What every model implements, and the pieces models share: training, scoring, augmentation.

A model is one module, stages/models/<name>.py, named like its params section train.<name>. It
defines `Params` (that section's schema, a FitParams) and `Family` (a ModelFamily): how to build
the network, and where it differs from the default, how it fits and how it is scored. The train and
evaluate stages only ever talk to this interface.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import keras
import pandas as pd
import tensorflow as tf
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


# Training steps Keras runs per call into the compiled graph: the same steps in the same order (the
# same weights, measured), without a return to Python after each small batch. The baseline's epoch at
# 11,136 images took about 0.6x the wall time of one step per call (README, Benchmark).
STEPS_PER_EXECUTION = 16


def compile_model(model: keras.Model, optimizer: str, learning_rate: float) -> None:
    """Binary cross-entropy and accuracy, with the optimizer called `optimizer`."""
    # Under a multi-worker strategy Keras 3's loop over several steps fails to trace ("You must feed a
    # value for placeholder tensor"): one step per call there.
    multi_worker = isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)
    model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"], steps_per_execution=1 if multi_worker else STEPS_PER_EXECUTION)


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
    """Fit a whole model end to end on the image TFRecords, validating on the val split. The training
    batches are augmented when the params have an `augmentation` section with something on."""
    train = load_split(tfrecords_root, "train", params.batch_size, shuffle=(params.seed, params.shuffle_buffer),
                       cache=True)
    augmentation = getattr(params, "augmentation", None)
    if augmentation is not None and augmentation.enabled:
        train = augmented(train, augmentation, params.seed)
    val = load_split(tfrecords_root, "val", params.batch_size, cache=True)
    return fit_tensors(model, params, train, val, history, epochs, initial_epoch)


def predict_records(model: keras.Model, tfrecords_root: Path, split: str, batch_size: int) -> pd.DataFrame:
    """P(class 1) for every image of a split, with its file name and true label index, in record order."""
    probabilities, labels, files = run_over_split(model.predict_on_batch, tfrecords_root, split, batch_size)
    return pd.DataFrame({"file": files, "label": labels.astype(int), "probability": probabilities.reshape(-1)})


# --- data augmentation: in the training input pipeline, one resampling per image ------------------
#
# Not Keras's preprocessing layers inside the model: there, rotation, zoom and translation each
# resample the image (three bilinear passes) on the training step's own threads, and made an epoch of
# the improved CNN cost 1.6x the CPU of this (benchmarks, README). Here every image gets one random
# affine map, composed from the same draws, and one resampling; the batches are augmented by tf.data
# alongside the training step, as Keras's guide advises for training on a CPU. The saved model has
# no augmentation in it: scoring and predict see the images as they are.

class AugmentationParams(ParamsSection):
    """The augmentation: section of a model's params; 0 or false switches a transform off. The ranges
    are Keras's RandomFlip/RandomRotation/RandomZoom/RandomTranslation/RandomContrast/RandomBrightness."""

    flip: bool                                              # horizontal, half the images
    rotation: float = Field(ge=0, le=0.5)                   # up to +- this fraction of a full turn
    zoom: float = Field(ge=0, lt=1)                         # scale 1 +- zoom
    translation: float = Field(ge=0, lt=1)                  # shift up to +- this fraction of height and width
    contrast: float = Field(ge=0, lt=1)                     # (pixel - image mean) x (1 +- contrast) + mean
    brightness: float = Field(ge=0, lt=1)                   # + up to +- this fraction of 255

    @property
    def enabled(self) -> bool:
        return any(value for value in self.model_dump().values())

    def describe(self) -> str:
        """What is on, in words: "flip, rotation 0.02, zoom 0.1" (empty when all are off)."""
        return ", ".join(key if value is True else f"{key} {value:g}" for key, value in self.model_dump().items()
                         if value)


def augment_images(images: tf.Tensor, seed: tf.Tensor, params: AugmentationParams) -> tf.Tensor:
    """A batch of float 0-255 RGB images [n, h, w, 3], each under its own random affine map (flip,
    rotation, zoom, translation about the centre; reflected at the borders) in one bilinear
    resampling, then its own contrast and brightness, clipped to 0-255. Every draw comes from `seed`
    (int64 [2]): the same seed, the same batch."""
    shape = tf.shape(images)
    count, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    # Seven uniform draws in [-1, 1) per image, one per transform.
    draws = tf.random.stateless_uniform([count, 7], seed=seed, minval=-1.0, maxval=1.0)
    mirror = tf.where(draws[:, 0] < 0, -1.0, 1.0) if params.flip else tf.ones([count])
    angle = draws[:, 1] * params.rotation * 2 * math.pi
    scale = 1 + draws[:, 2] * params.zoom
    shift_x, shift_y = draws[:, 3] * params.translation * width, draws[:, 4] * params.translation * height
    # The map from an output pixel to where it samples the input: centre, mirror, rotate and scale,
    # back to the centre, shift. Keras's transform layout: [a0, a1, a2, b0, b1, b2, 0, 0] with
    # x_in = a0 x + a1 y + a2 and y_in = b0 x + b1 y + b2.
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    a2 = centre_x - a0 * centre_x - a1 * centre_y - shift_x
    b2 = centre_y - b0 * centre_x - b1 * centre_y - shift_y
    zero = tf.zeros_like(a0)
    transform = tf.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
    images = keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")
    contrast = (1 + draws[:, 5] * params.contrast)[:, None, None, None]
    brightness = (draws[:, 6] * params.brightness * 255)[:, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0, 255)


def augmented(batches: tf.data.Dataset, params: AugmentationParams, seed: int) -> tf.data.Dataset:
    """(images, labels) batches augmented as they stream. Each batch takes its seed from a stream that
    is the same in every run with this seed and new in every epoch; batches are augmented in parallel
    and delivered in order."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (tf.data.Dataset.zip(batches, seeds)
            .map(lambda batch, pair: (augment_images(batch[0], pair, params), batch[1]),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))
