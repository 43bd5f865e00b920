"""VGG16 transfer learning: the frozen VGG16 base (stages/modelkit/vgg16.py) and a dense head.

The frozen base's outputs are computed once by the features stage, so the head trains and is scored
on those cached features; augmentation or fine-tuning bring the images back: the head then learns
through the base, in Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import keras
import numpy as np
import pandas as pd
from keras import layers
from pydantic import Field

from stages.common.config import FitParams, LayerSize, ParamsSection
from stages.contracts.manifests import FeaturesManifest
from stages.contracts.tfrecord_io import collect, load_features, load_split, map_batches
from stages.contracts.training import TrainingInfo
from stages.modelkit.augmentation import AugmentationParams
from stages.modelkit.engine_choice import keras_precision
from stages.modelkit.family import DataRoots, ModelFamily
from stages.modelkit.fitting import compile_model, fit_on_records, fit_tensors
from stages.modelkit.vgg16 import VGGPreprocess, describe_weights, make_base, unfreeze_last_block


class FineTuneParams(ParamsSection):
    enabled: bool
    epochs: int = Field(ge=1)
    learning_rate: float = Field(gt=0)


class Params(FitParams):
    """train.transfer."""

    weights: str = Field(min_length=1)                     # hed | imagenet | none | a file path
    feature_layer: str = Field(min_length=1)               # the VGG16 layer whose output is the feature
    precision: Literal["auto", "float32", "bfloat16", "float16"]   # the frozen base's compute precision
    engine: Literal["auto", "keras", "litert"] = "auto"           # what runs the frozen base (features, predict)
    head_units: list[LayerSize]                            # empty: the feature maps straight to the sigmoid
    dropout: float = Field(ge=0, lt=1)
    augmentation: AugmentationParams
    fine_tune: FineTuneParams


def feature_statistics(batches) -> tuple[float, float]:
    """The mean and variance of every value in a stream of feature batches (float64 sums)."""
    total = squares = count = 0.0
    for features in batches:
        values = np.asarray(features, dtype=np.float64)
        total, squares, count = total + values.sum(), squares + np.square(values).sum(), count + values.size
    mean = total / max(count, 1)
    return mean, max(squares / max(count, 1) - mean * mean, 1e-12)


def make_head(feature_shape: tuple[int, ...], params: Params, scale: tuple[float, float] = (0.0, 1.0)) -> keras.Model:
    """Flatten -> Normalization -> [Dense(units, ReLU) -> Dropout]* -> Dense(1, sigmoid), on the base's
    feature maps. `scale`: the training features' mean and variance, one number each (not per feature:
    that amplified features that differ between the datasets and cost 0.06 test AUC on the sample).
    VGG16's raw outputs reach ~100: unscaled, the first Adam steps blew the loss up to 15-40 and now
    and then left a run stuck (val AUC 0.83 instead of 0.90 on one seed of the sample)."""
    inputs = keras.Input(shape=feature_shape)
    x = layers.Flatten()(inputs)
    x = layers.Normalization(axis=None, mean=scale[0], variance=scale[1], name="feature_scale")(x)
    for units in params.head_units:
        x = layers.Dense(units, activation="relu")(x)
        if params.dropout:
            x = layers.Dropout(params.dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="head")


def make_model(input_shape: tuple[int, int, int], params: Params, base: keras.Model | None = None,
               head: keras.Model | None = None, precision: str = "float32") -> keras.Model:
    """Raw 0-255 RGB -> VGG preprocessing -> frozen VGG16 (computing in `precision` unless given) -> head."""
    base = base or make_base(input_shape, params.weights, params.feature_layer, precision)
    head = head or make_head(tuple(base.output.shape[1:]), params)
    inputs = keras.Input(shape=input_shape)
    x = VGGPreprocess(name="vgg16_preprocess")(inputs)
    # training=False keeps the frozen base in inference mode, also when fine-tuning later.
    x = base(x, training=False)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="transfer")


class Family(ModelFamily):
    Params = Params

    # The base's (precision, engine) once fit knows them: the cached features' when the head learns from them.
    base_run: tuple[str, str] | None = None

    def resolved(self) -> tuple[str, str]:
        """The frozen base's (precision, engine): as the features stage or fit ran it (base_run), else
        how the head would learn through it in Keras."""
        return self.base_run or (keras_precision(self.params.precision), "keras")

    def build(self, input_shape):
        return make_model(input_shape, self.params, precision=self.resolved()[0])

    def describe(self) -> str:
        return describe_weights(self.params.weights, self.params.feature_layer, *self.resolved())

    def details(self) -> dict[str, str | bool | int | float]:
        # evaluate reads these to decide whether the cached features are this model's base outputs, and
        # predict which engine runs the base (the one the features stage ran).
        precision, engine = self.resolved()
        return {"weights": self.params.weights, "feature_layer": self.params.feature_layer,
                "precision": precision, "engine": engine, "fine_tuned": self.params.fine_tune.enabled}

    def fit(self, data: DataRoots, input_shape, history):
        """The head on the cached features (or end to end on images when augmenting: augmented images
        change every epoch, so their features cannot be cached); then optionally fine-tune the base's
        last block with a low learning rate, the learning curve continuing in `history`."""
        params = self.params
        if params.augmentation.enabled:
            # Trained through Keras on every image: LiteRT has no gradients.
            self.base_run = (keras_precision(params.precision), "keras")
        else:
            features = FeaturesManifest.read_from(data.features)
            self.base_run = (features.precision, features.engine)
        # The saved model's base computes in that precision in Keras (LiteRT's float32 equals Keras float32).
        base = make_base(input_shape, params.weights, params.feature_layer, self.base_run[0])
        if params.augmentation.enabled:
            # The head's scale from the base's outputs on a few batches of unaugmented training images.
            images = load_split(data.tfrecords, "train", params.batch_size).take(8)
            scale = feature_statistics(base(VGGPreprocess()(x), training=False) for x, _ in images)
            head = make_head(tuple(base.output.shape[1:]), params, scale)
            model = make_model(input_shape, params, base=base, head=head)
            compile_model(model, params.optimizer, params.learning_rate)
            run = fit_on_records(model, params, data.tfrecords, history)
        else:
            shape = FeaturesManifest.read_from(data.features).splits["train"].shape
            scale = feature_statistics(x for x, _ in load_features(data.features, "train", 256))
            head = make_head(tuple(shape), params, scale)
            compile_model(head, params.optimizer, params.learning_rate)
            # Streamed from the shards, reshuffled every epoch through a shuffle_buffer-sized buffer.
            train = load_features(data.features, "train", params.batch_size, shuffle=(params.seed, params.shuffle_buffer))
            val = load_features(data.features, "val", params.batch_size)
            run = fit_tensors(head, params, train, val, history)
            model = make_model(input_shape, params, base=base, head=head)
        epochs_run = len(run.history["loss"])
        if params.fine_tune.enabled:
            unfreeze_last_block(base)
            compile_model(model, params.optimizer, params.fine_tune.learning_rate)
            more = fit_on_records(model, params, data.tfrecords, history,
                                  epochs=epochs_run + params.fine_tune.epochs, initial_epoch=epochs_run)
            epochs_run += len(more.history["loss"])
        return model, epochs_run

    @classmethod
    def predict_split(cls, model, training: TrainingInfo, data: DataRoots, split: str, batch_size: int) -> pd.DataFrame:
        """The head on the cached features when they are this model's base outputs (frozen base, same
        weights and cut): the full model's probabilities, minutes sooner. Otherwise the full model."""
        if not uses_cached_features(training, data.features):
            # Says so: the whole base over every image costs minutes at scale (82 s at scale 0.1: benchmarks/history.md).
            print(f"{training.model} {split}: the full model on the images (the cached features are not this "
                  "model's base outputs)", flush=True)
            return super().predict_split(model, training, data, split, batch_size)
        count = FeaturesManifest.read_from(data.features).splits[split].count
        batches = load_features(data.features, split, batch_size, with_filenames=True)
        probabilities, labels, files = collect(map_batches(model.get_layer("head").predict_on_batch, batches, count))
        return pd.DataFrame({"file": files, "label": labels.astype(int), "probability": probabilities.reshape(-1)})

    def more_compute(self) -> list[str]:
        params, key = self.params, f"train.{self.name}"
        ideas = []
        if not params.fine_tune.enabled:
            ideas.append(f"Fine-tune the base's last block after the head converges ({key}.fine_tune.enabled: "
                         "true); then more blocks, with a lower learning rate.")
        else:
            ideas.append(f"Fine-tune more than the base's last block, for longer than {params.fine_tune.epochs} epochs.")
        if params.weights != "imagenet":
            ideas.append(f"Use VGG16's ImageNet weights ({key}.weights: imagenet), which were trained on "
                         f"natural images, instead of {params.weights}.")
        if not params.augmentation.enabled:
            ideas.append(f"Augment for the transfer model too ({key}.augmentation): the base then runs on "
                         "every image of every epoch, as its features can no longer be cached.")
        return ideas


def uses_cached_features(training: TrainingInfo, features_root: Path) -> bool:
    """True when the saved model's base is frozen and is the one the features stage ran (same weights,
    cut and precision)."""
    details = training.details
    if details.get("fine_tuned", True) or not (Path(features_root) / FeaturesManifest.name).is_file():
        return False
    features = FeaturesManifest.read_from(features_root)
    return ((features.weights, features.feature_layer, features.precision)
            == (details.get("weights"), details.get("feature_layer"), details.get("precision", "float32")))
