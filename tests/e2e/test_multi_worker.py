"""Scaling out with tf.distribute: the baseline trained by two worker processes through TensorFlow's
collective ops on 127.0.0.1, only the chief writing, against one worker. Real DVC makes the data;
tiny data. (The DVC remote and the queue are in tests/e2e/test_pipeline.py.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.contracts.manifests import TfrecordsManifest
from tests.helpers import make_tiny_project, run, set_params

WORKER_TIMEOUT_S = 150   # one epoch on 120 images takes seconds; a worker waiting for a dead peer fails
# Fresh caches, each scored by Keras, in one worker process (see test_every_pass_scores_every_image_once).
COUNTED_FITS, COUNTED_EVALUATIONS = 2, 40


# --- two workers on 127.0.0.1 -------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def tfrecords_project(tmp_path_factory) -> Path:
    """The tiny project with its data made up to the TFRecords (what training reads)."""
    project = make_tiny_project(tmp_path_factory.mktemp("scaling"))
    run(["dvc", "repro", "tfrecords"], project)
    return project


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def train_metrics(project: Path) -> dict:
    return json.loads((project / "metrics" / "train" / "baseline" / "2021.json").read_text())


def train_workers(projects: list[Path], command: tuple[str, ...] = ("-m", "stages.train", "baseline")) -> list[str]:
    """`python -m stages.train baseline` (or python `command`) in each project at once, as the workers of
    one multi-worker cluster on 127.0.0.1 (worker 0 first, the chief); return their outputs. Every wait
    is bounded."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(len(projects))]
    processes = []
    for index, project in enumerate(projects):
        set_params(project, {"distribute.strategy": "multi_worker"})
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(subprocess.Popen([sys.executable, *command], cwd=project, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=WORKER_TIMEOUT_S)[0])
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return outputs


def test_two_workers_train_the_baseline_like_one(tfrecords_project, tmp_path):
    """The baseline, one epoch, global batch 16, through MultiWorkerMirroredStrategy: one worker,
    then two (one replica each) talking through TensorFlow's collective ops on 127.0.0.1. Same seed,
    same data order, same global batches: two workers do the same computation with each batch split
    in two and the gradients averaged, so the results differ only by float rounding.

    The plain run (default strategy) is not the reference for that: under any tf.distribute
    strategy Keras draws one batch to build the model before fitting, which starts a reshuffle, so
    epoch k sees the order the plain run uses in epoch k + 1. Its metrics are checked only to be
    of the same kind."""
    plain, one, chief, worker = (copy_project(tfrecords_project, tmp_path / name)
                                 for name in ("plain", "one", "chief", "worker"))
    timings = {}
    started = time.monotonic()
    run([sys.executable, "-m", "stages.train", "baseline"], plain, timeout=WORKER_TIMEOUT_S)
    timings["plain"] = time.monotonic() - started
    started = time.monotonic()
    train_workers([one])
    timings["one worker"] = time.monotonic() - started
    started = time.monotonic()
    outputs = train_workers([chief, worker])
    timings["two workers"] = time.monotonic() - started
    assert "2 replicas" in outputs[0] and "as a worker" in outputs[1]

    # Only the chief wrote: the worker's copy has no model, no curves, no metrics.
    assert (chief / "models" / "baseline" / "2021" / "model.keras").is_file()
    assert not (worker / "models" / "baseline").exists()
    assert not (worker / "metrics" / "train" / "baseline").exists()
    assert not (worker / "plots" / "learning_curves" / "baseline").exists()

    results = {name: train_metrics(project) for name, project in (("plain", plain), ("one worker", one),
                                                                   ("two workers", chief))}
    for name, values in results.items():
        print(f"{name}: {timings[name]:.1f} s, loss {values['loss']:.5f}, val_loss {values['val_loss']:.7f}, "
              f"val_accuracy {values['val_accuracy']:.4f}")
    one_worker, two_workers = results["one worker"], results["two workers"]
    # Training: float rounding only (two partial sums instead of one, over 8 steps); 1e-4 is far
    # above that and far below what one changed step makes (a step moves the loss by ~1e-2).
    assert abs(one_worker["loss"] - two_workers["loss"]) < 1e-4
    # Validation: the same 40 images, each once, by float-rounding-close models. One image more or
    # less moves the loss by ~5e-3 (38 of 40 images: 0.73565 against 0.72531).
    assert abs(one_worker["val_loss"] - two_workers["val_loss"]) < 1e-5
    assert one_worker["val_accuracy"] == two_workers["val_accuracy"]
    assert abs(results["plain"]["val_loss"] - two_workers["val_loss"]) < 0.2    # same kind of model, other order


# What test_every_pass_scores_every_image_once runs as the one worker of a cluster: the train stage's
# fit (family.fit -> fit_on_records, each fit on freshly loaded, cached datasets), then evaluations of
# the model, each on a freshly loaded cached val split; prints the images Keras scored in each training
# epoch and each validation pass. Each of Keras's passes counts its images in its loss tracker (a mean
# weighted by batch size): that count is what it scored, whatever the loss values.
COUNTING_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
import keras
from stages.common import distribute
from stages.common.config import TFRECORDS_DIR, load_params
from stages.contracts.manifests import TfrecordsManifest
from stages.contracts.tfrecord_io import load_split
from stages.modelkit import fitting, registry
from stages.modelkit.family import DataRoots

fits, evaluations = int(sys.argv[1]), int(sys.argv[2])
strategy = distribute.make_strategy("multi_worker")
family = registry.family("baseline", load_params())
scored = {"train": [], "val": []}

def images_scored(model):
    return int(next(metric for metric in model.metrics if metric.name == "loss").count.numpy())

class Validation(keras.callbacks.Callback):
    def on_test_end(self, logs=None):
        scored["val"].append(images_scored(self.model))

class Epoch(Validation):
    def on_test_begin(self, logs=None):    # within fit: the epoch's training just ended, its count intact
        scored["train"].append(images_scored(self.model))

callbacks = fitting.training_callbacks
fitting.training_callbacks = lambda *args, **kwargs: [*callbacks(*args, **kwargs), Epoch()]
shape = TfrecordsManifest.read_from(TFRECORDS_DIR).input_shape
with strategy.scope(), tempfile.TemporaryDirectory() as scratch:
    for index in range(fits):
        model, _ = family.fit(DataRoots(), shape, Path(scratch) / f"history{index}.csv")
    for _ in range(evaluations):
        val = load_split(TFRECORDS_DIR, "val", family.params.batch_size, cache=True)
        model.evaluate(val, verbose=0, callbacks=[Validation()])
print("scored", json.dumps(scored))
"""


def test_every_pass_scores_every_image_once(tfrecords_project, tmp_path):
    """Under MultiWorkerMirroredStrategy Keras scored 38 of the 40 validation images now and then (2 runs
    in 8 on an Intel Xeon), in every epoch of that run: it drops a part-read iterator before each fit
    and evaluate, which could leave the val split's memory cache short for good (stages/contracts/
    tfrecord_io.py, _fill). Whether it happens is decided once per cache, in its first pass: so many
    fresh caches here (42), each one's passes counted (the count, not the loss: no tolerance to hide an
    image). Without _fill, about 1 cache in 4 came out short on that Xeon (all 42 whole: 0.75**42 < 1e-5)
    and about 1 in 36 on a 2-core AMD EPYC (there this test's script caught one in 4 of 6 runs)."""
    project = copy_project(tfrecords_project, tmp_path / "counting")
    started = time.monotonic()
    output, = train_workers([project], ("-c", COUNTING_SCRIPT, str(COUNTED_FITS), str(COUNTED_EVALUATIONS)))
    scored = json.loads(output.split("scored ", 1)[1].splitlines()[0])
    counts = TfrecordsManifest.read_from(project / "data" / "tfrecords").splits
    print(f"{COUNTED_FITS} fits and {COUNTED_EVALUATIONS} evaluations on fresh caches: "
          f"{time.monotonic() - started:.1f} s")
    assert scored["train"] == [counts["train"].count] * COUNTED_FITS     # one epoch each (TINY_PARAMS)
    assert scored["val"] == [counts["val"].count] * (COUNTED_FITS + COUNTED_EVALUATIONS)
