"""The TFRecord schemas (images, and the frozen base's features): the writers and the one reader
each, streaming: no reader or writer holds a whole split."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf

from stages.common.progress import progress_bar
from stages.contracts.manifests import FeaturesManifest, TfrecordsManifest

IMAGE_SCHEMA = {
    "image": tf.io.FixedLenFeature([], tf.string),     # PNG bytes, RGB, image_size x image_size
    "label": tf.io.FixedLenFeature([], tf.int64),      # index into prepare.classes
    "filename": tf.io.FixedLenFeature([], tf.string),  # path of the prepared file, for tracing
}


def serialize(data_key: str, data: bytes, label: int, filename: str) -> bytes:
    """One example of either schema: `data` under data_key ("image" or "features"), label, filename."""
    feature = {
        data_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode("utf-8")])),
    }
    # deterministic: the same example gives the same bytes in every process (protobuf map order varies otherwise).
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def encode_example(png: bytes, label: int, filename: str) -> bytes:
    """Serialize one example in the image schema above."""
    return serialize("image", png, label, filename)


def decode_example(serialized: tf.Tensor, image_size: int) -> dict[str, tf.Tensor]:
    """Parse one serialized example: image uint8 [size, size, 3], label int64, filename string."""
    parsed = tf.io.parse_single_example(serialized, IMAGE_SCHEMA)
    image = tf.io.decode_png(parsed["image"], channels=3)
    image = tf.ensure_shape(image, [image_size, image_size, 3])
    return {"image": image, "label": parsed["label"], "filename": parsed["filename"]}


# The features schema: one example per image, the base's output as raw bytes in the manifest's
# dtype and shape (data/features/manifest.json).
FEATURES_SCHEMA = {
    "features": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "filename": tf.io.FixedLenFeature([], tf.string),
}


def encode_features_example(features: np.ndarray, label: int, filename: str) -> bytes:
    """Serialize one image's base output (any dtype; its bytes as they are) in the features schema."""
    return serialize("features", np.ascontiguousarray(features).tobytes(), label, filename)


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def shard_count(count: int, shard_size: int) -> int:
    """Shards for `count` examples of at most shard_size each (at least one, maybe empty)."""
    return max(1, -(-count // shard_size))


def write_shards(examples: Iterable[bytes], count: int, split: str, out_root: Path, shard_size: int) -> list[str]:
    """Write `count` serialized examples, as they come, into a split's shards of at most shard_size;
    return the shard file names. Raises if the iterable yields another number of examples."""
    total = shard_count(count, shard_size)
    names = [shard_name(split, index, total) for index in range(total)]
    iterator = iter(examples)
    written = 0
    for index, name in enumerate(names):
        with tf.io.TFRecordWriter(str(Path(out_root) / name)) as writer:
            for _ in range(min(shard_size, count - index * shard_size)):
                example = next(iterator, None)
                if example is None:
                    raise ValueError(f"{split}: {written} examples, expected {count}")
                writer.write(example)
                written += 1
    if next(iterator, None) is not None:
        raise ValueError(f"{split}: more examples than expected {count}")
    return names


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
    images in memory (about 30 KB an image at 100x100), all of them decoded before this returns (_fill).
    """
    manifest = TfrecordsManifest.read_from(root)
    image_size = manifest.image_size

    def decode(serialized):
        example = decode_example(serialized, image_size)
        return example["image"], example["label"], example["filename"]

    return _batches(root, manifest.splits[split].shards, manifest.splits[split].count, decode, batch_size,
                    shuffle, with_filenames, cache)


def load_features(root: Path, split: str, batch_size: int, shuffle: tuple[int, int] | None = None,
                  with_filenames: bool = False) -> tf.data.Dataset:
    """Batches of (float32 base outputs, float32 label[, filename]) for one split of data/features,
    streamed from its shards: memory holds the shuffle buffer, never the split."""
    manifest = FeaturesManifest.read_from(root)
    shape, dtype = manifest.splits[split].shape, tf.dtypes.as_dtype(manifest.dtype)

    def decode(serialized):
        parsed = tf.io.parse_single_example(serialized, FEATURES_SCHEMA)
        features = tf.reshape(tf.io.decode_raw(parsed["features"], dtype), shape)
        return features, parsed["label"], parsed["filename"]

    return _batches(root, manifest.splits[split].shards, manifest.splits[split].count, decode, batch_size,
                    shuffle, with_filenames)


def _batches(root: Path, shards: list[str], count: int, decode, batch_size: int, shuffle: tuple[int, int] | None,
             with_filenames: bool, cache: bool = False) -> tf.data.Dataset:
    """The one reading pipeline: shards -> decode -> (cache) -> (shuffle) -> batches of float32 inputs."""
    files = [str(Path(root) / name) for name in shards]
    # The manifest knows the count: Keras then knows an epoch's length and does not warn that the
    # input "ran out of data" at the end of the first one.
    dataset = tf.data.TFRecordDataset(files).apply(tf.data.experimental.assert_cardinality(count))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = _options()
    if cache:
        dataset = dataset.cache()
        _fill(dataset, count, options)
    if shuffle is not None:
        # Records are already shuffled on disk; this reshuffles every epoch.
        seed, buffer_size = shuffle
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)

    def to_inputs(inputs, label, filename):
        batch = (tf.cast(inputs, tf.float32), tf.cast(label, tf.float32))
        return (*batch, filename) if with_filenames else batch

    batches = dataset.batch(batch_size).map(to_inputs).prefetch(tf.data.AUTOTUNE)
    return batches.with_options(options)


def _options() -> tf.data.Options:
    """The reading pipeline's options."""
    # Under a multi-worker strategy, worker i takes part i of every global batch (not whole shard
    # files): each step sees the same examples as on one machine (stages/common/distribute.py).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # No autotuning thread. With it, TensorFlow 2.21 made the caller wait, idle, for that thread's sleep
    # (up to a minute) whenever a pass over the data ended: the features stage sat idle after each split
    # (measured in benchmarks/history.md#the-input-pipeline). AUTOTUNE then means the cores for the parallel map
    # and prefetch's own growing buffer; training and evaluation take as long as with autotuning.
    options.autotune.enabled = False
    return options


def _fill(cached: tf.data.Dataset, count: int, options: tf.data.Options) -> None:
    """Read a cache()d dataset through once, now: its memory cache is then whole before anything else
    reads it, and every later iterator only reads the cache.

    Left to the first pass, the cache is filled by whichever iterator reads first, and an iterator
    dropped part-way can leave it short for good. Under any tf.distribute strategy Keras drops one on
    every fit and evaluate: it draws one batch from a fresh iterator to build the model (keras/src/
    backend/tensorflow/trainer.py, _maybe_symbolic_build). Tearing down that iterator's prefetching
    pipeline while it is filling the cache sometimes ends the fill as if the data had ended (TensorFlow
    2.21: "Finalizing the cache because EOF has been reached" after 38 or 39 of 40 images): every later
    pass then reads a cache without the last images (validation scored 38 of 40 images, every epoch)."""
    seen = int(cached.with_options(options).reduce(np.int64(0), lambda total, _: total + 1))
    if seen != count:
        raise ValueError(f"cached {seen} examples, expected {count}")


def map_batches(fn: Callable[[tf.Tensor], object], batches: tf.data.Dataset, total: int,
                progress: str | None = None) -> Iterable[tuple[np.ndarray, np.ndarray, list[str]]]:
    """fn (a model's predict_on_batch, say) over batches of (inputs, labels, file names), in order,
    yielding (its outputs as numpy, labels int64, file names) per batch. progress: a bar's title."""
    with progress_bar(total, progress) as bar:
        for inputs, batch_labels, batch_files in batches:
            yield (np.asarray(fn(inputs)), batch_labels.numpy().astype(np.int64),
                   [name.decode("utf-8") for name in batch_files.numpy()])
            bar.update(len(batch_labels))


def collect(results: Iterable[tuple[np.ndarray, np.ndarray, list[str]]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """map_batches' results stacked: (outputs float32, labels int64, file names). For small outputs
    (probabilities), not for a split's features."""
    outputs, labels, files = [], [], []
    for batch_outputs, batch_labels, batch_files in results:
        outputs.append(batch_outputs.astype(np.float32))
        labels.append(batch_labels)
        files.extend(batch_files)
    if not outputs:
        return np.zeros((0,), dtype=np.float32), np.zeros((0,), dtype=np.int64), files
    return np.concatenate(outputs), np.concatenate(labels), files


def run_over_split(fn: Callable[[tf.Tensor], object], root: Path, split: str, batch_size: int,
                   progress: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """fn over every batch of a split's images, in record order, stacked (see collect)."""
    total = TfrecordsManifest.read_from(root).splits[split].count
    return collect(map_batches(fn, load_split(root, split, batch_size, with_filenames=True), total, progress))
