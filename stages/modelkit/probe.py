"""This machine's speed at the pipeline's three kinds of work, measured in seconds on a few dozen images.

    speeds = probe(params)   # {"base_ms": ..., "step_ms": ..., "start_s": ..., ...}

- base_ms: the transfer model's frozen base (the cut of train.transfer.feature_layer), on the precision
  and engine `auto` (or params.yaml) resolves to here, wall milliseconds an image in batches of
  features.batch_size: the features stage's work. Random weights: the same arithmetic as any weights,
  and nothing to download.
- step_ms: a training step of the baseline CNN on a batch of train.baseline.batch_size images: the
  work of train and evaluate, per image (3 steps a round).
- spread: per figure, its slowest round over its fastest: how steady this machine was meanwhile.
- start_s: what a TensorFlow stage spends whatever its images, in seconds: a fresh Python importing
  TensorFlow and Keras as the stages do, building the baseline CNN, tracing its first training step and
  saving it. At scale 0.1 train and evaluate are mostly this (their fixed cost, fitted from the Xeon's
  scale-0.1 and scale-1 runs in benchmarks/results.json, is 10-17 s of a 14-55 s stage).

Each per-image figure is the median of ROUNDS rounds that take turns over the kinds of work, and
start_s the mean of STARTS starts, one before the rounds and one after: a slow spell of the machine
then moves one round of each, not the whole of one figure.

`make real-plan` compares these with the same measurement on the benchmark's machine (recorded in
benchmarks/results.json) to scale each of the benchmark's stage times to this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from stages.common.config import Params
from stages.common.errors import UserError

# The stages that run once per seed (params.yaml's seeds): train and evaluate, a training step's work.
PER_SEED_STAGES = ("train@", "evaluate@")
# Every figure is the median of ROUNDS timings, and the rounds take turns (base, training steps,
# then again): this VM-like machine has slow spells of several seconds (one core, or both
# slower), which then land in one round of every kind of work rather than in all timings of one.
ROUNDS = 5
TRAIN_STEPS = 3                       # a round of step_ms: 3 steps (one is too short to trust)
STARTS = 2                            # start_s: the mean of 2 fresh starts, one before the rounds, one after


def _per_image_ms(seconds: float, images: int) -> float:
    return round(1000 * seconds / images, 2)


def _median_ms(timings: list[float], images: int) -> float:
    return _per_image_ms(float(np.median(timings)), images)


def base_timer(params: Params, threads: int) -> tuple[Callable[[], float], int, str, str]:
    """A function timing the frozen base on this machine's engine over one batch of features.batch_size
    images (seconds), the batch's images, and (precision, engine)."""
    from stages.modelkit import engine_choice
    from stages.modelkit.engines import batch_runner
    from stages.modelkit import vgg16

    section = params.train["transfer"]
    precision, engine = engine_choice.resolve_base(section.get("precision", "auto"), section.get("engine", "auto"))
    size, batch = params.prepare.image_size, params.features.batch_size
    extractor = vgg16.feature_extractor((size, size, 3), "none", section["feature_layer"], precision)
    run = batch_runner(extractor, engine, threads)
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    run(images)                                            # warm-up: tracing, allocation

    def timed() -> float:
        started = time.perf_counter()
        run(images)
        return time.perf_counter() - started

    return timed, batch, precision, engine


def step_timer(params: Params) -> tuple[Callable[[], float], int]:
    """A function timing TRAIN_STEPS training steps of the baseline CNN, in seconds, and the images they take."""
    from stages.modelkit import registry
    from stages.modelkit.fitting import compile_model

    family = registry.family("baseline", params)
    size, batch = params.prepare.image_size, family.params.batch_size
    network = family.build((size, size, 3))
    compile_model(network, family.params.optimizer, family.params.learning_rate)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    for _ in range(2):                                     # warm-up: tracing
        network.train_on_batch(images, labels)

    def timed() -> float:
        started = time.perf_counter()
        for _ in range(TRAIN_STEPS):
            network.train_on_batch(images, labels)
        return time.perf_counter() - started

    return timed, TRAIN_STEPS * batch


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
    """This machine's milliseconds an image at the base and a training step, and a stage's start in
    seconds (module docstring): medians of interleaved rounds (ROUNDS)."""
    from stages.common import distribute, machine

    threads = distribute.limit_threads()
    starts = [time_start()]
    base, base_images, precision, engine = base_timer(params, threads)
    step, step_images = step_timer(params)
    timings: dict[str, list[float]] = {"base": [], "step": []}
    for _ in range(ROUNDS):
        timings["base"].append(base())
        timings["step"].append(step())
    starts += [time_start() for _ in range(STARTS - 1)]
    # How much the machine's speed moved during the probe: the plan says how far to trust it.
    spread = {name: round(max(found) / min(found), 2) for name, found in timings.items() if min(found) > 0}
    return {"base_ms": _median_ms(timings["base"], base_images), "precision": precision, "engine": engine,
            "step_ms": _median_ms(timings["step"], step_images), "start_s": round(float(np.mean(starts)), 2),
            "rounds": ROUNDS, "spread": spread,
            "cores": os.cpu_count(), "cpu": machine.describe_cpu()}


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
    probes (stages/modelkit/probe.py): the features stage by the base, train and evaluate by the baseline's
    training step; prepare and tfrecords, which spread over processes, by the cores (timing prepare's
    work, or each model's step, made the estimates no better: benchmarks/measured.yaml); the rest
    (seconds of Python and DVC) not at all."""
    if stage == "features":
        return here["base_ms"] / there["base_ms"]
    if stage in ("prepare", "tfrecords"):
        return their_cores / max(cores, 1)
    if stage.startswith(PER_SEED_STAGES):
        return here["step_ms"] / there["step_ms"]
    return 1.0


def speed_lines(run: dict, cores: int, layer: str | None, probe: dict | None) -> list[str]:
    """Where the time estimate comes from, in words."""
    there = run.get("probe")
    if not (probe and there):
        why = "" if there else " (the benchmark did not measure its machine: make bench again for a measured estimate)"
        return [f"  from the benchmark of {run['date']} ({run['machine']['cores']} cores; {cores} here), scaled by "
                f"images and cores{why}; the download depends on the connection"]
    return [f"  from the benchmark of {run['date']} on {there.get('cpu', 'its machine')}, scaled by images and by "
            "this machine's speed, measured just now (ms an image, here / there):",
            f"    frozen base up to {layer}: {probe['base_ms']:.1f} ({probe['precision']} on {probe['engine']}) / "
            f"{there['base_ms']:.1f} ({there['precision']} on {there['engine']}, up to {run.get('feature_layer')})",
            f"    training step: {probe['step_ms']:.2f} / {there['step_ms']:.2f}; the rest by cores: "
            f"{cores} / {run['machine']['cores']}",
            *([f"    a TensorFlow stage's start, seconds: {probe['start_s']:.1f} / {there['start_s']:.1f} (train and evaluate: "
                "this once, a training step per image)"] if probe.get("start_s") and there.get("start_s") else []),
            *spread_lines(probe),
            "  the download depends on the connection"]


def spread_lines(probe: dict) -> list[str]:
    """A warning when this machine's speed moved by more than a quarter between the probe's rounds
    (a shared or throttled machine): the estimate is no steadier than the machine."""
    spread = probe.get("spread") or {}
    if not spread or max(spread.values()) <= 1.25:
        return []
    worst = max(spread, key=spread.get)
    return [f"  note: this machine's speed moved between the probe's {probe.get('rounds', ROUNDS)} rounds (the slowest "
            f"round of {worst} took {spread[worst]:.1f}x the fastest): a shared or throttled machine, whose stage "
            "times vary as much; read the estimate as that rough"]
