"""tfrecords: data/prepared/<split>/<Class>/*.png -> data/tfrecords/<split>-NNNNN-of-NNNNN.tfrecord.

Training examples are written in a seeded shuffled order so that a bounded shuffle buffer mixes
classes; val and test keep a sorted order. A manifest records counts and shard names.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from stages import cli
from stages.config import PREPARED_DIR, SPLITS, TFRECORDS_DIR, load_params
from stages.contracts import SplitShards, TfrecordsManifest, missing
from stages.fsutil import staged_dir


def list_examples(prepared_root: Path, classes: list[str], split: str) -> list[tuple[Path, int]]:
    """(png path, label index) for every image of a split, sorted by class then name."""
    examples = []
    for label, name in enumerate(classes):
        folder = prepared_root / split / name
        if not folder.is_dir():
            raise missing(folder, "prepare")
        examples.extend((path, label) for path in sorted(folder.glob("*.png")))
    return examples


def order_examples(examples: list, split: str, seed: int) -> list:
    """Shuffle the training split with a fixed seed; keep the other splits as listed."""
    if split != "train":
        return list(examples)
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def shard(items: list, shard_size: int) -> list[list]:
    """Cut items into consecutive shards of at most shard_size (at least one shard)."""
    return [items[start:start + shard_size] for start in range(0, len(items), shard_size)] or [[]]


def write_split(examples: list[tuple[Path, int]], split: str, out_root: Path,
                prepared_root: Path, shard_size: int) -> list[str]:
    """Write a split's TFRecord shards into out_root; return their file names."""
    import tensorflow as tf

    from stages.records import encode_example, shard_name

    shards = shard(examples, shard_size)
    names = []
    progress = tqdm(total=len(examples), desc=f"tfrecords {split}", unit="img")
    for index, members in enumerate(shards):
        name = shard_name(split, index, len(shards))
        with tf.io.TFRecordWriter(str(out_root / name)) as writer:
            for path, label in members:
                relative = path.relative_to(prepared_root).as_posix()
                writer.write(encode_example(path.read_bytes(), label, relative))
                progress.update()
        names.append(name)
    progress.close()
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cli.quiet_tensorflow()
    params = load_params()
    classes = params.prepare.classes
    splits = {}
    with staged_dir(TFRECORDS_DIR) as staging:
        for split in SPLITS:
            examples = order_examples(list_examples(PREPARED_DIR, classes, split), split, params.tfrecords.seed)
            shards = write_split(examples, split, staging, PREPARED_DIR, params.tfrecords.shard_size)
            per_class = {name: sum(1 for _, label in examples if label == index) for index, name in enumerate(classes)}
            splits[split] = SplitShards(count=len(examples), per_class=per_class, shards=shards)
        TfrecordsManifest(image_size=params.prepare.image_size, classes=classes, splits=splits).write(
            staging / TfrecordsManifest.name)
    print("tfrecords " + ", ".join(f"{split} {splits[split].count}" for split in SPLITS))


if __name__ == "__main__":
    cli.run(main)
