"""The TFRecord schema: the one writer format and the one parser every reader uses."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from stages.contracts import TfrecordsManifest

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),     # PNG bytes, RGB, image_size x image_size
    "label": tf.io.FixedLenFeature([], tf.int64),      # index into prepare.classes
    "filename": tf.io.FixedLenFeature([], tf.string),  # path of the prepared file, for tracing
}


def encode_example(png: bytes, label: int, filename: str) -> bytes:
    """Serialize one example in the schema above."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode("utf-8")])),
    }
    # deterministic: the same example gives the same bytes in every process (protobuf map order varies otherwise).
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def decode_example(serialized: tf.Tensor, image_size: int) -> dict[str, tf.Tensor]:
    """Parse one serialized example: image uint8 [size, size, 3], label int64, filename string."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.io.decode_png(parsed["image"], channels=3)
    image = tf.ensure_shape(image, [image_size, image_size, 3])
    return {"image": image, "label": parsed["label"], "filename": parsed["filename"]}


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def load_split(
    root: Path,
    split: str,
    batch_size: int,
    shuffle: tuple[int, int] | None = None,
    with_filenames: bool = False,
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches of (float32 image 0-255, float32 label[, filename]) for one split, prefetched.

    Pixels stay 0-255: each model rescales inside itself, so a saved model takes raw images.
    shuffle: (seed, buffer size) to reshuffle every epoch (training). cache: keep the decoded uint8
    images in memory after the first epoch (about 30 KB an image at 100x100).
    """
    manifest = TfrecordsManifest.read_from(root)
    image_size = manifest.image_size
    files = [str(Path(root) / name) for name in manifest.splits[split].shards]
    # The manifest knows the count: Keras then knows an epoch's length and does not warn that the
    # input "ran out of data" at the end of the first one.
    dataset = tf.data.TFRecordDataset(files).apply(tf.data.experimental.assert_cardinality(manifest.splits[split].count))

    def decode(serialized):
        example = decode_example(serialized, image_size)
        return example["image"], example["label"], example["filename"]

    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if shuffle is not None:
        # Records are already shuffled on disk; this reshuffles every epoch.
        seed, buffer_size = shuffle
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)

    def to_inputs(image, label, filename):
        inputs = (tf.cast(image, tf.float32), tf.cast(label, tf.float32))
        return (*inputs, filename) if with_filenames else inputs

    return dataset.batch(batch_size).map(to_inputs).prefetch(tf.data.AUTOTUNE)


def run_over_split(fn: Callable[[tf.Tensor], object], root: Path, split: str, batch_size: int,
                   progress: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """fn (a model's predict_on_batch, say) over every batch of a split, in record order:
    (its outputs float32, stacked; labels int64; file names). progress: a progress bar's title."""
    outputs, labels, files = [], [], []
    total = TfrecordsManifest.read_from(root).splits[split].count
    with tqdm(total=total, desc=progress, unit="img", disable=progress is None) as bar:
        for images, batch_labels, batch_files in load_split(root, split, batch_size, with_filenames=True):
            outputs.append(np.asarray(fn(images), dtype=np.float32))
            labels.append(batch_labels.numpy().astype(np.int64))
            files.extend(name.decode("utf-8") for name in batch_files.numpy())
            bar.update(len(batch_labels))
    if not outputs:
        return np.zeros((0,), dtype=np.float32), np.zeros((0,), dtype=np.int64), files
    return np.concatenate(outputs), np.concatenate(labels), files
