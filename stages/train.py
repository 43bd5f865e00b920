"""train: fit one model (`python -m stages.train <model>`), a model named in params.yaml's train section.

Writes models/<model>/: model.keras, summary.txt (the layer table, as in the assignment's Figure 1),
history.csv (per-epoch loss and accuracy on training and validation, DVC plot data) and
training.json (epochs, time, parameter counts, layer table, classes, the model's own details).
What the model learns from and how is its module's business (stages/models/<model>.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from stages import cli
from stages.config import TFRECORDS_DIR, load_params
from stages.contracts import LayerRow, ModelDir, ParameterCounts, TfrecordsManifest, TrainingInfo
from stages.fsutil import staged_dir, write_text_atomic

if TYPE_CHECKING:  # Keras loads only when a model is trained
    from stages.models.family import DataRoots, ModelFamily


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


def fit(family: ModelFamily, data: DataRoots, out_dir: Path) -> TrainingInfo:
    """Fit one model on `data`; save it and its logs into out_dir; return its training record."""
    import keras

    # Seeds make CPU runs repeatable here; op determinism would halve the speed on 2 cores.
    keras.utils.set_random_seed(family.params.seed)
    manifest = TfrecordsManifest.read_from(data.tfrecords)
    files = ModelDir(out_dir)
    started = time.monotonic()
    model, epochs_run = family.fit(data, manifest.input_shape, files.history)
    seconds = time.monotonic() - started
    model.save(files.model)
    layers, counts = layer_table(model), parameter_counts(model)
    write_text_atomic(files.summary, summary_text(model.name, layers, counts))
    info = TrainingInfo(
        model=family.name,
        description=family.describe(),
        classes=manifest.classes,   # predict reads them with the model
        epochs_requested=family.params.epochs,
        epochs_run=epochs_run,
        train_seconds=round(seconds, 1),
        parameters=counts,
        layers=layers,
        details=family.details(),
    )
    info.write(files.training)
    return info


def main(argv: Sequence[str] | None = None) -> None:
    cli.quiet_tensorflow()
    params = load_params()
    name = cli.parse_model_argument(argv, __doc__.splitlines()[0], params.model_names)
    TfrecordsManifest.read_from(TFRECORDS_DIR)  # a missing input fails here, before Keras starts
    from stages import models
    from stages.models.family import DataRoots

    family = models.family(name, params)
    target = ModelDir.of(name).root
    with staged_dir(target) as staging:
        info = fit(family, DataRoots(), staging)
    print(f"trained {name}: {info.epochs_run} epochs in {info.train_seconds} s, "
          f"{info.parameters.total:,} parameters -> {target}")


if __name__ == "__main__":
    cli.run(main)
