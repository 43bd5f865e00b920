"""The models match what the assignment specifies."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stages import models
from stages.config import load_params
from stages.errors import UserError
from stages.models import improved, transfer
from stages.models.baseline import make_model
from stages.train import layer_table, parameter_counts, summary_text


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def improved_params(params):
    """params.yaml's train.improved, as the improved module checks it."""
    return models.family("improved", params).params


@pytest.fixture(scope="module")
def transfer_defaults(params):
    return models.family("transfer", params).params


def test_baseline_matches_figure_1():
    model = make_model((100, 100, 3))
    assert model.count_params() == 544_593
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "rescaling": (100, 100, 3),
        "conv2d": (98, 98, 16),
        "max_pooling2d": (49, 49, 16),
        "conv2d_1": (47, 47, 16),
        "max_pooling2d_1": (23, 23, 16),
        "flatten": (8464,),
        "dense": (64,),
        "dense_1": (1,),
    }
    params = {layer.name: layer.count_params() for layer in model.layers}
    assert params == {"rescaling": 0, "conv2d": 448, "max_pooling2d": 0, "conv2d_1": 2320,
                      "max_pooling2d_1": 0, "flatten": 0, "dense": 541_760, "dense_1": 65}


def test_summary_table_reads_like_figure_1():
    model = make_model((100, 100, 3))
    text = summary_text(model.name, layer_table(model), parameter_counts(model))
    rows = {line.split()[0]: line for line in text.splitlines() if "(" in line and ")" in line}
    assert "(None, 98, 98, 16)" in rows["conv2d"] and rows["conv2d"].endswith(" 448")
    assert "(None, 23, 23, 16)" in rows["max_pooling2d_1"] and rows["max_pooling2d_1"].endswith(" 0")
    assert "(None, 64)" in rows["dense"] and rows["dense"].endswith(" 541,760")
    assert "Total params: 544,593" in text and "Non-trainable params: 0" in text


def test_improved_first_conv_stride_is_a_param(improved_params):
    strided = improved.make_model((100, 100, 3), improved_params.model_copy(update={"first_stride": 2}))
    plain = improved.make_model((100, 100, 3), improved_params.model_copy(update={"first_stride": 1}))
    first = [layer for layer in strided.layers if layer.name.startswith("conv2d")]
    assert tuple(first[0].output.shape[1:3]) == (50, 50)
    assert all(layer.strides == (1, 1) for layer in first[1:])
    assert tuple(next(l for l in plain.layers if l.name.startswith("conv2d")).output.shape[1:3]) == (100, 100)


def test_baseline_takes_raw_pixels_and_outputs_probabilities():
    model = make_model((100, 100, 3))
    images = np.random.default_rng(0).integers(0, 256, size=(4, 100, 100, 3)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 1)
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert model.layers[-1].activation.__name__ == "sigmoid"


# --- improved ---------------------------------------------------------------------------------

def test_improved_shapes_and_design(improved_params):
    model = improved.make_model((100, 100, 3), improved_params)
    assert tuple(model.input.shape[1:]) == (100, 100, 3)
    assert tuple(model.output.shape[1:]) == (1,)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == len(improved_params.filters) * improved_params.convs_per_block
    assert ("BatchNormalization" in kinds) == improved_params.batch_norm
    assert ("Dropout" in kinds) == (improved_params.dropout > 0)
    pooling = "GlobalAveragePooling2D" if improved_params.global_pooling else "Flatten"
    assert pooling in kinds
    kinds_by_key = {"flip": "RandomFlip", "rotation": "RandomRotation", "zoom": "RandomZoom",
                    "translation": "RandomTranslation", "contrast": "RandomContrast", "brightness": "RandomBrightness"}
    enabled = [kind for key, kind in kinds_by_key.items() if getattr(improved_params.augmentation, key)]
    if enabled:
        assert [type(layer).__name__ for layer in model.get_layer("augmentation").layers] == enabled


def test_improved_pooling_is_a_param(improved_params):
    for global_pooling, kind in ((True, "GlobalAveragePooling2D"), (False, "Flatten")):
        model = improved.make_model((100, 100, 3), improved_params.model_copy(update={"global_pooling": global_pooling}))
        assert kind in [type(layer).__name__ for layer in model.layers]


def test_improved_augmentation_switches_off(improved_params):
    off = improved_params.augmentation.model_copy(update={
        "flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0, "brightness": 0.0})
    model = improved.make_model((100, 100, 3), improved_params.model_copy(update={"augmentation": off}))
    assert "augmentation" not in [layer.name for layer in model.layers]


def test_augmentation_only_acts_in_training(improved_params):
    model = improved.make_model((100, 100, 3), improved_params)
    augmentation = model.get_layer("augmentation")
    images = np.random.default_rng(1).integers(0, 256, size=(2, 100, 100, 3)).astype("float32")
    assert np.array_equal(np.asarray(augmentation(images, training=False)), images)
    assert not np.allclose(np.asarray(augmentation(images, training=True)), images)


# --- transfer ---------------------------------------------------------------------------------

def test_transfer_base_frozen_head_trainable(transfer_defaults):
    base = transfer.make_base((100, 100, 3), "none")
    model = transfer.make_model((100, 100, 3), transfer_defaults.model_copy(update={"weights": "none"}), base=base)
    assert tuple(model.output.shape[1:]) == (1,)
    assert tuple(base.output.shape[1:]) == (3, 3, 512)
    assert not base.trainable and not base.trainable_weights
    head = model.get_layer("head")
    assert head.trainable_weights
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in head.trainable_weights}
    assert [layer.units for layer in head.layers if type(layer).__name__ == "Dense"] == [
        *transfer_defaults.head_units, 1]


def test_vgg_preprocess_matches_keras():
    images = np.random.default_rng(2).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    assert np.allclose(np.asarray(transfer.VGGPreprocess()(images)), expected, atol=1e-4)


def test_hed_weights_land_on_every_vgg16_conv_layer():
    import h5py

    base = transfer.make_base((100, 100, 3), "hed")
    random_base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    conv_layers = [layer for layer in base.layers if type(layer).__name__ == "Conv2D"]
    assert len(conv_layers) == 13
    with h5py.File(transfer.hed_weights_path(), "r") as weights_file:
        for layer in conv_layers:
            block, conv = layer.name.split("_")  # block3, conv2
            index = int(conv.removeprefix("conv")) - 1
            group = weights_file[f"{block}/layers/conv2d" + (f"_{index}" if index else "") + "/vars"]
            kernel, bias = layer.get_weights()
            assert kernel.shape == group["0"].shape and bias.shape == group["1"].shape
            assert np.array_equal(kernel, group["0"][()]), layer.name
            assert np.array_equal(bias, group["1"][()]), layer.name
            # Nothing left at its random initial value.
            assert not np.allclose(kernel, random_base.get_layer(layer.name).get_weights()[0])


def test_random_base_is_the_same_in_every_process():
    """The features stage and the train stage build `none` separately: they must agree."""
    keras.utils.set_random_seed(1)
    first = transfer.make_base((100, 100, 3), "none")
    keras.utils.set_random_seed(2)
    second = transfer.make_base((100, 100, 3), "none")
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernel = first.get_layer("block1_conv1").get_weights()[0]
    assert kernel.std() > 0.01  # random, not zeros


def test_base_cut_at_an_earlier_layer():
    base = transfer.make_base((100, 100, 3), "hed", "block4_pool")
    assert tuple(base.output.shape[1:]) == (6, 6, 512)
    assert not any(layer.name.startswith("block5") for layer in base.layers)
    assert transfer.last_block(base) == "block4" and not base.trainable
    full = transfer.make_base((100, 100, 3), "hed")
    np.testing.assert_array_equal(base.get_layer("block4_conv3").get_weights()[0],
                                  full.get_layer("block4_conv3").get_weights()[0])  # weights loaded before the cut
    assert transfer.last_block(full) == "block5"
    assert transfer.describe_weights("hed", "block4_pool") == "VGG16 up to block4_pool, HED/BSDS500 weights"


def test_unknown_feature_layer_is_one_clear_error():
    with pytest.raises(UserError, match="feature_layer: 'block9_pool' is not a VGG16 layer; use one of .*block4_pool"):
        transfer.make_base((100, 100, 3), "none", "block9_pool")


def test_weights_label_never_says_imagenet_for_hed():
    assert transfer.describe_weights("hed") == "VGG16, HED/BSDS500 weights"
    assert "ImageNet" not in transfer.describe_weights("hed")


def test_weights_from_a_path_load(tmp_path):
    saved = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    path = tmp_path / "my_vgg16_notop.weights.h5"
    saved.save_weights(path)
    base = transfer.make_base((100, 100, 3), str(path))
    for expected, loaded in zip(saved.get_weights(), base.get_weights()):
        assert np.array_equal(expected, loaded)


def test_unloadable_path_is_one_clear_error(tmp_path):
    path = tmp_path / "not_weights.h5"
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not loadable as VGG16 notop weights"):
        transfer.make_base((100, 100, 3), str(path))
    with pytest.raises(UserError, match="not hed, imagenet, none or an existing file"):
        transfer.make_base((100, 100, 3), str(tmp_path / "missing.h5"))


def test_imagenet_missing_and_offline_gives_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # The real download code, pointed at a closed port on this machine: no internet is touched.
    monkeypatch.setattr(transfer, "IMAGENET_URL", "http://127.0.0.1:9/" + transfer.IMAGENET_FILE)
    with pytest.raises(UserError) as caught:
        transfer.make_base((100, 100, 3), "imagenet")
    message = str(caught.value)
    assert "\n" not in message
    for part in (transfer.IMAGENET_FILE, transfer.IMAGENET_MD5, str(tmp_path / "keras" / "models"), "hed"):
        assert part in message


def test_imagenet_bad_file_is_reported_and_left_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(transfer, "IMAGENET_URL", "http://127.0.0.1:9/" + transfer.IMAGENET_FILE)
    cached = tmp_path / "keras" / "models" / transfer.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a user's damaged download")
    with pytest.raises(UserError) as caught:
        transfer.make_base((100, 100, 3), "imagenet")
    assert transfer.IMAGENET_MD5 in str(caught.value) and str(cached) in str(caught.value)
    assert cached.read_bytes() == b"a user's damaged download"
