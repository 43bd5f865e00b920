"""Heat maps: the image's size, not constant, and where the evidence is (it moves when the evidence moves)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from stages.analysis import heatmaps
from stages.modelkit import vgg16
from stages.models import baseline, transfer
from tests.helpers import needs_onednn_bfloat16

SIZE = 32
SQUARE = 8


def image_with_square(left: bool, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Dark noise with one bright square, its only cue, in the left or right half (vertically centred)."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 40, (size, size, 3)).astype(np.float32)
    top = (size - SQUARE) // 2
    column = size // 8 if left else size - size // 8 - SQUARE
    image[top:top + SQUARE, column:column + SQUARE] = 250.0
    return image


def bright_square_detector(size: int = SIZE) -> keras.Model:
    """A hand-set CNN that says class 1 where bright 3x3 patches are: its conv fires only on bright
    places (mean brightness above 200), and every place counts the same."""
    model = keras.Sequential([keras.Input((size, size, 3)), layers.Rescaling(1 / 255),
                              layers.Conv2D(1, 3, padding="same", activation="relu"), layers.Flatten(),
                              layers.Dense(1, activation="sigmoid")])
    conv, dense = model.layers[1], model.layers[3]
    conv.set_weights([np.full((3, 3, 3, 1), 1 / 27, np.float32), np.array([-200 / 255], np.float32)])
    dense.set_weights([np.full((size * size, 1), 0.5, np.float32), np.array([-2.0], np.float32)])
    return model


def trained_square_finder(size: int = SIZE) -> keras.Model:
    """A small CNN trained to tell images with a bright square (anywhere) from images without one."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    positives = [image_with_square(bool(rng.integers(2)), size, seed=i) for i in range(160)]
    for image in positives:  # move the square around vertically too
        image[:] = np.roll(image, int(rng.integers(-8, 9)), axis=0)
    negatives = [rng.uniform(0, 40, (size, size, 3)).astype(np.float32) for _ in range(160)]
    images = np.stack(positives + negatives)
    labels = np.array([1] * 160 + [0] * 160, np.float32)
    model = keras.Sequential([keras.Input((size, size, 3)), layers.Rescaling(1 / 255),
                              layers.Conv2D(8, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                              layers.Conv2D(8, 3, padding="same", activation="relu"), layers.GlobalMaxPooling2D(),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(images, labels, epochs=12, batch_size=32, verbose=0)
    return model


def left_share(heat: np.ndarray) -> float:
    """The share of the map's mass in the image's left half."""
    half = heat.shape[1] // 2
    return float(heat[:, :half].sum() / max(heat.sum(), 1e-12))


@pytest.fixture(scope="module")
def finder():
    return trained_square_finder()


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_hand_set_detector_map_is_where_the_square_is(method):
    model = bright_square_detector()
    images = np.stack([image_with_square(left=True), image_with_square(left=False)])
    assert (np.asarray(model(images)) > 0.5).all()
    maps, used = heatmaps.explain(model, images, method, threshold=0.5)
    assert used == method
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.isclose(maps.max(), 1)
    assert all(heat.std() > 0.05 for heat in maps)              # not constant
    assert left_share(maps[0]) > 0.9 and left_share(maps[1]) < 0.1
    # The hottest place is on the square.
    row, column = np.unravel_index(maps[0].argmax(), maps[0].shape)
    top = (SIZE - SQUARE) // 2
    assert top - 4 <= row < top + SQUARE + 4 and column < SIZE // 2


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_trained_model_map_moves_with_the_evidence(finder, method):
    images = np.stack([image_with_square(left=True, seed=100), image_with_square(left=False, seed=101)])
    assert (np.asarray(finder(images)) > 0.5).all(), "the finder did not learn the square"
    maps, used = heatmaps.explain(finder, images, method, threshold=0.5)
    assert used == method and maps.shape == (2, SIZE, SIZE)
    assert left_share(maps[0]) > 0.7 and left_share(maps[1]) < 0.3, (left_share(maps[0]), left_share(maps[1]))


def test_gradcam_explains_the_predicted_class_for_class_zero():
    """For an image predicted class 0 the map shows that class's evidence: the logit's negative.
    Here: a detector that calls bright squares class 0 (its output weights flipped)."""
    model = bright_square_detector()
    dense = model.layers[3]
    kernel, bias = dense.get_weights()
    dense.set_weights([-kernel, -bias])
    image = image_with_square(left=True)[None]
    assert float(np.asarray(model(image))[0, 0]) < 0.5
    maps, _ = heatmaps.explain(model, image, "gradcam", threshold=0.5)
    assert maps.std() > 0.05 and left_share(maps[0]) > 0.9


def test_auto_picks_gradcam_for_chains_and_occlusion_otherwise():
    assert heatmaps.choose_method(bright_square_detector(), SIZE) == "gradcam"
    # No conv layer: nothing for Grad-CAM to weigh.
    dense_only = keras.Sequential([keras.Input((SIZE, SIZE, 3)), layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    assert heatmaps.choose_method(dense_only, SIZE) == "occlusion"
    with pytest.raises(ValueError, match="use occlusion"):
        heatmaps.choose_method(dense_only, SIZE, "gradcam")
    # A residual connection: the layers in order are not the model, so the chain check refuses it.
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    merged = layers.Add()([inputs, conv])
    outputs = layers.Dense(1, activation="sigmoid")(layers.Flatten()(merged))
    residual = keras.Model(inputs, outputs)
    assert heatmaps.gradcam_plan(residual, SIZE) is None
    assert heatmaps.choose_method(residual, SIZE) == "occlusion"


class SigmoidOfMean(layers.Layer):
    """An ending Grad-CAM cannot see into: it says its activation is the sigmoid, but its call is its own."""

    activation = staticmethod(keras.activations.sigmoid)

    def call(self, inputs):
        return keras.ops.sigmoid(keras.ops.mean(inputs, axis=-1, keepdims=True) * 100.0 - 2.0)


def detector_ending_in(*ending: layers.Layer, dtype: str = "float32") -> keras.Model:
    """bright_square_detector's conv and weights (the Dense's bias where it has one), then `ending`
    instead of its Dense(1, sigmoid): the ending's first layer takes the Dense's place."""
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), layers.Rescaling(1 / 255),
                              layers.Conv2D(1, 3, padding="same", activation="relu", dtype=dtype), layers.Flatten(),
                              *ending])
    model.layers[1].set_weights([np.full((3, 3, 3, 1), 1 / 27, np.float32), np.array([-200 / 255], np.float32)])
    if isinstance(ending[0], layers.Dense):
        ending[0].set_weights([np.full((SIZE * SIZE, 1), 0.5, np.float32), np.array([-2.0], np.float32)][
                              :len(ending[0].weights)])
    return model


@pytest.mark.parametrize("ending", [pytest.param("separate float32 sigmoid, mixed bfloat16", marks=needs_onednn_bfloat16),
                                    "Dense sigmoid without bias"])
@pytest.mark.parametrize("method", ["auto", "gradcam"])
def test_gradcam_goes_through_the_logit_before_any_final_sigmoid(ending, method):
    """Keras's mixed-precision recipe ends in Dense(1) then a float32 Activation("sigmoid"); a Dense may
    have no bias. Grad-CAM weighs the logit before the sigmoid either way, and finds the square."""
    if ending.startswith("separate"):
        model = detector_ending_in(layers.Dense(1, dtype="mixed_bfloat16"),
                                   layers.Activation("sigmoid", dtype="float32"), dtype="mixed_bfloat16")
    else:
        model = detector_ending_in(layers.Dense(1, activation="sigmoid", use_bias=False))
    images = np.stack([image_with_square(left=True), image_with_square(left=False)])
    maps, used = heatmaps.explain(model, images, method, threshold=0.5)
    assert used == "gradcam"
    assert left_share(maps[0]) > 0.9 and left_share(maps[1]) < 0.1


def test_an_ending_gradcam_cannot_follow_falls_back_to_occlusion_or_says_so_in_one_line():
    model = detector_ending_in(SigmoidOfMean())
    images = np.stack([image_with_square(left=True)])
    assert heatmaps.gradcam_plan(model, SIZE) is None
    maps, used = heatmaps.explain(model, images, "auto", threshold=0.5)
    assert used == "occlusion" and maps.shape == (1, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"^Grad-CAM does not apply to this model .*; use occlusion$"):
        heatmaps.explain(model, images, "gradcam", threshold=0.5)


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_the_explained_class_is_the_one_the_threshold_picks(method):
    """An image at P(class 1) = p is class 1 under a threshold at or below p, class 0 above it, as
    evaluate's and predict's rows say (evaluate.threshold). Class 1's evidence is the square; for class 0
    the square is none (it only argues against it), so class 0's map is cold there."""
    model = bright_square_detector()
    image = image_with_square(left=True)[None]
    probability = float(np.asarray(model(image))[0, 0])
    assert 0.6 < probability < 0.99
    top, left = (SIZE - SQUARE) // 2, SIZE // 8
    as_class_1, _ = heatmaps.explain(model, image, method, threshold=0.5)
    as_class_0, _ = heatmaps.explain(model, image, method, threshold=(probability + 1) / 2)
    assert left_share(as_class_1[0]) > 0.9 and as_class_1[0, top:top + SQUARE, left:left + SQUARE].max() == 1
    assert as_class_0[0, top:top + SQUARE, left:left + SQUARE].max() == 0


def test_nested_models_unroll_to_their_last_conv():
    """The transfer model's shape: preprocessing, a nested VGG16 base (random, cut at block2_pool) and
    a nested head; Grad-CAM weighs the base's last conv, at the image's size."""
    base = vgg16.make_base((SIZE, SIZE, 3), "none", "block2_pool", "float32")
    params = transfer.Params.model_validate({
        "epochs": 1, "batch_size": 4, "learning_rate": 0.001, "optimizer": "adam", "seed": 1, "shuffle_buffer": 8,
        "early_stopping_patience": 0, "reduce_learning_rate": None, "weights": "none", "feature_layer": "block2_pool",
        "precision": "float32", "head_units": [4], "dropout": 0.5,
        "augmentation": dict.fromkeys(["flip"], False) | dict.fromkeys(
            ["rotation", "zoom", "translation", "contrast", "brightness"], 0.0),
        "fine_tune": {"enabled": False, "epochs": 1, "learning_rate": 1e-5}})
    model = transfer.make_model((SIZE, SIZE, 3), params, base=base)
    chain, target = heatmaps.gradcam_plan(model, SIZE)
    assert chain[target].name == "block2_conv2"
    images = np.stack([image_with_square(True), image_with_square(False)])
    maps, used = heatmaps.explain(model, images, threshold=0.5)
    assert used == "gradcam" and maps.shape == (2, SIZE, SIZE)


def test_baseline_architecture_map_has_the_image_size():
    keras.utils.set_random_seed(0)
    model = baseline.make_model((100, 100, 3))
    images = np.random.default_rng(0).uniform(0, 255, (3, 100, 100, 3)).astype(np.float32)
    chain, target = heatmaps.gradcam_plan(model, 100)
    assert chain[target].name == "conv2d_1"
    maps, used = heatmaps.explain(model, images, threshold=0.5)
    assert used == "gradcam" and maps.shape == (3, 100, 100)
    assert all(heat.std() > 0.01 for heat in maps)


def test_side_by_side_is_the_image_then_its_overlay(tmp_path):
    image = image_with_square(True)
    heat = np.zeros((SIZE, SIZE), np.float32)
    heat[:, :4] = 1.0
    pair = heatmaps.side_by_side(image, heat)
    assert pair.shape == (SIZE, 2 * SIZE + 2, 3) and pair.dtype == np.uint8
    assert (pair[:, :SIZE] == np.rint(image).astype(np.uint8)).all()          # the image, untouched
    assert (pair[:, SIZE:SIZE + 2] == 255).all()                               # the gap
    overlaid = pair[:, SIZE + 2:].astype(int)
    assert overlaid[:, :4, 0].mean() > overlaid[:, 10:20, 0].mean() + 50       # hot is red, cold is blue
    heatmaps.write_explanation(tmp_path / "pair.png", image, heat)
    from PIL import Image
    assert Image.open(tmp_path / "pair.png").size == (2 * SIZE + 2, SIZE)
