"""The Keras training and scoring every model shares: compile, callbacks, fit on the TFRecords, predict a split."""

from __future__ import annotations

import contextlib
import contextvars
import sys
from pathlib import Path
from typing import Iterator

import keras
import pandas as pd
import tensorflow as tf

from stages.common.config import FitParams
from stages.contracts.tfrecord_io import load_split, run_over_split
from stages.contracts.training import LearningCurves
from stages.modelkit.augmentation import augmented

OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}


# Training steps Keras runs per call into the compiled graph: the same steps in the same order (the
# same weights, measured), without a return to Python after each small batch: the baseline's epoch
# takes less wall time than with one step per call (benchmarks/history.md).
STEPS_PER_EXECUTION = 16


def compile_model(model: keras.Model, optimizer: str, learning_rate: float) -> None:
    """Binary cross-entropy and accuracy, with the optimizer called `optimizer`."""
    # Under a multi-worker strategy Keras 3's loop over several steps fails to trace ("You must feed a
    # value for placeholder tensor"): one step per call there.
    multi_worker = isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)
    model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"], steps_per_execution=1 if multi_worker else STEPS_PER_EXECUTION)


# Where the learning-curve files go while a model trains (None: only at the end): set around a fit by
# curves_during_training, so that no model's fit has to pass it along.
_LIVE_CURVES: contextvars.ContextVar[Path | None] = contextvars.ContextVar("live_curves", default=None)


@contextlib.contextmanager
def curves_during_training(folder: Path | None) -> Iterator[None]:
    """Within the block, every fit rewrites the learning-curve files in `folder` (LearningCurves'
    loss.csv and accuracy.csv) after each epoch, so `dvc plots show` shows a training in progress."""
    token = _LIVE_CURVES.set(folder)
    try:
        yield
    finally:
        _LIVE_CURVES.reset(token)


class HistoryLogger(keras.callbacks.CSVLogger):
    """Keras's CSVLogger (the learning curve, epoch by epoch); inside curves_during_training, also the
    learning-curve files after each epoch, made from the log as the train stage makes the final ones
    (so the last epoch's files are the final files, byte for byte)."""

    def __init__(self, filename: str, append: bool = False):
        super().__init__(filename, append=append)
        self.curves = _LIVE_CURVES.get()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)          # writes and flushes the epoch's row
        if self.curves is not None:
            self.curves.mkdir(parents=True, exist_ok=True)
            LearningCurves(self.curves).write(pd.read_csv(self.filename))


def training_callbacks(params: FitParams, history: Path, append: bool = False) -> list[keras.callbacks.Callback]:
    """The learning curve as CSV always (and the curve files while training, see HistoryLogger); early
    stopping and learning-rate reduction when params ask."""
    callbacks = [HistoryLogger(str(history), append=append)]
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
