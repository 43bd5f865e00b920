"""Data augmentation as Keras preprocessing layers: inside the model, active only in training."""

from __future__ import annotations

import keras
from keras import layers
from pydantic import Field

from stages.config import ParamsSection


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
