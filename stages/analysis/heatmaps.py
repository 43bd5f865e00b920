"""Where a model looks: heat maps over the image (Grad-CAM, or occlusion sensitivity), and overlays.

    maps, method = explain(model, images, threshold=0.5)   # maps [n, size, size] in 0..1, one per image

The predicted class is the one evaluate's and predict's rows give: P(class 1) >= evaluate.threshold.
Grad-CAM (Selvaraju et al. 2017) weighs the last convolutional feature maps by the gradient of the
predicted class's score (the logit before the sigmoid: a saturated probability has no gradient) and
keeps the positive part, upsampled to the image. It needs the model to be a chain of layers ending
in one sigmoid (a layer's activation, or an Activation layer of its own as in Keras's mixed-precision
recipe), with a conv layer whose maps are at least 2x2; nested models (the transfer model's VGG16
base and head) are unrolled into that chain, and the chain's logit is checked against the model's
own output before it is trusted. Where that does not hold, occlusion sensitivity: a grey patch slides
over the image and the map is how much the predicted class's probability falls when each place is
hidden. It runs the model once per patch position, so it is slower, but it needs nothing of the model.

Used by evaluate (the report's heat maps) and predict (--explain DIR).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

METHODS = ("auto", "gradcam", "occlusion")
Method = Literal["auto", "gradcam", "occlusion"]
METHOD_TITLES = {"gradcam": "Grad-CAM", "occlusion": "occlusion sensitivity"}
# Occlusion: the patch side and step as fractions of the image side (100 px: a 20 px patch every 10 px).
OCCLUSION_PATCH = 0.2
OCCLUSION_STRIDE = 0.1
OCCLUSION_FILL = 127.5      # mid-grey in 0-255 pixels
OVERLAY_ALPHA = 0.45        # the heat map's share of each overlay pixel


# --- the model as a chain of layers ------------------------------------------------------------------

def layer_chain(model) -> list:
    """The model's layers in call order, nested models unrolled (input layers dropped). Only a
    faithful description of the model if the model is a chain: see gradcam_plan."""
    import keras

    chain = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        chain.extend(layer_chain(layer) if isinstance(layer, keras.Model) else [layer])
    return chain


def run_chain(chain: list, images, stop: int | None = None):
    """The chain's output on images (inference mode); with `stop`, the output of chain[stop]."""
    x = images
    for index, layer in enumerate(chain):
        x = layer(x, training=False)
        if index == stop:
            break
    return x


def target_layer(chain: list) -> int | None:
    """Index of the output Grad-CAM weighs: the last Conv2D, carried through the batch norm and
    activation right after it (the maps as the next layer sees them); None when there is none."""
    import keras

    convs = [i for i, layer in enumerate(chain) if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        return None
    index = convs[-1]
    while index + 1 < len(chain) and isinstance(chain[index + 1], (keras.layers.BatchNormalization,
                                                                      keras.layers.Activation, keras.layers.ReLU)):
        index += 1
    return index


def logit_chain(chain: list, images) -> list | None:
    """The chain up to the final sigmoid's input, the logit: without a last Activation("sigmoid"), or with
    its last layer copied without its sigmoid activation (a copy: the model itself stays as it is).
    None when the chain does not end in a sigmoid. `images` build the copy."""
    import keras

    *body, last = chain
    if getattr(last, "activation", None) is not keras.activations.sigmoid:
        return None
    if isinstance(last, keras.layers.Activation):
        return body
    linear = type(last).from_config({**last.get_config(), "activation": "linear"})
    linear(run_chain(body, images))
    linear.set_weights(last.get_weights())
    return [*body, linear]


def gradcam_plan(model, image_size: int) -> tuple[list, int] | None:
    """(the chain to the logit, target index) when Grad-CAM applies to this model, else None: the chain
    must end in a sigmoid whose input reproduces the model's output, with a target layer of maps 2x2 or more."""
    chain = layer_chain(model)
    target = target_layer(chain)
    if target is None:
        return None
    probe = np.random.default_rng(0).uniform(0, 255, (2, image_size, image_size, 3)).astype(np.float32)
    try:
        to_logit = logit_chain(chain, probe)
        if to_logit is None:
            return None
        maps = run_chain(to_logit, probe, stop=target)
        logits = np.asarray(run_chain(to_logit, probe), dtype=np.float32)
        expected = np.asarray(model(probe, training=False), dtype=np.float32)
    except Exception:   # a layer that fails outside its graph (several inputs, its own call): not a chain
        return None
    if len(maps.shape) != 4 or min(maps.shape[1], maps.shape[2]) < 2 or logits.shape != expected.shape:
        return None
    # bfloat16 bases round differently per call order; a wrong chain or logit is off by far more.
    if not np.allclose(1 / (1 + np.exp(-logits.astype(np.float64))), expected, atol=2e-2):
        return None
    return to_logit, target


def probabilities(model, images: np.ndarray) -> np.ndarray:
    """P(class 1) per image, float64, as predict_files computes it (predict_on_batch)."""
    return np.asarray(model.predict_on_batch(images), dtype=np.float64).reshape(-1)


def _float32_policies(node):
    """A model config with every layer's dtype policy float32 (mixed_bfloat16 -> float32, ...)."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_float32_policies(value) for value in node]
    return node


def float32_copy(model):
    """The model with every layer computing in float32, same weights; the model itself when it already
    does (or is not a functional model). The maps' gradients and occlusion's many passes then need no
    16-bit arithmetic, which a CPU without native bfloat16 emulates slowly; the predicted class still
    comes from the model itself."""
    import keras

    def layers_of(each):
        for layer in each.layers:
            yield layer
            if isinstance(layer, keras.Model):
                yield from layers_of(layer)

    if not isinstance(model, keras.Model) or all(layer.dtype_policy.name == "float32" for layer in layers_of(model)):
        return model
    try:
        copy = type(model).from_config(_float32_policies(model.get_config()))
        copy.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - a model Keras cannot rebuild from its config: explain it as it is
        return model
    return copy


class Explainer:
    """Heat maps for one model: the method decided, and Grad-CAM's chain checked, once. The map shows the
    evidence for each image's predicted class, P(class 1) >= threshold (evaluate.threshold), computed in
    float32 (float32_copy)."""

    def __init__(self, model, image_size: int, method: Method = "auto", *, threshold: float):
        self.model, self.threshold = model, threshold
        self.mapped = float32_copy(model)
        self.plan = None if method == "occlusion" else gradcam_plan(self.mapped, image_size)
        if self.plan is None and method == "gradcam":
            raise ValueError("Grad-CAM does not apply to this model (it needs a chain of layers ending in a sigmoid, "
                             "with a conv layer whose maps are 2x2 or larger); use occlusion")
        self.method = "gradcam" if self.plan is not None else "occlusion"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Maps [n, height, width] in 0..1 for 0-255 RGB images [n, height, width, 3]."""
        images = np.asarray(images, np.float32)
        probability = probabilities(self.model, images)
        predicted = probability >= self.threshold
        if self.plan is not None:
            return gradcam(self.plan, images, predicted)
        if self.mapped is not self.model:
            probability = probabilities(self.mapped, images)
        return occlusion(self.mapped, images, probability, predicted)


def choose_method(model, image_size: int, method: Method = "auto") -> str:
    """The method that will run: `method` itself, or for auto Grad-CAM where it applies, else occlusion
    (the threshold plays no part in the choice)."""
    return Explainer(model, image_size, method, threshold=0.5).method


# --- the maps ---------------------------------------------------------------------------------

def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to 0..1 by its own maximum (all zeros stay zeros)."""
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peaks > 0, maps / np.maximum(peaks, 1e-12), 0.0).astype(np.float32)


def gradcam(plan: tuple[list, int], images: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Grad-CAM maps [n, height, width] in 0..1 along gradcam_plan's chain, for each image's class
    (predicted: True for class 1)."""
    import tensorflow as tf

    to_logit, target = plan
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        maps = run_chain(to_logit, x, stop=target)
        tape.watch(maps)
        logit = tf.cast(run_chain(to_logit[target + 1:], maps), tf.float32)[:, 0]
        # Evidence for the predicted class: the logit for class 1, minus it for class 0.
        score = tf.where(tf.constant(predicted), logit, -logit)
    gradients = tf.cast(tape.gradient(score, maps), tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(maps, tf.float32), axis=-1))
    upsampled = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
    return normalise(upsampled.numpy())


def occlusion(model, images: np.ndarray, probability: np.ndarray, predicted: np.ndarray,
              batch_size: int = 64) -> np.ndarray:
    """Occlusion sensitivity maps [n, height, width] in 0..1: how much P(predicted class) falls when a
    grey patch hides each place (mean over the patches covering a pixel, negatives dropped).
    probability: each image's P(class 1); predicted: True for class 1."""
    height, width = images.shape[1:3]
    patch = max(2, round(OCCLUSION_PATCH * min(height, width)))
    stride = max(1, round(OCCLUSION_STRIDE * min(height, width)))
    positions = [(top, left) for top in range(0, max(height - patch, 0) + 1, stride)
                 for left in range(0, max(width - patch, 0) + 1, stride)]
    maps = np.zeros(images.shape[:3], np.float64)
    for index, image in enumerate(images):
        original, sign = probability[index], 1.0 if predicted[index] else -1.0
        drops, cover = np.zeros((height, width)), np.zeros((height, width))
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            hidden = np.repeat(image[None], len(chunk), axis=0)
            for k, (top, left) in enumerate(chunk):
                hidden[k, top:top + patch, left:left + patch] = OCCLUSION_FILL
            for (top, left), hidden_probability in zip(chunk, probabilities(model, hidden)):
                drops[top:top + patch, left:left + patch] += sign * (original - hidden_probability)
                cover[top:top + patch, left:left + patch] += 1
        maps[index] = np.maximum(drops / np.maximum(cover, 1), 0)
    return normalise(maps)


def explain(model, images: np.ndarray, method: Method = "auto", *, threshold: float) -> tuple[np.ndarray, str]:
    """(maps [n, height, width] in 0..1, the method used) for 0-255 RGB images [n, height, width, 3], each
    for its predicted class at `threshold` (evaluate.threshold)."""
    explainer = Explainer(model, np.shape(images)[1], method, threshold=threshold)
    return explainer(images), explainer.method


# --- overlays --------------------------------------------------------------------------------

def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The image (0-255 RGB) with its heat map (0..1, same height and width) blended over it in the
    jet colour map, as uint8 RGB."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255.0
    blended = (1 - alpha) * np.asarray(image, np.float64) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side(image: np.ndarray, heat: np.ndarray, gap: int = 2) -> np.ndarray:
    """The image, a white gap, then the image under its heat map: uint8 RGB, twice as wide."""
    image = np.clip(np.rint(np.asarray(image, np.float64)), 0, 255).astype(np.uint8)
    white = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([image, white, overlay(image, heat)], axis=1)


def write_explanation(path, image: np.ndarray, heat: np.ndarray) -> None:
    """Save side_by_side(image, heat) as a PNG at `path`, written whole (atomic_files.atomic_file)."""
    from PIL import Image

    from stages.common.atomic_files import atomic_file

    with atomic_file(path, "wb") as handle:
        Image.fromarray(side_by_side(image, heat)).save(handle, format="PNG")
