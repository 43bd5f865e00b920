"""features: the frozen VGG16 base's outputs for every split, computed once and cached by DVC.

Writes data/features/<split>.npz (features float32, labels, file names) and manifest.json, so that
changing the transfer head's params retrains and re-evaluates only the head, in seconds. float32,
not float16: the head then sees exactly what the full model computes, so evaluate's probabilities
equal predict's. Reads train.transfer.weights and train.transfer.feature_layer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from stages import cli
from stages.config import FEATURES_DIR, SPLITS, TFRECORDS_DIR, load_params
from stages.fsutil import staged_dir, write_json_atomic


def extract(feature_model, tfrecords_root: Path, split: str,
            batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the frozen base over a split: (features float32 [n, h, w, c], labels int [n], file names [n]),
    in record order."""
    from stages.records import load_split, read_manifest

    total = read_manifest(tfrecords_root)["splits"][split]["count"]
    features, labels, files = [], [], []
    with tqdm(total=total, desc=f"features {split}", unit="img") as progress:
        for images, batch_labels, batch_files in load_split(tfrecords_root, split, batch_size, with_filenames=True):
            features.append(np.asarray(feature_model.predict_on_batch(images), dtype=np.float32))
            labels.append(batch_labels.numpy().astype(np.int64))
            files.extend(name.decode("utf-8") for name in batch_files.numpy())
            progress.update(len(batch_labels))
    return np.concatenate(features), np.concatenate(labels), np.array(files)


def feature_extractor(image_size: int, weights: str, feature_layer: str):
    """Raw 0-255 RGB -> VGG preprocessing -> frozen VGG16 base, cut at feature_layer."""
    import keras

    from stages.models.transfer import VGGPreprocess, make_base

    base = make_base((image_size, image_size, 3), weights, feature_layer)
    inputs = keras.Input(shape=(image_size, image_size, 3))
    return keras.Model(inputs, base(VGGPreprocess()(inputs), training=False), name="vgg16_features")


def load_features(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features float32, labels float32, file names) of one split, as the features stage saved them."""
    with np.load(Path(root) / f"{split}.npz") as data:
        return (data["features"].astype(np.float32), data["labels"].astype(np.float32),
                [str(name) for name in data["files"]])


def read_features_manifest(root: Path) -> dict:
    """The features stage's manifest: base weights and per-split counts and shapes."""
    return json.loads((Path(root) / "manifest.json").read_text())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    cli.quiet_tensorflow()
    params = load_params()
    from stages.models.transfer import describe_weights
    from stages.records import read_manifest

    weights, layer = params.train.transfer.weights, params.train.transfer.feature_layer
    extractor = feature_extractor(read_manifest(TFRECORDS_DIR)["image_size"], weights, layer)
    label = describe_weights(weights, layer)
    manifest = {"weights": weights, "feature_layer": layer, "weights_label": label, "splits": {}}
    with staged_dir(FEATURES_DIR) as staging:
        for split in SPLITS:
            features, labels, files = extract(extractor, TFRECORDS_DIR, split, args.batch_size)
            np.savez(staging / f"{split}.npz", features=features, labels=labels, files=files)
            manifest["splits"][split] = {"count": int(len(labels)), "shape": list(features.shape[1:])}
        write_json_atomic(staging / "manifest.json", manifest)
    print(f"features ({label}): " + ", ".join(
        f"{split} {manifest['splits'][split]['count']}" for split in SPLITS))


if __name__ == "__main__":
    cli.run(main)
