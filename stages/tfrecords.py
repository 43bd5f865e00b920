"""tfrecords: data/prepared/<split>.zip (<Class>/*.png) -> data/tfrecords/<split>-NNNNN-of-NNNNN.tfrecord.

Training examples are written in a seeded shuffled order so that a bounded shuffle buffer mixes
classes; val and test keep a sorted order. A manifest records counts and shard names.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Iterator, Sequence

from stages.common import cli
from stages.common.atomic_files import staged_dir
from stages.common.config import PREPARED_DIR, SPLITS, TFRECORDS_DIR, load_params
from stages.common.progress import progress_bar
from stages.contracts.manifests import SplitShards, TfrecordsManifest
from stages.contracts.prepared import PreparedSplit


def list_examples(prepared: PreparedSplit, classes: list[str]) -> list[tuple[str, int]]:
    """(image file, label index) for every image of a split, sorted by class then name."""
    return [(file, label) for label, name in enumerate(classes) for file in prepared.files(name)]


def order_examples(examples: list, split: str, seed: int) -> list:
    """Shuffle the training split with a fixed seed; keep the other splits as listed."""
    if split != "train":
        return list(examples)
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def write_split(examples: list[tuple[str, int]], prepared: PreparedSplit, out_root: Path, shard_size: int) -> list[str]:
    """Write a split's TFRecord shards into out_root, in the order given; return their file names."""
    from stages.contracts.tfrecord_io import encode_example, write_shards

    split = prepared.split

    def serialized() -> Iterator[bytes]:
        with progress_bar(len(examples), f"tfrecords {split}") as bar:
            for file, label in examples:
                yield encode_example(prepared.read(file), label, file)
                bar.update()

    return write_shards(serialized(), len(examples), split, out_root, shard_size)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cli.quiet_tensorflow()
    params = load_params()
    classes = params.prepare.classes
    splits = {}
    with staged_dir(TFRECORDS_DIR) as staging:
        for split in SPLITS:
            with PreparedSplit(PREPARED_DIR, split) as prepared:
                examples = order_examples(list_examples(prepared, classes), split, params.tfrecords.seed)
                shards = write_split(examples, prepared, staging, params.tfrecords.shard_size)
            per_class = {name: sum(1 for _, label in examples if label == index) for index, name in enumerate(classes)}
            splits[split] = SplitShards(count=len(examples), per_class=per_class, shards=shards)
        TfrecordsManifest(image_size=params.prepare.image_size, classes=classes, splits=splits).write(
            staging / TfrecordsManifest.name)
    print("tfrecords " + ", ".join(f"{split} {splits[split].count}" for split in SPLITS))


if __name__ == "__main__":
    cli.run(main)
