"""The models match what the assignment specifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.common.config import load_params
from stages.common.errors import UserError
from stages.modelkit import registry, saving
from stages.modelkit.augmentation import AugmentationParams, augment_images, augmented
from stages.modelkit import vgg16
from stages.models import improved, transfer
from stages.models.baseline import make_model
from stages.train import layer_table, parameter_counts, summary_text
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def improved_params(params):
    """params.yaml's train.improved, as the improved module checks it."""
    return registry.family("improved", params).params


@pytest.fixture(scope="module")
def transfer_defaults(params):
    return registry.family("transfer", params).params


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
    # Augmentation is in the training input pipeline (family.augmented), never in the saved model.
    assert not any(kind.startswith("Random") for kind in kinds)


def test_improved_pooling_is_a_param(improved_params):
    for global_pooling, kind in ((True, "GlobalAveragePooling2D"), (False, "Flatten")):
        model = improved.make_model((100, 100, 3), improved_params.model_copy(update={"global_pooling": global_pooling}))
        assert kind in [type(layer).__name__ for layer in model.layers]


# --- augmentation (family.augment_images, family.augmented) --------------------------------------

ALL_OFF = {"flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0, "brightness": 0.0}


def augment(images, seed=(1, 2), **on):
    settings = AugmentationParams(**{**ALL_OFF, **on})
    return np.asarray(augment_images(tf.constant(images, tf.float32), tf.constant(seed, tf.int64), settings))


@pytest.fixture(scope="module")
def faces():
    """Four smooth, asymmetric 32x32 images (a bright blob off-centre on a gradient), 0-255."""
    y, x = np.mgrid[0:32, 0:32].astype("float32")
    blob = 200 * np.exp(-((x - 8) ** 2 + (y - 12) ** 2) / 30)
    image = np.stack([blob + 2 * x, blob + y, blob + 40], axis=-1)
    return np.stack([image + 5 * k for k in range(4)]).clip(0, 255)


def test_augmentation_all_off_is_identity(faces):
    assert np.allclose(augment(faces), faces, atol=1e-3)


def test_flip_mirrors_about_half_the_images_exactly(faces):
    images = np.repeat(faces[:1], 64, axis=0)
    flipped = augment(images, flip=True)
    mirrored = [np.allclose(out, images[0][:, ::-1], atol=1e-3) for out in flipped]
    unchanged = [np.allclose(out, images[0], atol=1e-3) for out in flipped]
    assert all(m != u for m, u in zip(mirrored, unchanged))   # each image one or the other
    assert 16 <= sum(mirrored) <= 48


def test_rotation_moves_the_blob_by_at_most_the_range(faces):
    y, x = np.mgrid[0:32, 0:32].astype("float32")
    blob_only = np.repeat(200 * np.exp(-((x - 8) ** 2 + (y - 12) ** 2) / 30)[..., None], 3, axis=-1) + 20
    images = np.repeat(blob_only[None], 32, axis=0)
    rotated = augment(images, rotation=0.05)    # +- 18 degrees about the centre (15.5, 15.5)
    centre = np.array([15.5, 15.5])
    blob = np.array([8.0, 12.0])                 # x, y of the blob's peak
    radius = np.linalg.norm(blob - centre)
    angles = []
    for out in rotated:
        peak_y, peak_x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
        moved = np.array([peak_x, peak_y]) - centre
        assert abs(np.linalg.norm(moved) - radius) < 1.5   # rotation keeps the distance to the centre
        angles.append(np.degrees(np.arctan2(moved[1], moved[0]) - np.arctan2(*(blob - centre)[::-1])))
    angles = (np.array(angles) + 180) % 360 - 180
    assert np.abs(angles).max() <= 18 + 5 and np.ptp(angles) > 10   # within range, and varied


def test_each_transform_changes_images_and_stays_in_range(faces):
    for key, value in {"rotation": 0.02, "zoom": 0.1, "translation": 0.05, "contrast": 0.1, "brightness": 0.1}.items():
        out = augment(faces, **{key: value})
        assert out.shape == faces.shape and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
        assert not np.allclose(out, faces, atol=0.5), key


def test_brightness_and_contrast_follow_keras_ranges(faces):
    shift = augment(faces, brightness=0.1) - faces   # no clipping: faces stay within 45-255 - 26
    inside = (faces > 30) & (faces < 225)
    per_image = [np.unique(np.round(d[m], 3)) for d, m in zip(shift, inside)]
    assert all(len(values) == 1 and abs(values[0]) <= 25.5 for values in per_image)
    stretched = augment(faces, contrast=0.1)
    spread = stretched.std(axis=(1, 2)) / faces.std(axis=(1, 2))
    assert np.all((spread > 0.9 - 1e-3) & (spread < 1.1 + 1e-3))


def test_same_seed_same_batch_other_seed_other_batch(faces):
    settings = {"flip": True, "rotation": 0.02, "zoom": 0.1, "contrast": 0.1}
    assert np.array_equal(augment(faces, (3, 4), **settings), augment(faces, (3, 4), **settings))
    assert not np.allclose(augment(faces, (3, 4), **settings), augment(faces, (5, 6), **settings))


def test_augmented_batches_repeat_across_runs_and_change_across_epochs(faces):
    settings = AugmentationParams(**{**ALL_OFF, "rotation": 0.05, "brightness": 0.1})
    labels = np.arange(8, dtype="float32")
    batches = tf.data.Dataset.from_tensor_slices((np.concatenate([faces, faces]), labels)).batch(4)

    def epochs(count):
        stream = augmented(batches, settings, seed=7)
        return [[(x.numpy(), y.numpy()) for x, y in stream] for _ in range(count)]

    first_run, second_run = epochs(2), epochs(2)
    for (x1, y1), (x2, y2) in zip(first_run[0] + first_run[1], second_run[0] + second_run[1]):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)     # same seed: same augmented data
    assert [y.tolist() for _, y in first_run[0]] == [[0, 1, 2, 3], [4, 5, 6, 7]]   # labels in order
    assert not np.allclose(first_run[0][0][0], first_run[1][0][0])  # epoch 2 is augmented anew
    assert not np.allclose(first_run[0][0][0], first_run[0][1][0])  # and so is every batch


def test_augmentation_describes_itself(improved_params):
    assert AugmentationParams(**ALL_OFF).describe() == ""
    assert AugmentationParams(**{**ALL_OFF, "flip": True, "zoom": 0.1}).describe() == "flip, zoom 0.1"
    family = registry.family("improved", load_params())
    assert family.details()["augmentation"] == improved_params.augmentation.describe()


# --- transfer ---------------------------------------------------------------------------------

def test_transfer_base_frozen_head_trainable(transfer_defaults):
    base = vgg16.make_base((100, 100, 3), "none")
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
    assert np.allclose(np.asarray(vgg16.VGGPreprocess()(images)), expected, atol=1e-4)


def test_hed_weights_land_on_every_vgg16_conv_layer():
    import h5py

    base = vgg16.make_base((100, 100, 3), "hed")
    random_base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    conv_layers = [layer for layer in base.layers if type(layer).__name__ == "Conv2D"]
    assert len(conv_layers) == 13
    with h5py.File(vgg16.hed_weights_path(), "r") as weights_file:
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
    first = vgg16.make_base((100, 100, 3), "none")
    keras.utils.set_random_seed(2)
    second = vgg16.make_base((100, 100, 3), "none")
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernel = first.get_layer("block1_conv1").get_weights()[0]
    assert kernel.std() > 0.01  # random, not zeros


def test_base_cut_at_an_earlier_layer():
    base = vgg16.make_base((100, 100, 3), "hed", "block4_pool")
    assert tuple(base.output.shape[1:]) == (6, 6, 512)
    assert not any(layer.name.startswith("block5") for layer in base.layers)
    assert vgg16.last_block(base) == "block4" and not base.trainable
    full = vgg16.make_base((100, 100, 3), "hed")
    np.testing.assert_array_equal(base.get_layer("block4_conv3").get_weights()[0],
                                  full.get_layer("block4_conv3").get_weights()[0])  # weights loaded before the cut
    assert vgg16.last_block(full) == "block5"
    assert vgg16.describe_weights("hed", "block4_pool") == "VGG16 up to block4_pool, HED/BSDS500 weights"


def test_unknown_feature_layer_is_one_clear_error():
    with pytest.raises(UserError, match="feature_layer: 'block9_pool' is not a VGG16 layer; use one of .*block4_pool"):
        vgg16.make_base((100, 100, 3), "none", "block9_pool")


def test_weights_label_never_says_imagenet_for_hed():
    assert vgg16.describe_weights("hed") == "VGG16, HED/BSDS500 weights"
    assert "ImageNet" not in vgg16.describe_weights("hed")


def test_weights_from_a_path_load(tmp_path):
    saved = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    path = tmp_path / "my_vgg16_notop.weights.h5"
    saved.save_weights(path)
    base = vgg16.make_base((100, 100, 3), str(path))
    for expected, loaded in zip(saved.get_weights(), base.get_weights()):
        assert np.array_equal(expected, loaded)


def test_unloadable_path_is_one_clear_error(tmp_path):
    path = tmp_path / "not_weights.h5"
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not loadable as VGG16 notop weights"):
        vgg16.make_base((100, 100, 3), str(path))
    with pytest.raises(UserError, match="not hed, imagenet, none or an existing file"):
        vgg16.make_base((100, 100, 3), str(tmp_path / "missing.h5"))


def test_imagenet_missing_and_offline_gives_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # The real download code, pointed at a closed port on this machine: no internet is touched.
    monkeypatch.setattr(vgg16, "IMAGENET_URL", "http://127.0.0.1:9/" + vgg16.IMAGENET_FILE)
    with pytest.raises(UserError) as caught:
        vgg16.make_base((100, 100, 3), "imagenet")
    message = str(caught.value)
    assert "\n" not in message
    for part in (vgg16.IMAGENET_FILE, vgg16.IMAGENET_MD5, str(tmp_path / "keras" / "models"), "hed"):
        assert part in message


def test_imagenet_bad_file_is_reported_and_left_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(vgg16, "IMAGENET_URL", "http://127.0.0.1:9/" + vgg16.IMAGENET_FILE)
    cached = tmp_path / "keras" / "models" / vgg16.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a user's damaged download")
    with pytest.raises(UserError) as caught:
        vgg16.make_base((100, 100, 3), "imagenet")
    assert vgg16.IMAGENET_MD5 in str(caught.value) and str(cached) in str(caught.value)
    assert cached.read_bytes() == b"a user's damaged download"


def test_imagenet_file_placed_in_keras_home_is_loaded(tmp_path, monkeypatch):
    """What the offline user does after the message above: put the file in $KERAS_HOME/registry. The
    real file cannot be had here, so a VGG16 notop weights file of random weights stands in, with
    the expected MD5 set to its own: the path from the cache to the loaded base is the real one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(vgg16, "IMAGENET_URL", "http://127.0.0.1:9/" + vgg16.IMAGENET_FILE)
    cached = tmp_path / "keras" / "models" / vgg16.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    import h5py
    # Keras's ImageNet file is a legacy .h5 (one group per layer); saved that way.
    full = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    vgg16.randomize(full, seed=11)
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as handle:
        keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group(handle, full)
    cached.write_bytes(legacy.read_bytes())
    monkeypatch.setattr(vgg16, "IMAGENET_MD5", vgg16.md5_of(cached))
    base = vgg16.make_base((100, 100, 3), "imagenet", "block5_pool", "float32")
    for loaded, expected in zip(base.weights, full.weights):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(expected))
    assert cached.read_bytes() == legacy.read_bytes()          # the user's file is never changed


# --- saving: same model, same bytes ---------------------------------------------------

def seeded_baseline(seed: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return make_model((100, 100, 3))


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_save_model_twice_same_bytes(tmp_path):
    model = seeded_baseline()
    saving.save_model(model, tmp_path / "first.keras")
    time.sleep(2.1)  # past the resolution of every clock a save could read: zip (2 s), Keras and HDF5 (1 s)
    saving.save_model(model, tmp_path / "second.keras")
    assert (tmp_path / "first.keras").read_bytes() == (tmp_path / "second.keras").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.keras", "second.keras"]  # no scratch left


def test_saved_file_is_normalised(tmp_path):
    model = seeded_baseline()
    saving.save_model(model, tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == ["config.json", "metadata.json", "model.weights.h5"]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    saved = members(tmp_path / "m.keras")
    assert json.loads(saved["metadata.json"]) == {"keras_version": keras.__version__}
    ids = []

    def collect(node):
        if isinstance(node, dict):
            ids.extend([node["shared_object_id"]] if "shared_object_id" in node else [])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(json.loads(saved["config.json"]))
    assert ids and set(ids) == {1}  # Keras wrote id(dtype policy), a memory address, on every layer


def test_normalise_config_renumbers_shared_ids_consistently():
    config = {"a": {"shared_object_id": 140154858959504, "x": 1},
              "layers": [{"shared_object_id": 99}, {"shared_object_id": 140154858959504, "x": [1.5, None]},
                         {"inner": {"shared_object_id": 99, "flag": True}}],
              "other_id": 140154858959504}
    renumbered = json.loads(saving.normalise_config(json.dumps(config).encode()))
    assert renumbered == {"a": {"shared_object_id": 1, "x": 1},
                          "layers": [{"shared_object_id": 2}, {"shared_object_id": 1, "x": [1.5, None]},
                                     {"inner": {"shared_object_id": 2, "flag": True}}],
                          "other_id": 140154858959504}
    assert json.loads(saving.normalise_metadata(b'{"keras_version": "3.1", "date_saved": "2026-01-01@10:00:00"}')) \
        == {"keras_version": "3.1"}


def test_other_weights_other_bytes(tmp_path):
    model = seeded_baseline()
    saving.save_model(model, tmp_path / "a.keras")
    saving.save_model(seeded_baseline(4), tmp_path / "b.keras")
    kernel, bias = model.layers[-1].get_weights()
    bias[0] += 0.5
    model.layers[-1].set_weights([kernel, bias])
    saving.save_model(model, tmp_path / "c.keras")
    files = [members(tmp_path / f"{name}.keras") for name in "abc"]
    assert len({(tmp_path / f"{name}.keras").read_bytes() for name in "abc"}) == 3
    assert files[0]["config.json"] == files[2]["config.json"]  # only the weights changed
    assert files[0]["model.weights.h5"] != files[2]["model.weights.h5"]


def test_saved_model_reloads_and_predicts_the_same(tmp_path, transfer_defaults):
    images = np.random.default_rng(5).integers(0, 256, size=(3, 100, 100, 3)).astype("float32")
    keras.utils.set_random_seed(6)
    built = {"baseline": make_model((100, 100, 3)),
             "transfer": transfer.make_model((100, 100, 3), transfer_defaults.model_copy(update={"weights": "none"}))}
    for name, model in built.items():
        path = tmp_path / f"{name}.keras"
        saving.save_model(model, path)
        expected = model.predict(images, verbose=0)
        for loaded in (registry.load_model(path), keras.models.load_model(path)):
            np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
            assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]
            for a, b in zip(loaded.get_weights(), model.get_weights()):
                np.testing.assert_array_equal(a, b)


def test_a_bfloat16_model_under_the_onednn_cap_is_refused_in_one_line(tmp_path, monkeypatch):
    # A model trained in bfloat16 where the CPU has it, then loaded with ONEDNN_MAX_CPU_ISA=AVX2 (the
    # emulated AVX2 kind): oneDNN would stop on the first batch with "could not create a primitive descriptor".
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="mixed_bfloat16", name="half")(inputs))
    path = tmp_path / "half.keras"
    saving.save_model(model, path)
    float32_path = tmp_path / "float32.keras"
    saving.save_model(seeded_baseline(), float32_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError) as refused:
        registry.load_model(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and "bfloat16" in message
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in message and "unset ONEDNN_MAX_CPU_ISA" in message
    registry.load_model(float32_path)                 # float32 runs under any cap
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    registry.load_model(path)                         # a cap that leaves bfloat16 alone
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert registry.load_model(path).get_layer("half").compute_dtype == "bfloat16"


def test_save_model_wants_a_keras_file_and_replaces_atomically(tmp_path):
    with pytest.raises(ValueError, match=r"\.keras"):
        saving.save_model(seeded_baseline(), tmp_path / "model.h5")
    path = tmp_path / "deep" / "model.keras"
    saving.save_model(seeded_baseline(), path)
    other = seeded_baseline(4)
    saving.save_model(other, path)  # over the first
    saving.save_model(other, tmp_path / "fresh.keras")
    assert path.read_bytes() == (tmp_path / "fresh.keras").read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]


SAVE_IN_A_NEW_PROCESS = """
import sys
import keras
import numpy as np
from stages.modelkit import registry, saving
from stages.common.config import load_params
from stages.models import improved
from stages.models.baseline import make_model

out = sys.argv[1]
params = load_params()
keras.utils.set_random_seed(11)
built = {"baseline": make_model((100, 100, 3)),
         "improved": improved.make_model((100, 100, 3), registry.family("improved", params).params)}
images = np.random.default_rng(0).integers(0, 256, size=(8, 100, 100, 3)).astype("float32")
labels = np.array([0, 1] * 4, dtype="float32")
for name, model in built.items():
    # Trained one epoch, so the file holds optimizer state as well.
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    saving.save_model(model, f"{out}/{name}.keras")
"""


@pytest.mark.e2e
def test_same_model_same_bytes_in_separate_processes(tmp_path):
    """Built, trained and saved in two fresh processes, one after the other: the same files, down to
    the HDF5 weights (Keras writes memory addresses and the time; h5py could write object times)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        out.mkdir()
        done = subprocess.run([sys.executable, "-c", SAVE_IN_A_NEW_PROCESS, str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append({name: members(out / f"{name}.keras") for name in ("baseline", "improved")})
        outputs[-1]["files"] = {name: (out / f"{name}.keras").read_bytes() for name in ("baseline", "improved")}
    first, second = outputs
    for name in ("baseline", "improved"):
        assert first[name].keys() == second[name].keys()
        for member in first[name]:
            assert first[name][member] == second[name][member], (name, member)
    assert first["files"] == second["files"]


def test_feature_statistics_stream_equals_numpy():
    rng = np.random.default_rng(3)
    batches = [rng.normal(40, 9, (5, 3, 3, 4)).astype(np.float32) for _ in range(7)]
    mean, variance = transfer.feature_statistics(iter(batches))
    everything = np.concatenate(batches).astype(np.float64)
    assert mean == pytest.approx(everything.mean()) and variance == pytest.approx(everything.var())


def test_head_standardizes_its_input_with_one_mean_and_variance(transfer_defaults, tmp_path):
    head = transfer.make_head((2, 2, 3), transfer_defaults, scale=(50.0, 400.0))
    scaling = head.get_layer("feature_scale")
    features = np.full((1, 2, 2, 3), 70.0, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(scaling(features.reshape(1, -1))), 1.0, rtol=1e-5)   # (70 - 50) / 20
    # Saved and loaded, the scale stays: the full model and the head on cached features agree.
    head.save(tmp_path / "head.keras")
    loaded = keras.models.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(features), head.predict_on_batch(features), rtol=1e-6)
