"""The improved CNN: conv blocks with batch norm, L2 and dropout, global pooling, and augmentation."""

from __future__ import annotations

import keras
from keras import layers, regularizers
from pydantic import Field

from stages.common.config import FitParams, LayerSize
from stages.modelkit.augmentation import AugmentationParams
from stages.modelkit.family import ModelFamily


class Params(FitParams):
    """train.improved."""

    filters: list[LayerSize] = Field(min_length=1)          # one conv block per entry
    first_stride: int = Field(ge=1, le=4)                  # stride of the very first conv
    convs_per_block: int = Field(ge=1, le=3)
    batch_norm: bool
    batch_norm_momentum: float = Field(gt=0, lt=1)         # of the moving mean and variance scoring uses
    dropout: float = Field(ge=0, lt=1)
    global_pooling: bool                                   # else Flatten
    dense_units: int = Field(ge=0)                         # 0: no hidden dense layer
    l2: float = Field(ge=0)
    augmentation: AugmentationParams                       # of the training batches, not in the model


def make_model(input_shape: tuple[int, int, int], params: Params) -> keras.Model:
    """rescale -> [conv (-> BN) -> ReLU]*n -> max pool per block -> flatten/GAP -> dense -> sigmoid.
    (Augmentation is applied to the training batches: family.augmented.)"""
    regularizer = regularizers.l2(params.l2) if params.l2 else None
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    stride = params.first_stride
    for filters in params.filters:
        for _ in range(params.convs_per_block):
            # Batch norm makes a conv bias redundant.
            x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=not params.batch_norm,
                              kernel_regularizer=regularizer)(x)
            stride = 1
            if params.batch_norm:
                x = layers.BatchNormalization(momentum=params.batch_norm_momentum)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x) if params.global_pooling else layers.Flatten()(x)
    if params.dropout:
        x = layers.Dropout(params.dropout)(x)
    if params.dense_units:
        x = layers.Dense(params.dense_units, activation="relu", kernel_regularizer=regularizer)(x)
        if params.dropout:
            x = layers.Dropout(params.dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="improved")


class Family(ModelFamily):
    Params = Params
    title = "improved CNN"

    def build(self, input_shape):
        return make_model(input_shape, self.params)

    def details(self) -> dict[str, str | bool | int | float]:
        # The layer table no longer shows it: augmentation is part of the input pipeline.
        return {"augmentation": self.params.augmentation.describe() or "off"}

    def more_compute(self) -> list[str]:
        return [f"Deeper or wider CNNs (train.{self.name}.filters {self.params.filters}; first_stride "
                f"{self.params.first_stride}: stride 1 costs about 4x)."]
