"""Data augmentation in the training input pipeline: one random affine map and one resampling per image.

Not Keras's preprocessing layers inside the model: there, rotation, zoom and translation each resample
the image (three bilinear passes) on the training step's own threads, and made an epoch of the improved
CNN cost more CPU than this (benchmarks/history.md). Here every image gets one random affine map,
composed from the same draws, and one resampling; the batches are augmented by tf.data alongside the
training step, as Keras's guide advises for training on a CPU. The saved model has no augmentation in
it: scoring and predict see the images as they are.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from pydantic import Field

from stages.common.config import ParamsSection


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
