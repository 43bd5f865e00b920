"""export: a trained model for serving elsewhere, checked against itself.

    python -m stages.export baseline [--seed 2021]

Writes exports/<model>/ from a run of the model (dvc.yaml passes the first seed's: the run predict
uses, so a seed added to params.yaml's seeds reruns no export): a TensorFlow
SavedModel (saved_model/, signature "serve"), a LiteRT file in float32 (model.tflite) and, when its
validation AUC stays within export.quantized_auc_tolerance of the .keras model's, one with int8
weights (model_quantized.tflite). Each takes float32 RGB 0-255 pixels [batch, size, size, 3], the
preprocessing inside, and gives P(class 1). Every format is run on the validation images here (at most
export.checked_images of them, a seeded sample): its largest difference to the .keras model computed in
float32, its AUC, its size and its time per image
(export.json, and metrics/export/<model>.json in git). `facegender predict` takes any of the files.
The whole folder is written beside the old one, then renamed into place.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from stages.common import cli
from stages.common.atomic_files import staged_dir
from stages.common.config import PREPARED_DIR, Params, load_params
from stages.common.errors import UserError
from stages.contracts.exports import EXPORT_INFO, FORMAT_FILES, QUANTIZED_FILE, ExportInfo, FormatResult
from stages.contracts.prepared import PreparedSplit
from stages.contracts.training import ModelDir, TrainingInfo

INPUT = "float32 [batch, {size}, {size}, 3]: RGB pixels 0-255 (the preprocessing is inside); output P({positive})"


SAMPLE_SEED = 0   # which validation images are checked when the split holds more than export.checked_images
# Images per call when the formats are checked: their activations, not the models, set the stage's peak
# memory (at 64 a call export@transfer went over the benchmark's 2 GiB per-stage limit; 16 takes as long).
CHECK_BATCH = 16


def validation_images(root: Path, classes: Sequence[str], limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels [n, size, size, 3] float32 0-255, labels [n]: the class index) of data/prepared's val split:
    every image, or a seeded sample of `limit` (in the split's order) where it holds more."""
    with PreparedSplit(root, "val") as split:
        files = split.files()
        if not files:
            raise UserError(f"{split.path} holds no image: the exports cannot be checked; rerun prepare")
        if limit is not None and len(files) > limit:
            chosen = np.random.default_rng(SAMPLE_SEED).choice(len(files), size=limit, replace=False)
            files = [files[index] for index in sorted(chosen)]
        pixels = np.stack([np.asarray(Image.open(io.BytesIO(split.read(file))).convert("RGB")) for file in files])
    labels = np.array([classes.index(file.split("/")[1]) for file in files])
    return pixels.astype(np.float32), labels


def probabilities(run: Callable, images: np.ndarray, batch: int = CHECK_BATCH) -> np.ndarray:
    return np.concatenate([np.asarray(run(images[start:start + batch])).reshape(-1)
                           for start in range(0, len(images), batch)])


def ms_per_image(run: Callable, images: np.ndarray) -> float:
    """The median time of one image at batch 1 (after one warm-up call), in ms."""
    run(images[:1])
    times = []
    for image in images:
        start = time.perf_counter()
        run(image[None])
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def size_of(path: Path) -> int:
    return sum(each.stat().st_size for each in path.rglob("*") if each.is_file()) if path.is_dir() else path.stat().st_size


def write_formats(float32_model, folder: Path) -> None:
    """The SavedModel and both LiteRT files of a Keras model computing in float32, into `folder`. Both
    LiteRT files are converted from the one SavedModel, with the converter settings of Keras's own
    `export(format="litert")` (which writes a SavedModel of its own for each file: twice the work)."""
    import tensorflow as tf

    saved_model = str(folder / FORMAT_FILES["saved_model"])
    float32_model.export(saved_model, format="tf_saved_model", verbose=False)
    for kind, optimizations in (("tflite", []), ("tflite_quantized", [tf.lite.Optimize.DEFAULT])):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.experimental_enable_resource_variables = True
        converter.optimizations = optimizations
        (folder / FORMAT_FILES[kind]).write_bytes(converter.convert())


def measure(run: Callable, file: Path, images: np.ndarray, labels: np.ndarray, reference: np.ndarray,
            timed: int, threshold: float, found: np.ndarray | None = None) -> tuple[FormatResult, np.ndarray]:
    """One format's result (its file named relative to the export folder) and its validation probabilities
    (`found`: already computed by the same function)."""
    from stages.analysis.statistics import classification_metrics

    found = probabilities(run, images) if found is None else found
    auc = classification_metrics(labels, found, threshold)["roc_auc"]
    return FormatResult(file=file.name, bytes=size_of(file), ms_per_image=ms_per_image(run, images[:timed]),
                        max_difference=float(np.max(np.abs(found - reference))),
                        val_auc=None if auc is None else round(float(auc), 6)), found


def keep_quantized(keras_auc: float | None, quantized_auc: float | None, tolerance: float) -> tuple[bool, str]:
    """Whether the int8-weight file stays (its validation AUC within `tolerance` of the .keras model's), and why."""
    if keras_auc is None or quantized_auc is None or abs(quantized_auc - keras_auc) > tolerance + 1e-12:
        return False, (f"left out: validation AUC {quantized_auc} against the .keras model's {keras_auc}, more than "
                       f"export.quantized_auc_tolerance ({tolerance}) apart")
    return True, (f"kept: validation AUC {quantized_auc:.4f} against the .keras model's {keras_auc:.4f}, within "
                  f"export.quantized_auc_tolerance ({tolerance})")


def export_model(name: str, seed: int, params: Params, threads: int) -> ExportInfo:
    """Export the model's run with `seed` into exports/<name>/ and measure every format."""
    from stages.analysis.heatmaps import float32_copy
    from stages.common.machine import describe_cpu
    from stages.modelkit.exported import ExportedModel
    from stages.modelkit.trained import load_trained, read_settings

    classes, settings = list(params.prepare.classes), read_settings()
    model_path = ModelDir.of(name, seed).model
    trained = load_trained(model_path, settings, threads, name)
    images, labels = validation_images(PREPARED_DIR, classes, params.export.checked_images)
    timed, threshold = min(params.export.latency_images, len(images)), params.evaluate.threshold
    float32_model = float32_copy(trained.model)
    reference = probabilities(float32_model.predict_on_batch, images)
    # Where the .keras model already computes in float32 in Keras, its pass is the reference's: not run twice.
    same = trained.runner is trained.model and float32_model is trained.model
    results = {}
    results["keras"], _ = measure(trained.runner.predict_on_batch, model_path, images, labels, reference, timed,
                                  threshold, found=reference if same else None)
    with staged_dir(ExportInfo.folder(name)) as folder:
        write_formats(float32_model, folder)
        for kind, file in FORMAT_FILES.items():
            results[kind], _ = measure(ExportedModel(folder / file, threads).predict_on_batch, folder / file,
                                       images, labels, reference, timed, threshold)
        keep, quantized = keep_quantized(results["keras"].val_auc, results["tflite_quantized"].val_auc,
                                         params.export.quantized_auc_tolerance)
        if not keep:
            (folder / QUANTIZED_FILE).unlink()
        description = TrainingInfo.read(ModelDir(model_path.parent).training).description
        info = ExportInfo(model=name, seed=seed, description=description, classes=classes, threshold=threshold,
                          input=INPUT.format(size=trained.size, positive=classes[1]), machine=describe_cpu(),
                          validation_images=len(images), formats=results, quantized=quantized)
        info.write(folder / EXPORT_INFO)
    info.write(ExportInfo.metrics_path(name))
    return info


def main(argv: Sequence[str] | None = None) -> None:
    params = load_params()
    model, seed = cli.parse_run_arguments(argv, __doc__.splitlines()[0], params.model_names, params.seeds)
    cli.quiet_tensorflow()
    from stages.common.distribute import cpu_share

    info = export_model(model, seed, params, cpu_share())
    sizes = ", ".join(f"{kind} {result.bytes / 1e6:.1f} MB, {result.ms_per_image:.2f} ms" for kind, result in
                      info.formats.items())
    print(f"export: {ExportInfo.folder(model)} ({sizes}); quantized {info.quantized.split(':')[0]}")


if __name__ == "__main__":
    cli.run(main)
