"""The features stage under a MirroredStrategy of two replicas: each batch is split between them, every
image computed once, and the features are the single device's. Two logical CPU devices stand in for two
GPUs; TensorFlow fixes its devices when it starts, so this runs in a fresh process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_tfrecords_project, run, run_tfrecords

pytestmark = pytest.mark.e2e

# Runs in its own process: argv[1] the TFRecords folder, argv[2] a work folder (the result: result.json).
# A frozen "base" whose first layer counts the rows it computes (a sum over replicas), extracted once
# under two replicas and once, with the same weights, on one device.
TWO_REPLICAS = r'''
import json, sys
from pathlib import Path
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from stages import features
from stages.common import distribute
from stages.modelkit.engines import batch_runner
from stages.contracts.manifests import FeaturesManifest
from stages.contracts.tfrecord_io import load_features

records, work = Path(sys.argv[1]), Path(sys.argv[2])


class RowCounter(keras.layers.Layer):
    """Passes its input on, adding its rows to `rows`: a plain variable made outside the strategy, one
    count shared by every replica."""

    def __init__(self, rows):
        super().__init__()
        self.rows = lambda: rows          # not tracked as the layer's weight: it is no part of the model

    def compute_output_shape(self, shape):
        return shape

    def call(self, inputs):
        self.rows().assign_add(tf.cast(tf.shape(inputs)[0], tf.float32))
        return inputs


def extractor(rows):
    inputs = keras.Input((100, 100, 3))
    counted = RowCounter(rows)(inputs)
    outputs = keras.layers.Conv2D(4, 5, strides=10, activation="relu")(keras.layers.Rescaling(1 / 255)(counted))
    return keras.Model(inputs, outputs)


def extract(model, folder):
    folder.mkdir()
    # As the stage runs the base on the keras engine: each batch split between the strategy's replicas.
    run_base = batch_runner(model, "keras", 2, distribute.predict_each_row_once(model))
    shards = features.extract_split(run_base, list(model.output.shape[1:]), records, "test", folder, batch_size=5,
                                    shard_size=4)
    FeaturesManifest(weights="none", feature_layer="x", precision="float32", weights_label="test", dtype="float32",
                     splits={"test": shards}).write(folder / FeaturesManifest.name)
    rows = [(name.decode(), values) for batch, _, names in load_features(folder, "test", 64, with_filenames=True)
            for values, name in zip(batch.numpy(), names.numpy())]
    return shards.count, rows


mirrored_computed, single_computed = tf.Variable(0.0, trainable=False), tf.Variable(0.0, trainable=False)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = extractor(mirrored_computed)
single = extractor(single_computed)
single.set_weights(mirrored.get_weights())
count, two_rows = extract(mirrored, work / "two")
_, one_rows = extract(single, work / "one")
(work / "result.json").write_text(json.dumps({
    "replicas": strategy.num_replicas_in_sync, "images": count,
    "computed_two": float(mirrored_computed.numpy()), "computed_one": float(single_computed.numpy()),
    "files_two": [name for name, _ in two_rows], "files_one": [name for name, _ in one_rows],
    "largest_difference": max(float(np.abs(a - b).max()) for (_, a), (_, b) in zip(two_rows, one_rows)),
    "spread": float(np.ptp(np.stack([values for _, values in one_rows]))),
}))
'''


def test_two_replicas_split_each_batch_and_give_the_single_device_features(tmp_path):
    records = run_tfrecords(make_tfrecords_project(tmp_path / "project"))
    run([sys.executable, "-c", TWO_REPLICAS, str(records), str(tmp_path)], ROOT, timeout=300)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["replicas"] == 2 and result["images"] == 6      # batches of 5 and 1: one replica gets none
    assert result["computed_one"] == 6
    assert result["computed_two"] == 6, "an image was computed more than once"
    assert result["files_two"] == result["files_one"] and len(result["files_one"]) == 6
    assert result["spread"] > 0.01, "the check needs features that differ per image"
    assert result["largest_difference"] <= 1e-6
