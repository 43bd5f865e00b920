"""What runs the transfer model's frozen base, per machine: train.transfer.precision and .engine (auto
or explicit), LiteRT against Keras float32, and the features stage on a CPU capped at AVX2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from stages.analysis import heatmaps
from stages.common import machine
from stages.common.errors import UserError
from stages.contracts.manifests import FeaturesManifest
from stages.modelkit import engines, prediction
from stages.models import transfer
from tests.helpers import ROOT, make_tfrecords_project, run_tfrecords

XEON = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n"
EPYC = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu avx2\n"


@pytest.mark.parametrize("cpuinfo, environ, native", [
    (XEON, {}, True),
    (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),             # emulating an older CPU
    (XEON, {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, True),
    (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),
    (XEON, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
    (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),   # above the bfloat16 kernels
    (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_FP16"}, True),
    (EPYC, {}, False),
])
def test_native_bfloat16_needs_the_flags_and_onednn_allowed_to_use_them(cpuinfo, environ, native):
    assert machine.native_bfloat16(cpuinfo, environ) is native


@pytest.mark.parametrize("cpuinfo, environ, avx512", [
    (XEON, {}, True), (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False), (XEON, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, True),
    (EPYC, {}, False),
])
def test_float32_in_avx512_is_what_keeps_keras_ahead_of_litert(cpuinfo, environ, avx512):
    assert machine.avx512_float32(cpuinfo, environ) is avx512


def test_the_cpu_description_names_a_onednn_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine.describe_cpu().endswith("; oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "oneDNN" not in machine.describe_cpu()


@pytest.mark.parametrize("precision, engine, native, avx512, gpus, litert, expected", [
    ("auto", "auto", True, True, 0, True, ("bfloat16", "keras")),     # a CPU with native bfloat16
    ("auto", "auto", False, False, 0, True, ("float32", "litert")),   # an AVX2-only CPU
    ("auto", "auto", False, True, 0, True, ("float32", "keras")),     # AVX-512 without bfloat16: Keras is faster
    ("auto", "auto", False, False, 0, False, ("float32", "keras")),   # without ai-edge-litert: the fallback
    ("auto", "auto", True, True, 1, True, ("float16", "keras")),      # a GPU
    ("auto", "litert", True, True, 0, True, ("float32", "litert")),   # an explicit engine decides the precision
    ("auto", "keras", False, False, 0, True, ("float32", "keras")),
    ("float32", "auto", True, False, 0, True, ("float32", "litert")),
    ("float32", "auto", True, True, 0, True, ("float32", "keras")),
    ("bfloat16", "auto", False, False, 0, True, ("bfloat16", "keras")),  # explicit, emulated: kept
    ("float16", "keras", False, False, 0, True, ("float16", "keras")),
])
def test_auto_resolves_by_the_machine_and_explicit_choices_are_kept(monkeypatch, precision, engine, native, avx512,
                                                                     gpus, litert, expected):
    monkeypatch.delenv(machine.ONEDNN_CAP_VARIABLE, raising=False)   # the machine is the one the parameters describe
    monkeypatch.setattr(machine, "native_bfloat16", lambda *args: native)
    monkeypatch.setattr(machine, "avx512_float32", lambda *args: avx512)
    assert transfer.resolve_base(precision, engine, gpus=gpus, litert=litert) == expected


def test_what_this_machine_cannot_run_is_refused_in_one_line(monkeypatch):
    with pytest.raises(UserError, match=r"^train.transfer.engine: litert runs the base in float32 only, not bfloat16;"):
        transfer.resolve_base("bfloat16", "litert", gpus=0, litert=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError, match=r"bfloat16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 .*set precision: auto"):
        transfer.resolve_base("bfloat16", "keras", gpus=0, litert=True)
    with pytest.raises(UserError, match=r"float16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 \(oneDNN has no float16 "
                                        r"kernels below AVX512_CORE_FP16\)"):
        transfer.resolve_base("float16", "keras", gpus=0, litert=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")   # bfloat16 runs, float16 does not
    assert transfer.resolve_base("bfloat16", "keras", gpus=0, litert=True) == ("bfloat16", "keras")
    assert transfer.resolve_base("float32", "keras", gpus=0, litert=True) == ("float32", "keras")
    with pytest.raises(UserError, match=r"float16 cannot run"):
        transfer.resolve_base("float16", "keras", gpus=0, litert=True)


@pytest.fixture(scope="module")
def random_transfer_model():
    """The transfer model (random VGG16 up to block4_pool, float32, and a head) and its frozen base."""
    params = transfer.Params.model_validate({
        **yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["transfer"], "seed": 1, "weights": "none"})
    keras.utils.set_random_seed(3)
    extractor = transfer.feature_extractor((100, 100, 3), "none", params.feature_layer, "float32")
    base = extractor.get_layer("vgg16")
    model = transfer.make_model((100, 100, 3), params, base=base,
                                head=transfer.make_head(tuple(base.output.shape[1:]), params, (0.0, 100.0)))
    return model, extractor


def images(count: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, 100, 100, 3)).astype(np.float32)


def test_litert_computes_the_base_as_keras_float32_does(random_transfer_model):
    _, extractor = random_transfer_model
    run = engines.batch_runner(extractor, "litert", threads=2)
    expected = np.asarray(extractor.predict_on_batch(images()))
    found = run(images())
    assert found.shape == expected.shape and found.dtype == np.float32
    assert np.abs(found - expected).max() <= 1e-5 * np.abs(expected).max()
    assert run(images(2, seed=1)).shape == (2, *expected.shape[1:])   # another batch size: resized
    assert engines.batch_runner(extractor, "keras", 2) == extractor.predict_on_batch


def test_predict_on_litert_gives_the_keras_models_probabilities(random_transfer_model, tmp_path):
    """Through predict_files, what predict and the page run on image files (it reads the runner's input size)."""
    model, _ = random_transfer_model
    pixels = images().astype(np.uint8)
    expected = np.asarray(model.predict_on_batch(pixels.astype(np.float32))).reshape(-1)
    assert np.ptp(expected) > 1e-4, "the check needs probabilities that differ per image"
    files = [tmp_path / f"{index}.png" for index in range(len(pixels))]
    for file, image in zip(files, pixels):
        Image.fromarray(image).save(file)
    runner = engines.on_engine(model, "litert", threads=2)
    rows = [row for batch in prediction.predict_files(runner, files, ["Female", "Male"], 0.5, batch_size=2)
            for row in batch]
    np.testing.assert_allclose([row["probability_Male"] for row in rows], expected, atol=1e-5)
    assert engines.on_engine(model, "keras", 2) is model


def test_heat_maps_run_a_float32_copy_of_a_bfloat16_model(random_transfer_model):
    model, _ = random_transfer_model
    assert heatmaps.float32_copy(model) is model
    params = transfer.Params.model_validate({
        **yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["transfer"], "seed": 1, "weights": "none"})
    base16 = transfer.make_base((100, 100, 3), "none", params.feature_layer, "bfloat16")
    mixed = transfer.make_model((100, 100, 3), params, base=base16, head=model.get_layer("head"))
    copy = heatmaps.float32_copy(mixed)
    assert copy is not mixed
    assert {layer.dtype_policy.name for layer in copy.get_layer("vgg16").layers} == {"float32"}
    np.testing.assert_allclose(np.asarray(copy(images())), np.asarray(model(images())), atol=1e-5)
    assert heatmaps.Explainer(mixed, 100, "auto", threshold=0.5).method == "gradcam"


def features_stage(project, environ: dict[str, str], **transfer_params) -> subprocess.CompletedProcess:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["train"]["transfer"].update({"weights": "none", "precision": "auto", "engine": "auto", **transfer_params})
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **environ}
    return subprocess.run([sys.executable, "-m", "stages.features"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.e2e
def test_the_features_stage_on_a_cpu_capped_at_avx2_runs_litert_and_records_it(tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 emulates a CPU without native bfloat16 (oneDNN's kernels; XNNPACK
    still uses what the CPU has): auto runs float32 on LiteRT there, and an explicit bfloat16 is refused."""
    project = make_tfrecords_project(tmp_path / "project")
    run_tfrecords(project)
    capped = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = features_stage(project, capped)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = FeaturesManifest.read_from(project / "data" / "features")
    assert (manifest.precision, manifest.engine, manifest.dtype) == ("float32", "litert", "float32")
    assert manifest.machine.endswith("oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)")
    assert manifest.weights_label.endswith(", float32 on LiteRT") and manifest.weights_label in done.stdout
    assert manifest.splits["test"].count == 6 and manifest.splits["test"].shape == [6, 6, 512]
    good = {path.name: path.read_bytes() for path in (project / "data" / "features").iterdir()}
    refused = features_stage(project, capped, precision="bfloat16")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: train.transfer.precision: bfloat16 cannot run")
    assert {path.name: path.read_bytes() for path in (project / "data" / "features").iterdir()} == good
    # Without the cap, auto follows the CPU.
    done = features_stage(project, {})
    assert done.returncode == 0, done.stderr[-2000:]
    native = json.loads((project / "data" / "features" / FeaturesManifest.name).read_text())
    expected = ("bfloat16", "keras") if machine.native_bfloat16() else ("float32", "litert")
    assert (native["precision"], native["engine"]) == expected


def test_predict_without_litert_installed_runs_keras_and_says_so(random_transfer_model, monkeypatch, capsys):
    model, _ = random_transfer_model
    monkeypatch.setattr(engines, "litert_installed", lambda: False)
    assert engines.on_engine(model, "litert", 2) is model
    assert "LiteRT, which is not installed here" in capsys.readouterr().err
    with pytest.raises(UserError, match="the ai-edge-litert package is not installed"):
        engines.LiteRTRunner.of_model(model, 2)
