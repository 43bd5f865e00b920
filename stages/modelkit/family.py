"""What every model implements: the ModelFamily interface, and where models find their data.

A model is one module, stages/models/<name>.py, named like its params section train.<name>. It
defines `Params` (that section's schema, a FitParams) and `Family` (a ModelFamily): how to build
the network, and where it differs from the default, how it fits and how it is scored. The train and
evaluate stages only ever talk to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import keras
import pandas as pd

from stages.common.config import FEATURES_DIR, TFRECORDS_DIR, FitParams
from stages.contracts.training import TrainingInfo
from stages.modelkit.fitting import compile_model, fit_on_records, predict_records


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
