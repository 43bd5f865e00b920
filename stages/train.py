"""train: fit one model (`python -m stages.train baseline`) on the training TFRecords.

Writes models/<model>/: model.keras, summary.txt (the layer table, as in the assignment's Figure 1),
history.csv (per-epoch loss and accuracy on training and validation, DVC plot data) and
training.json (epochs, time, parameter counts, layer table, classes).
The transfer model trains its head on the cached VGG16 features of the features stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from stages import cli
from stages.config import FEATURES_DIR, MODELS_DIR, TFRECORDS_DIR, FitParams, TransferParams, load_params
from stages.fsutil import staged_dir, write_json_atomic, write_text_atomic
from stages.errors import UserError


def make_optimizer(name: str, learning_rate: float):
    """The Keras optimizer called `name` with the given learning rate."""
    import keras

    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](learning_rate=learning_rate)


def layer_table(model) -> list[dict]:
    """One row per top-level layer: name, type, output shape and parameter count (Figure 1's columns)."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "?"
        rows.append({"name": layer.name, "type": type(layer).__name__, "output_shape": shape,
                     "parameters": int(layer.count_params()) if layer.built else 0})
    return rows


def summary_text(name: str, layers: list[dict], counts: dict[str, int]) -> str:
    """The layer table as plain text, in the layout of the assignment's Figure 1 (Keras's classic summary)."""
    width = max(34, *(len(f"{row['name']} ({row['type']})") + 2 for row in layers))
    rule = width + 26 + 12
    lines = [f'Model: "{name}"', "_" * rule, f"{'Layer (type)':<{width}}{'Output Shape':<26}{'Param #':>12}", "=" * rule]
    for row in layers:
        lines.append(f"{row['name'] + ' (' + row['type'] + ')':<{width}}{row['output_shape']:<26}{row['parameters']:>12,}")
    lines += ["=" * rule, f"Total params: {counts['total']:,}", f"Trainable params: {counts['trainable']:,}",
              f"Non-trainable params: {counts['non_trainable']:,}", "_" * rule]
    return "\n".join(lines) + "\n"


def parameter_counts(model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts."""
    import keras

    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    frozen = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    return {"total": trainable + frozen, "trainable": trainable, "non_trainable": frozen}


def training_callbacks(params: FitParams, history_csv: Path, append: bool = False) -> list:
    """CSV learning curve always; early stopping and LR-on-plateau when the model's params ask."""
    import keras

    callbacks = [keras.callbacks.CSVLogger(str(history_csv), append=append)]
    patience = getattr(params, "early_stopping_patience", 0)
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1))
    plateau = getattr(params, "reduce_lr_patience", 0)
    if plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=plateau, min_lr=1e-6, verbose=1))
    return callbacks


def compile_model(model, optimizer: str, learning_rate: float) -> None:
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])


def _verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2


def fit_images(model, params: FitParams, tfrecords_root: Path, out_dir: Path,
               epochs: int | None = None, initial_epoch: int = 0):
    """Fit a whole model end to end on the image TFRecords; the learning curve goes to history.csv."""
    from stages.records import load_split

    train = load_split(tfrecords_root, "train", params.batch_size, shuffle_seed=params.seed, cache=True)
    val = load_split(tfrecords_root, "val", params.batch_size, cache=True)
    return model.fit(train, validation_data=val, epochs=epochs or params.epochs, initial_epoch=initial_epoch,
                     callbacks=training_callbacks(params, out_dir / "history.csv", append=initial_epoch > 0),
                     verbose=_verbosity())


def fit_transfer(params: TransferParams, image_size: int, tfrecords_root: Path, features_root: Path,
                 out_dir: Path):
    """Train the transfer head on cached VGG16 features (or end to end when augmenting), optionally
    fine-tune the base's last block; return the full model (raw images in) and the number of epochs run."""
    import keras
    import tensorflow as tf

    from stages.features import load_features
    from stages.models import transfer

    base = transfer.make_base((image_size, image_size, 3), params.weights, params.feature_layer)
    if params.augmentation.enabled:
        # Augmented images change every epoch, so their features cannot be cached.
        model = transfer.make_model((image_size, image_size, 3), params, base=base)
        compile_model(model, params.optimizer, params.learning_rate)
        history = fit_images(model, params, tfrecords_root, out_dir)
    else:
        train_x, train_y, _ = load_features(features_root, "train")
        val_x, val_y, _ = load_features(features_root, "val")
        head = transfer.make_head(train_x.shape[1:], params)
        compile_model(head, params.optimizer, params.learning_rate)
        train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(
            len(train_y), seed=params.seed, reshuffle_each_iteration=True).batch(params.batch_size)
        val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(params.batch_size)
        history = head.fit(train, validation_data=val, epochs=params.epochs,
                           callbacks=training_callbacks(params, out_dir / "history.csv"), verbose=_verbosity())
        model = transfer.make_model((image_size, image_size, 3), params, base=base, head=head)
    epochs_run = len(history.history["loss"])
    if params.fine_tune.enabled:
        # Unfreeze the last block only, with a low learning rate; the curve continues in history.csv.
        base.trainable = True
        block = transfer.last_block(base)
        for layer in base.layers:
            layer.trainable = layer.name.startswith(block + "_")
        compile_model(model, params.optimizer, params.fine_tune.learning_rate)
        more = fit_images(model, params, tfrecords_root, out_dir,
                          epochs=epochs_run + params.fine_tune.epochs, initial_epoch=epochs_run)
        epochs_run += len(more.history["loss"])
    return model, epochs_run


def fit(name: str, params: FitParams, tfrecords_root: Path, out_dir: Path,
        features_root: Path = FEATURES_DIR) -> dict:
    """Build, compile and fit model `name`; save it and its logs into out_dir; return training info."""
    import keras

    from stages import models
    from stages.records import read_manifest

    # Seeds make CPU runs repeatable here; op determinism would halve the speed on 2 cores.
    keras.utils.set_random_seed(params.seed)
    manifest = read_manifest(tfrecords_root)
    size = manifest["image_size"]
    started = time.monotonic()
    if name == "transfer":
        model, epochs_run = fit_transfer(params, size, tfrecords_root, features_root, out_dir)
    else:
        model = models.build(name, params, (size, size, 3))
        compile_model(model, params.optimizer, params.learning_rate)
        epochs_run = len(fit_images(model, params, tfrecords_root, out_dir).history["loss"])
    seconds = time.monotonic() - started
    model.save(out_dir / "model.keras")
    layers, counts = layer_table(model), parameter_counts(model)
    write_text_atomic(out_dir / "summary.txt", summary_text(model.name, layers, counts))
    info = {
        "model": name,
        "classes": manifest["classes"],   # predict reads them with the model
        "epochs_requested": params.epochs,
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "parameters": counts,
        "layers": layers,
    }
    if name == "transfer":
        from stages.models.transfer import describe_weights

        info["weights"] = params.weights
        info["fine_tuned"] = params.fine_tune.enabled
        info["feature_layer"] = params.feature_layer
        info["weights_label"] = describe_weights(params.weights, params.feature_layer)
    write_json_atomic(out_dir / "training.json", info)
    return info


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    model = cli.parse_model_argument(argv, __doc__.splitlines()[0], params.model_names)
    if not (TFRECORDS_DIR / "manifest.json").is_file():
        raise UserError(f"{TFRECORDS_DIR}/manifest.json: not found; run the tfrecords stage first")
    model_params = getattr(params.train, model)
    with staged_dir(MODELS_DIR / model) as staging:
        info = fit(model, model_params, TFRECORDS_DIR, staging)
    print(f"trained {model}: {info['epochs_run']} epochs in {info['train_seconds']} s, "
          f"{info['parameters']['total']:,} parameters -> {MODELS_DIR / model}")


if __name__ == "__main__":
    cli.run(main)
