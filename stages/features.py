"""features: the transfer model's frozen VGG16 base, run once over every split and cached by DVC.

Writes data/features/<split>.npz (features float32, labels, file names) and manifest.json, so that
changing the transfer head's params retrains and re-evaluates only the head, in seconds. float32,
not float16: the head then sees exactly what the full model computes, so evaluate's probabilities
equal predict's. Reads train.transfer.weights and .feature_layer, and features.batch_size.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from stages import cli
from stages.config import FEATURES_DIR, SPLITS, TFRECORDS_DIR, load_params
from stages.contracts import FeaturesManifest, FeatureSplitShape, TfrecordsManifest, write_features
from stages.fsutil import staged_dir

# The model whose frozen base this stage runs (its params: train.transfer).
MODEL = "transfer"


def extract(feature_model, tfrecords_root: Path, split: str,
            batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run the frozen base over a split: (features float32 [n, h, w, c], labels int [n], file names [n]),
    in record order."""
    from stages.records import run_over_split

    return run_over_split(feature_model.predict_on_batch, tfrecords_root, split, batch_size,
                          progress=f"features {split}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    cli.quiet_tensorflow()
    params = load_params()
    records = TfrecordsManifest.read_from(TFRECORDS_DIR)
    from stages import models
    from stages.models import transfer

    family = models.family(MODEL, params)
    weights, layer = family.params.weights, family.params.feature_layer
    extractor = transfer.feature_extractor(records.input_shape, weights, layer)
    shapes = {}
    with staged_dir(FEATURES_DIR) as staging:
        for split in SPLITS:
            features, labels, files = extract(extractor, TFRECORDS_DIR, split, params.features.batch_size)
            write_features(staging, split, features, labels, files)
            shapes[split] = FeatureSplitShape(count=len(labels), shape=list(features.shape[1:]))
        manifest = FeaturesManifest(weights=weights, feature_layer=layer, weights_label=family.describe(),
                                    splits=shapes)
        manifest.write(staging / FeaturesManifest.name)
    print(f"features ({manifest.weights_label}): " + ", ".join(f"{split} {shapes[split].count}" for split in SPLITS))


if __name__ == "__main__":
    cli.run(main)
