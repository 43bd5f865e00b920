"""train: fit one model with one of params.yaml's seeds (`python -m stages.train <model> --seed <seed>`).

Writes models/<model>/<seed>/ (DVC cache): model.keras, summary.txt (the layer table, as in the
assignment's Figure 1) and training.json (epochs, parameter counts, layer table, classes, the model's
own details); in git: plots/learning_curves/<model>/<seed>/ (loss and accuracy per epoch on training
and validation) and metrics/train/<model>/<seed>.json (epochs run, the best epoch's values). Under
dvc repro the learning curves are also rewritten after every epoch, so `dvc plots show` follows a training in progress.
What the model learns from and how is its module's business (stages/models/<model>.py).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from stages.common import cli, distribute
from stages.common.atomic_files import atomic_file, staged_dir, write_text_atomic
from stages.common.config import TFRECORDS_DIR, load_params
from stages.common.machine import cpu_info
from stages.contracts.manifests import TfrecordsManifest
from stages.contracts.training import (LayerRow, LearningCurves, ModelDir, ParameterCounts, TrainedOn, TrainingInfo,
                                       TrainMetrics)

if TYPE_CHECKING:  # Keras loads only when a model is trained
    from stages.modelkit.family import DataRoots, ModelFamily


def layer_table(model) -> list[LayerRow]:
    """One row per top-level layer: name, type, output shape and parameter count (Figure 1's columns)."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "?"
        rows.append(LayerRow(name=layer.name, type=type(layer).__name__, output_shape=shape,
                             parameters=int(layer.count_params()) if layer.built else 0))
    return rows


def summary_text(name: str, layers: list[LayerRow], counts: ParameterCounts) -> str:
    """The layer table as plain text, in the layout of the assignment's Figure 1 (Keras's classic summary)."""
    width = max(34, *(len(f"{row.name} ({row.type})") + 2 for row in layers))
    rule = width + 26 + 12
    lines = [f'Model: "{name}"', "_" * rule, f"{'Layer (type)':<{width}}{'Output Shape':<26}{'Param #':>12}", "=" * rule]
    for row in layers:
        lines.append(f"{row.name + ' (' + row.type + ')':<{width}}{row.output_shape:<26}{row.parameters:>12,}")
    lines += ["=" * rule, f"Total params: {counts.total:,}", f"Trainable params: {counts.trainable:,}",
              f"Non-trainable params: {counts.non_trainable:,}", "_" * rule]
    return "\n".join(lines) + "\n"


def parameter_counts(model) -> ParameterCounts:
    """Total, trainable and non-trainable parameter counts."""
    import keras

    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    frozen = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    return ParameterCounts(total=trainable + frozen, trainable=trainable, non_trainable=frozen)


def training_metrics(history: pd.DataFrame, trained_on: TrainedOn | None = None) -> TrainMetrics:
    """Epochs run, and the values at the epoch with the lowest validation loss (what early stopping keeps)."""
    best = history.loc[history["val_loss"].idxmin()]
    return TrainMetrics(epochs_run=len(history), best_epoch=int(best["epoch"]) + 1, loss=float(best["loss"]),
                        accuracy=float(best["accuracy"]), val_loss=float(best["val_loss"]),
                        val_accuracy=float(best["val_accuracy"]), trained_on=trained_on)


def this_machine() -> TrainedOn:
    """The CPU (model and flags) and TensorFlow version training runs on here."""
    import tensorflow as tf

    model, flags = cpu_info()
    return TrainedOn(cpu=model, flags=flags, cores=os.cpu_count() or 1, tensorflow=tf.__version__)


def fit(family: ModelFamily, data: DataRoots, model_dir: Path, curves_dir: Path,
        strategy=None) -> tuple[TrainingInfo, TrainMetrics]:
    """Fit one model on `data` (under a tf.distribute strategy, if given); save it into model_dir and
    its learning curves into curves_dir; return its training record and metrics. Nothing written
    depends on the clock: same inputs, same bytes."""
    import contextlib

    import keras

    from stages.modelkit.saving import save_model

    # Seeds make CPU runs repeatable here; op determinism would halve the speed on 2 cores.
    keras.utils.set_random_seed(family.params.seed)
    manifest = TfrecordsManifest.read_from(data.tfrecords)
    files = ModelDir(model_dir)
    log = model_dir / "history.csv"   # Keras's CSVLogger, epoch by epoch (fine-tuning appends)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model, epochs_run = family.fit(data, manifest.input_shape, log)
    history = pd.read_csv(log)
    log.unlink()
    LearningCurves(curves_dir).write(history)
    save_model(model, files.model)
    layers, counts = layer_table(model), parameter_counts(model)
    write_text_atomic(files.summary, summary_text(model.name, layers, counts))
    info = TrainingInfo(
        model=family.name,
        description=family.describe(),
        classes=manifest.classes,   # predict reads them with the model
        epochs_requested=family.params.epochs,
        epochs_run=epochs_run,
        parameters=counts,
        layers=layers,
        details=family.details(),
        more_compute=family.more_compute(),
    )
    info.write(files.training)
    return info, training_metrics(history, this_machine())


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    name, seed = cli.parse_run_arguments(argv, __doc__.splitlines()[0], params.model_names, params.seeds)
    TfrecordsManifest.read_from(TFRECORDS_DIR)  # a missing input fails here, before Keras starts
    from stages.modelkit import registry
    from stages.modelkit.family import DataRoots
    from stages.modelkit.fitting import curves_during_training

    family = registry.family(name, params, seed)
    threads = distribute.limit_threads()
    strategy = distribute.make_strategy(params.distribute.strategy)
    target = ModelDir.of(name, seed).root
    started = time.monotonic()
    if not distribute.is_chief():
        # Another worker of a multi-worker run: it trains in step with the chief, which alone writes.
        with tempfile.TemporaryDirectory(prefix=f"{name}-worker-") as scratch:
            model_dir, curves_dir = Path(scratch) / "model", Path(scratch) / "curves"
            model_dir.mkdir()
            curves_dir.mkdir()
            info, _ = fit(family, DataRoots(), model_dir, curves_dir, strategy)
        print(f"trained {name} as a worker: {info.epochs_run} epochs in {time.monotonic() - started:.0f} s; "
              "the chief writes the outputs")
        return
    curves = LearningCurves.of(name, seed).root
    # Under DVC, which removed this stage's outputs before running it, the learning curves are written
    # as training goes (dvc plots show follows it); by hand, earlier outputs stay until the end.
    live = curves if os.environ.get("DVC_STAGE") else None
    # Outputs change together: everything is staged (metrics file first), then renamed into place.
    with (staged_dir(target) as model_dir, staged_dir(curves) as curves_dir,
          atomic_file(TrainMetrics.path(name, seed), "w") as metrics_file, curves_during_training(live)):
        info, metrics = fit(family, DataRoots(), model_dir, curves_dir, strategy)
        metrics_file.write(metrics.text())
    replicas = strategy.num_replicas_in_sync
    print(f"trained {name} (seed {seed}): {info.epochs_run} epochs in {time.monotonic() - started:.0f} s, "
          f"{info.parameters.total:,} parameters" + (f", {replicas} replicas" if replicas > 1 else "")
          + (f", CPU threads {threads} of {distribute.cpu_count()}" if distribute.JOBS_VARIABLE in os.environ else "")
          + f" -> {target}")


if __name__ == "__main__":
    cli.run(main)
