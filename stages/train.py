"""train: fit one model (`python -m stages.train baseline`) on the training TFRecords.

Writes models/<model>/: model.keras, summary.txt (Keras's table), history.csv (per-epoch loss
and accuracy on training and validation, DVC plot data) and training.json (epochs, time, sizes).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Sequence

from stages import cli
from stages.config import MODELS_DIR, TFRECORDS_DIR, FitParams, load_params
from stages.fsutil import staged_dir, write_json_atomic, write_text_atomic


def make_optimizer(name: str, learning_rate: float):
    """The Keras optimizer called `name` with the given learning rate."""
    import keras

    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate)


def model_summary(model) -> str:
    """Keras's summary table as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=90)
    return "\n".join(lines) + "\n"


def parameter_counts(model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts."""
    import keras

    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    frozen = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    return {"total": trainable + frozen, "trainable": trainable, "non_trainable": frozen}


def fit(name: str, params: FitParams, tfrecords_root: Path, out_dir: Path) -> dict:
    """Build, compile and fit model `name`; save it and its logs into out_dir; return training info."""
    import keras

    from stages import models
    from stages.records import load_split, read_manifest

    # Seeds make CPU runs repeatable here; op determinism would halve the speed on 2 cores.
    keras.utils.set_random_seed(params.seed)
    size = read_manifest(tfrecords_root)["image_size"]
    model = models.build(name, params, (size, size, 3))
    model.compile(
        optimizer=make_optimizer(params.optimizer, params.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    train = load_split(tfrecords_root, "train", params.batch_size, shuffle_seed=params.seed, cache=True)
    val = load_split(tfrecords_root, "val", params.batch_size, cache=True)
    callbacks = [keras.callbacks.CSVLogger(str(out_dir / "history.csv"))]
    started = time.monotonic()
    history = model.fit(
        train,
        validation_data=val,
        epochs=params.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    seconds = time.monotonic() - started
    model.save(out_dir / "model.keras")
    write_text_atomic(out_dir / "summary.txt", model_summary(model))
    info = {
        "model": name,
        "epochs_requested": params.epochs,
        "epochs_run": len(history.history["loss"]),
        "train_seconds": round(seconds, 1),
        "parameters": parameter_counts(model),
    }
    write_json_atomic(out_dir / "training.json", info)
    return info


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=params.model_names, help="a model named in params.yaml's train section")
    args = parser.parse_args(argv)
    if not (TFRECORDS_DIR / "manifest.json").is_file():
        raise cli.UserError(f"{TFRECORDS_DIR}/manifest.json: not found; run the tfrecords stage first")
    with staged_dir(MODELS_DIR / args.model) as staging:
        info = fit(args.model, getattr(params.train, args.model), TFRECORDS_DIR, staging)
    print(f"trained {args.model}: {info['epochs_run']} epochs in {info['train_seconds']} s, "
          f"{info['parameters']['total']:,} parameters -> {MODELS_DIR / args.model}")


if __name__ == "__main__":
    cli.run(main)
