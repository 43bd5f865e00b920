"""features: the transfer model's frozen VGG16 base, run once over every split and cached by DVC.

Streams each split's images through the base and its outputs into sharded TFRecords,
data/features/<split>-NNNNN-of-NNNNN.tfrecord, with manifest.json: memory holds a batch, never a
split. Changing the transfer head's params then reruns the head's stages (train, evaluate, export),
not this one. The outputs are stored in the dtype the base computes in (train.transfer.precision),
unrounded: the head sees exactly what the full model computes, so evaluate's probabilities equal
predict's. train.transfer.precision and .engine may be auto: a rule of the CPU decides
(stages/modelkit/engine_choice.py: Keras bfloat16 or LiteRT float32 where each was measured faster,
float16 on a GPU, else Keras float32), and the manifest records what ran, on which CPU; train, evaluate and predict
follow it. The stage prints one line saying what runs the base and why: auto's rule or params.yaml.
Reads train.transfer.weights, .feature_layer, .precision and .engine, features.batch_size and .shard_size,
and distribute.strategy (this machine's GPUs share the batches; a multi-worker cluster's chief runs it alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

from stages.common import cli, distribute, machine
from stages.common.atomic_files import staged_dir
from stages.common.config import FEATURES_DIR, SPLITS, TFRECORDS_DIR, load_params
from stages.contracts.manifests import FeatureShards, FeaturesManifest, TfrecordsManifest

# The model whose frozen base this stage runs (its params: train.transfer).
MODEL = "transfer"


def extract_split(run_base: Callable, shape: list[int], tfrecords_root: Path, split: str, out_root: Path,
                  batch_size: int, shard_size: int) -> FeatureShards:
    """Run the frozen base (run_base: a batch of images -> its outputs) over a split's images, in record
    order, writing its outputs (each of `shape`) to shards."""
    from stages.contracts.tfrecord_io import encode_features_example, load_split, map_batches, write_shards

    count = TfrecordsManifest.read_from(tfrecords_root).splits[split].count

    def examples() -> Iterator[bytes]:
        batches = load_split(tfrecords_root, split, batch_size, with_filenames=True)
        for outputs, labels, files in map_batches(run_base, batches, count, progress=f"features {split}"):
            for row, label, name in zip(outputs, labels, files):
                yield encode_features_example(row, label, name)

    shards = write_shards(examples(), count, split, out_root, shard_size)
    return FeatureShards(count=count, shape=shape, shards=shards)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cli.quiet_tensorflow()
    params = load_params()
    records = TfrecordsManifest.read_from(TFRECORDS_DIR)
    from stages.modelkit import engine_choice, registry
    from stages.modelkit.engines import batch_runner
    from stages.modelkit import vgg16
    from stages.models import transfer

    family: transfer.Family = registry.family(MODEL, params)
    base = family.params
    threads = distribute.limit_threads()
    choice = engine_choice.choose_base(base.precision, base.engine)
    print(choice.line(), file=sys.stderr, flush=True)     # what runs the base and why: auto's rule or params.yaml
    precision, engine = choice.precision, choice.engine
    family.base_run = (precision, engine)            # what family.describe() labels
    with distribute.make_strategy(params.distribute.strategy, local=True).scope():
        extractor = vgg16.feature_extractor(records.input_shape, base.weights, base.feature_layer, precision)
    # Under a strategy of several replicas (GPUs) Keras splits each batch between them, every image once.
    run_base = batch_runner(extractor, engine, threads, distribute.predict_each_row_once(extractor))
    shape = list(extractor.output.shape[1:])
    with staged_dir(FEATURES_DIR) as staging:
        splits = {split: extract_split(run_base, shape, TFRECORDS_DIR, split, staging, params.features.batch_size,
                                       params.features.shard_size)
                  for split in SPLITS}
        dtype = "float32" if engine == "litert" else extractor.output.dtype
        manifest = FeaturesManifest(weights=base.weights, feature_layer=base.feature_layer, precision=precision,
                                    weights_label=family.describe(), dtype=dtype, engine=engine,
                                    machine=machine.describe_cpu(), splits=splits)
        manifest.write(staging / FeaturesManifest.name)
    print(f"features ({manifest.weights_label}): " + ", ".join(f"{split} {splits[split].count}" for split in SPLITS))


if __name__ == "__main__":
    cli.run(main)
