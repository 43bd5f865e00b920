"""This machine's speed at the pipeline's three kinds of work, measured in seconds on a few dozen images.

    speeds = probe(params)   # {"base_ms": ..., "prepare_ms": ..., "step_ms": ..., ...}, per image

- base_ms: the transfer model's frozen base (the cut of train.transfer.feature_layer), on the precision
  and engine `auto` (or params.yaml) resolves to here, wall milliseconds an image in batches of
  features.batch_size: the features stage's work. Random weights: the same arithmetic as any weights,
  and nothing to download.
- prepare_ms: decoding a JPEG face as the offline sample draws its test photos (64-260 px sides),
  converting it to RGB, resizing it to prepare.image_size and writing a PNG, in one process:
  prepare's work per image and core.
- step_ms: a training step of the baseline CNN on a batch of train.baseline.batch_size images: the
  work of train and evaluate, per image (the median of several timed runs of a few steps).
- steps_ms: the same for each model that trains on the images ({"baseline": ..., "improved": ...}),
  each with its own layers, batch size and augmentation (augmenting a batch is part of its step: on a
  CPU tf.data takes it from the same cores). train@<model> scales by its own model's step: the
  improved CNN's is mostly augmentation, which oneDNN does not run, so the baseline's step misjudges it.
- start_s: what a TensorFlow stage spends whatever its images, in seconds: a fresh Python importing
  TensorFlow and Keras as the stages do, building the baseline CNN, tracing its first training step and
  saving it. At scale 0.1 train and evaluate are mostly this (their fixed cost, fitted from the Xeon's
  scale-0.1 and scale-1 runs in benchmarks/results.json, is 10-17 s of a 14-55 s stage).

`make real-plan` compares these with the same measurement on the benchmark's machine (recorded in
benchmarks/results.json) to scale each of the benchmark's stage times to this machine.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stages.common.config import Params
from stages.common.errors import UserError

# The stages that run once per seed (params.yaml's seeds): train and evaluate, a training step's work.
PER_SEED_STAGES = ("train@", "evaluate@")
PREPARE_IMAGES = 32
BASE_BATCHES = 2
TRAIN_STEPS, TRAIN_REPEATS = 3, 7     # step_ms: the median of 7 timings of 3 steps (one is too short to trust)


def _per_image_ms(seconds: float, images: int) -> float:
    return round(1000 * seconds / images, 2)


def time_prepare(image_size: int, count: int = PREPARE_IMAGES) -> float:
    """Milliseconds an image for prepare's work on `count` JPEG faces like the offline sample's test photos."""
    from PIL import Image

    from stages.images.offline_sample import TEST_STUDIO, draw_face, jpeg_bytes
    from stages.images.reading import load_rgb

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="facegender-probe-") as folder:
        paths = []
        for index in range(count):
            face = draw_face(rng, ("Male", "Female")[index % 2], TEST_STUDIO)   # its own size, 64-260 px
            path = Path(folder) / f"{index}.jpg"
            path.write_bytes(jpeg_bytes(face, 80))
            paths.append(path)
        started = time.perf_counter()
        for path in paths:
            png = io.BytesIO()
            Image.fromarray(load_rgb(path, image_size)).save(png, format="PNG", compress_level=1)
        return _per_image_ms(time.perf_counter() - started, count)


def time_base(params: Params, threads: int) -> tuple[float, str, str]:
    """Milliseconds an image for the frozen base on this machine's engine, and (precision, engine)."""
    from stages.modelkit.engines import batch_runner
    from stages.models import transfer

    section = params.train["transfer"]
    precision, engine = transfer.resolve_base(section.get("precision", "auto"), section.get("engine", "auto"))
    size, batch = params.prepare.image_size, params.features.batch_size
    extractor = transfer.feature_extractor((size, size, 3), "none", section["feature_layer"], precision)
    run = batch_runner(extractor, engine, threads)
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    run(images)                                            # warm-up: tracing, allocation
    started = time.perf_counter()
    for _ in range(BASE_BATCHES):
        run(images)
    return _per_image_ms(time.perf_counter() - started, BASE_BATCHES * batch), precision, engine


def time_step(params: Params, model: str = "baseline") -> float:
    """Milliseconds an image for a training step of `model` (its batch augmented first, where its params
    augment: the work tf.data adds to every step)."""
    import tensorflow as tf

    from stages.modelkit import registry
    from stages.modelkit.augmentation import augment_images
    from stages.modelkit.fitting import compile_model

    family = registry.family(model, params)
    size, batch = params.prepare.image_size, family.params.batch_size
    network = family.build((size, size, 3))
    compile_model(network, family.params.optimizer, family.params.learning_rate)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    labels = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    augmentation = getattr(family.params, "augmentation", None)
    if augmentation is not None and augmentation.enabled:
        seed = tf.constant([0, 0], tf.int64)
        augment = tf.function(lambda batch: augment_images(batch, seed, augmentation))
    else:
        augment = tf.identity

    def step():
        network.train_on_batch(augment(images), labels)

    for _ in range(2):                                     # warm-up: tracing
        step()
    timings = []
    for _ in range(TRAIN_REPEATS):
        started = time.perf_counter()
        for _ in range(TRAIN_STEPS):
            step()
        timings.append(time.perf_counter() - started)
    return _per_image_ms(float(np.median(timings)), TRAIN_STEPS * batch)


def image_models(params: Params) -> list[str]:
    """The models of params.yaml that train on the images (ModelFamily's own fit): not the transfer
    model, whose head trains on the cached features."""
    from stages.modelkit import registry
    from stages.modelkit.family import ModelFamily

    return [name for name in params.train if type(registry.family(name, params)).fit is ModelFamily.fit]


def stage_start() -> None:
    """A TensorFlow stage's fixed work, which time_start times in a fresh process."""
    from stages.common import cli

    cli.quiet_tensorflow()
    from stages.common.config import load_params
    from stages.modelkit import registry, saving
    from stages.modelkit.fitting import compile_model

    params = load_params()
    family = registry.family("baseline", params)
    size, batch = params.prepare.image_size, family.params.batch_size
    model = family.build((size, size, 3))
    compile_model(model, family.params.optimizer, family.params.learning_rate)
    model.train_on_batch(np.zeros((batch, size, size, 3), np.float32), np.zeros((batch, 1), np.float32))
    with tempfile.TemporaryDirectory(prefix="facegender-probe-") as folder:
        saving.save_model(model, Path(folder) / "model.keras")


def time_start() -> float:
    """Seconds of stage_start in a fresh Python, as DVC starts every stage."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from stages.modelkit.probe import stage_start; stage_start()"],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"the probe's stage start (a fresh Python building the baseline CNN) failed: {last}")
    return round(time.perf_counter() - started, 2)


def probe(params: Params) -> dict:
    """This machine's milliseconds an image at the base, prepare and a training step (module docstring)."""
    from stages.common import distribute, machine

    threads = distribute.limit_threads()
    base_ms, precision, engine = time_base(params, threads)
    steps = {model: time_step(params, model) for model in image_models(params)}
    return {"base_ms": base_ms, "precision": precision, "engine": engine,
            "prepare_ms": time_prepare(params.prepare.image_size), "step_ms": steps.get("baseline") or time_step(params),
            "steps_ms": steps, "start_s": time_start(), "cores": os.cpu_count(), "cpu": machine.describe_cpu()}


# --- this machine against the benchmark's ---------------------------------------------------------

def estimate_seconds(stage: str, seconds: float, images_ratio: float, here: dict, there: dict, cores: int,
                     their_cores: int) -> float:
    """The seconds `stage` would take here, from its `seconds` on the benchmark's machine, for images_ratio
    times the benchmark's images. Train and evaluate, where both probes timed a stage's start (start_s): that fixed
    part scaled by the two starts, and only the rest by the images and the training step; otherwise all
    of it by the images and speed_ratio."""
    if stage.startswith(PER_SEED_STAGES) and here.get("start_s") and there.get("start_s"):
        fixed = min(there["start_s"], seconds)
        return (fixed * here["start_s"] / there["start_s"]
                + (seconds - fixed) * images_ratio * speed_ratio(stage, here, there, cores, their_cores))
    return seconds * images_ratio * speed_ratio(stage, here, there, cores, their_cores)


def speed_ratio(stage: str, here: dict, there: dict, cores: int, their_cores: int) -> float:
    """How much longer `stage` takes here than on the benchmark's machine, from the two machines'
    probes (stages/modelkit/probe.py): the features stage by the base, prepare and tfrecords by
    prepare's work (one process each, so also by the cores), train@<model> by that model's training
    step where both probes timed it (steps_ms), other train and evaluate stages by the baseline's step;
    the rest (download, inputs, compare, report: seconds of Python and DVC) by the cores."""
    if stage == "features":
        return here["base_ms"] / there["base_ms"]
    if stage in ("prepare", "tfrecords"):
        return here["prepare_ms"] / there["prepare_ms"] * their_cores / max(cores, 1)
    if stage.startswith("train@"):
        model = stage.removeprefix("train@").rsplit("-", 1)[0]
        ours, theirs = here.get("steps_ms", {}).get(model), there.get("steps_ms", {}).get(model)
        if ours and theirs:
            return ours / theirs
    if stage.startswith(PER_SEED_STAGES):
        return here["step_ms"] / there["step_ms"]
    return 1.0


def steps_text(here: dict, there: dict) -> str:
    """The training steps of both probes, per model where both timed each model's ("baseline 0.90 / 0.84, ...")."""
    models = [model for model in here.get("steps_ms", {}) if model in there.get("steps_ms", {})]
    if not models:
        return f"{here['step_ms']:.2f} / {there['step_ms']:.2f}"
    return ", ".join(f"{model} {here['steps_ms'][model]:.2f} / {there['steps_ms'][model]:.2f}" for model in models)


def speed_lines(run: dict, cores: int, layer: str | None, probe: dict | None) -> list[str]:
    """Where the time estimate comes from, in words."""
    there = run.get("probe")
    if not (probe and there):
        why = "" if there else " (the benchmark did not measure its machine: make bench again for a measured estimate)"
        return [f"  from the benchmark of {run['date']} ({run['machine']['cores']} cores; {cores} here), scaled by "
                f"images, cores and the VGG16 work up to {layer}{why}; the download depends on the connection"]
    return [f"  from the benchmark of {run['date']} on {there.get('cpu', 'its machine')}, scaled by images and by "
            "this machine's speed, measured just now (ms an image, here / there):",
            f"    frozen base up to {layer}: {probe['base_ms']:.1f} ({probe['precision']} on {probe['engine']}) / "
            f"{there['base_ms']:.1f} ({there['precision']} on {there['engine']}, up to {run.get('feature_layer')})",
            f"    training step: {steps_text(probe, there)}; prepare, one process: "
            f"{probe['prepare_ms']:.2f} / {there['prepare_ms']:.2f} ({cores} / {run['machine']['cores']} cores)",
            *([f"    a TensorFlow stage's start, seconds: {probe['start_s']:.1f} / {there['start_s']:.1f} (train and evaluate: "
                "this once, a training step per image)"] if probe.get("start_s") and there.get("start_s") else []),
            "  the download depends on the connection"]
