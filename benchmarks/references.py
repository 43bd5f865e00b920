"""The references the bench measures the pipeline against, each run in its own process (measured
by benchmarks.measure) inside the bench's scratch project:

    python -m benchmarks.references naive-prepare OUT      one process, PIL: open -> RGB -> resize -> PNG
    python -m benchmarks.references bare-predict COUNT     keras predict on an in-memory array vs the stage
    python -m benchmarks.references epoch                  a baseline epoch: TFRecords vs in-memory arrays

Each prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Sequence

from stages.common.config import PREPARED_DIR, RAW_DIR, SPLITS, TFRECORDS_DIR, load_params


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def naive_prepare(out: Path) -> dict:
    """What a first script does: one process, every image opened, converted, resized and saved as PNG
    with Pillow's defaults. Same inputs as the prepare stage (its split folders); unreadable files skipped."""
    from PIL import Image

    from stages.images.reading import find_class_folders, is_image_file

    params = load_params().prepare
    written = failed = 0
    for split in SPLITS:
        source = params.splits[split]
        folders = find_class_folders(RAW_DIR / source.dataset, list(source.classes), within=source.folder)
        for name, folder in folders.items():
            target = out / split / source.classes[name]
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.iterdir()):
                if not is_image_file(path):
                    continue
                try:
                    with Image.open(path) as image:
                        image.convert("RGB").resize((params.image_size, params.image_size)).save(
                            target / (path.stem + ".png"))
                    written += 1
                except Exception:  # noqa: BLE001 - a first script skips what it cannot read
                    failed += 1
    return {"images": written, "unreadable": failed}


def load_prepared(split: str, count: int):
    """Up to `count` prepared images of a split as one uint8 array [n, size, size, 3]."""
    import io

    import numpy as np
    from PIL import Image

    from stages.contracts.prepared import PreparedSplit

    with PreparedSplit(PREPARED_DIR, split) as prepared:
        files = prepared.files()[:count]
        return np.stack([np.asarray(Image.open(io.BytesIO(prepared.read(file))).convert("RGB")) for file in files])


# What bare_predict runs, by its key in results.json: each Keras precision, and LiteRT in float32.
BARE_KINDS = {"float32": ("float32", "keras"), "bfloat16": ("bfloat16", "keras"), "float16": ("float16", "keras"),
              "litert": ("float32", "litert")}


def bare_key(precision: str, engine: str) -> str:
    """bare_predict's key for the base as the features stage ran it."""
    return "litert" if engine == "litert" else precision


def bare_predict(count: int) -> dict:
    """The features stage's frozen base run on images already in memory (loading excluded from the
    time), batch by batch as the features stage calls it, for each compute precision in Keras and for
    LiteRT: seconds and CPU seconds per image. A kind this machine cannot run (bfloat16 with oneDNN
    capped below its bfloat16 kernels) records why."""
    from stages.common import cli, distribute
    from stages.common.errors import UserError

    cli.quiet_tensorflow()
    from stages.modelkit import engine_choice, registry
    from stages.modelkit.engines import batch_runner
    from stages.modelkit import vgg16

    params = load_params()
    family = registry.family("transfer", params)
    images = load_prepared("test", count).astype("float32")
    batch = params.features.batch_size
    threads = distribute.limit_threads()
    results = {}
    for key, (precision, engine) in BARE_KINDS.items():
        try:
            engine_choice.resolve_base(precision, engine)
        except UserError as error:
            results[key] = {"failed": str(error)}
            continue
        extractor = vgg16.feature_extractor(images.shape[1:], family.params.weights,
                                               family.params.feature_layer, precision)
        run = batch_runner(extractor, engine, threads)
        run(images[:batch])                                   # build and trace once
        wall, cpu = time.perf_counter(), cpu_seconds()
        for start in range(0, len(images), batch):
            run(images[start:start + batch])
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        results[key] = {"images": len(images), "wall_ms_per_image": round(1000 * wall / len(images), 2),
                        "cpu_ms_per_image": round(1000 * cpu / len(images), 2)}
    return results


def epoch(epochs: int = 4) -> dict:
    """One epoch of the baseline CNN from the TFRecords (as train@baseline reads them) against the same
    epoch from numpy arrays already in memory: the fastest of the epochs after the first (tracing,
    filling the cache)."""
    from stages.common import cli

    cli.quiet_tensorflow()
    import keras
    import numpy as np

    from stages.contracts.tfrecord_io import load_split
    from stages.modelkit import registry
    from stages.modelkit.fitting import compile_model

    params = load_params()
    family = registry.family("baseline", params)
    fit = family.params

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    def run(*data, **options) -> float:
        keras.utils.set_random_seed(fit.seed)
        model = family.build(tuple(images.shape[1:]))
        compile_model(model, fit.optimizer, fit.learning_rate)
        times = EpochTimes()
        model.fit(*data, epochs=epochs, verbose=0, callbacks=[times], **options)
        return float(np.min(times.seconds[1:]))

    arrays = [(x.numpy(), y.numpy()) for x, y in load_split(TFRECORDS_DIR, "train", 256)]
    images = np.concatenate([x for x, _ in arrays])
    labels = np.concatenate([y for _, y in arrays])
    records = run(load_split(TFRECORDS_DIR, "train", fit.batch_size, shuffle=(fit.seed, fit.shuffle_buffer),
                             cache=True), shuffle=False)
    in_memory = run(images, labels, batch_size=fit.batch_size, shuffle=True)    # Keras's own numpy path
    return {"images": int(len(labels)), "tfrecords_s_per_epoch": round(records, 2),
            "in_memory_s_per_epoch": round(in_memory, 2), "ratio": round(records / in_memory, 3)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="reference", required=True)
    commands.add_parser("naive-prepare").add_argument("out", type=Path)
    commands.add_parser("bare-predict").add_argument("count", type=int)
    commands.add_parser("epoch")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.reference == "naive-prepare":
        result = naive_prepare(args.out)
    elif args.reference == "bare-predict":
        result = bare_predict(args.count)
    else:
        result = epoch()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
