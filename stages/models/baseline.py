"""The assignment's baseline CNN (its Figure 1): 544,593 parameters on 100x100x3 input."""

from __future__ import annotations

import keras
from keras import layers

from stages.common.config import FitParams
from stages.modelkit.family import ModelFamily


class Params(FitParams):
    """train.baseline: the architecture is fixed by the assignment; only the training knobs."""


def make_model(input_shape: tuple[int, int, int]) -> keras.Model:
    """Conv(16,3x3) -> MaxPool(2x2) -> Conv(16,3x3) -> MaxPool(2x2) -> Dense(64) -> Dense(1, sigmoid).

    The assignment's text says pooling stride 1, but its Figure 1 (98->49->47->23, 544,593
    parameters) needs stride 2, Keras's default for a 2x2 pool: we follow the figure.
    Rescaling adds no parameters; it lets the saved model take raw 0-255 pixels.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Rescaling(1.0 / 255, name="rescaling"),
            layers.Conv2D(16, 3, activation="relu", name="conv2d"),
            layers.MaxPooling2D(2, name="max_pooling2d"),
            layers.Conv2D(16, 3, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(1, activation="sigmoid", name="dense_1"),
        ],
        name="baseline",
    )


class Family(ModelFamily):
    Params = Params
    title = "baseline CNN (assignment Figure 1)"

    def build(self, input_shape):
        return make_model(input_shape)
