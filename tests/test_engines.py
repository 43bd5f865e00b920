"""What runs the transfer model's frozen base, per machine: train.transfer.precision and .engine (auto
or explicit), LiteRT against Keras float32, and the features stage on a CPU capped at AVX2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from stages.analysis import heatmaps
from stages.common import machine
from stages.common.errors import UserError
from stages.contracts.manifests import FeaturesManifest
from stages.modelkit import engine_choice, engines, prediction, vgg16
from stages.models import transfer
from tests.helpers import ROOT, make_tfrecords_project, run_tfrecords

AMX_XEON = ("Intel(R) Xeon(R) Processor", ["avx2", "avx512f", "avx512_bf16", "amx_bf16"])
BF16_XEON = ("Intel(R) Xeon(R) Processor", ["avx2", "avx512f", "avx512_bf16"])
BF16_EPYC = ("AMD EPYC", ["avx2", "avx512f", "avx512_bf16"])
AVX2_EPYC = ("AMD EPYC 7B12", ["avx2"])


@pytest.mark.parametrize("cpu, capped, pays", [
    (AMX_XEON, False, True),          # 3.6x faster in bfloat16 (benchmarks/engines.json)
    (AMX_XEON, True, False),          # oneDNN capped below its bfloat16 kernels
    (BF16_XEON, False, False),        # 1.5x slower in bfloat16
    (BF16_EPYC, False, True),         # 2x faster
    (BF16_EPYC, True, False),
    (AVX2_EPYC, False, False),        # no bfloat16 in hardware
])
def test_bfloat16_is_auto_where_it_was_measured_faster(cpu, capped, pays):
    assert engine_choice.bfloat16_pays(*cpu, capped=capped) is pays


@pytest.mark.parametrize("flags, cap, only", [
    (AVX2_EPYC[1], "", True), (BF16_XEON[1], "", False), (BF16_XEON[1], "AVX2", True),
    (BF16_XEON[1], "avx512_core", False), (BF16_XEON[1], "ALL", False),
])
def test_an_avx2_cpu_is_one_without_avx512_or_with_onednn_capped_below_it(flags, cap, only):
    assert engine_choice.avx2_only(flags, cap) is only


@pytest.mark.parametrize("environ, allowed", [
    ({}, True), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False), ({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False), ({"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),     # above the bfloat16 kernels
])
def test_a_onednn_cap_below_the_bfloat16_kernels_rules_bfloat16_out(environ, allowed):
    assert machine.onednn_allows("bfloat16", environ) is allowed


def test_the_cpu_description_names_a_onednn_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine.describe_cpu().endswith("; oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "oneDNN" not in machine.describe_cpu()


F32, LITERT, BF16 = ("float32", "keras"), ("float32", "litert"), ("bfloat16", "keras")


@pytest.fixture
def on_cpu(monkeypatch):
    """Pretend to run on `cpu` (model, flags), with or without ai-edge-litert and a oneDNN cap."""
    def pretend(cpu, litert: bool = True, cap: str | None = None):
        monkeypatch.setattr(machine, "cpu_info", lambda *args: cpu)
        monkeypatch.setattr(machine, "litert_installed", lambda: litert)
        if cap:
            monkeypatch.setenv(machine.ONEDNN_CAP_VARIABLE, cap)
        else:
            monkeypatch.delenv(machine.ONEDNN_CAP_VARIABLE, raising=False)
    return pretend


@pytest.mark.parametrize("cpu, litert, cap, gpus, precision, engine, expected", [
    (AMX_XEON, True, None, 0, "auto", "auto", BF16),
    (BF16_EPYC, True, None, 0, "auto", "auto", BF16),
    (BF16_XEON, True, None, 0, "auto", "auto", F32),
    (AVX2_EPYC, True, None, 0, "auto", "auto", LITERT),             # 2.3x faster there (measured.yaml)
    (AVX2_EPYC, False, None, 0, "auto", "auto", F32),               # without ai-edge-litert
    (AMX_XEON, True, "AVX2", 0, "auto", "auto", LITERT),            # an AVX2 CPU emulated
    (AMX_XEON, True, None, 1, "auto", "auto", ("float16", "keras")),   # a GPU
    (AMX_XEON, True, None, 0, "auto", "litert", LITERT),            # LiteRT decides the precision
    (AMX_XEON, True, None, 0, "float32", "auto", F32),              # an explicit choice is kept
    (AVX2_EPYC, True, None, 0, "bfloat16", "auto", BF16),
    (AVX2_EPYC, True, None, 0, "auto", "keras", F32),
])
def test_auto_follows_the_rule_and_an_explicit_choice_is_kept(on_cpu, cpu, litert, cap, gpus, precision, engine,
                                                               expected):
    on_cpu(cpu, litert, cap)
    assert engine_choice.resolve_base(precision, engine, gpus=gpus) == expected


def test_the_features_line_says_what_runs_the_base_and_why(on_cpu):
    on_cpu(AMX_XEON)
    assert engine_choice.choose_base("auto", "auto", gpus=0).line() == (
        "features: the frozen base runs in bfloat16 on keras: auto on this CPU (amx_bf16, or an AMD with avx512_bf16)")
    assert engine_choice.choose_base("float32", "keras", gpus=0).line() == (
        "features: the frozen base runs in float32 on keras: precision and engine set in params.yaml (train.transfer)")
    assert engine_choice.choose_base("auto", "auto", gpus=1).line() == (
        "features: the frozen base runs in float16 on keras: auto on a GPU")
    on_cpu(BF16_XEON)
    assert engine_choice.choose_base("auto", "auto", gpus=0).why == (
        "auto on this CPU (bfloat16 pays only with amx_bf16 or on an AMD with avx512_bf16)")
    assert engine_choice.choose_base("auto", "litert", gpus=0).why == (
        "engine set in params.yaml (train.transfer); the rest auto on this CPU (bfloat16 pays only with amx_bf16 "
        "or on an AMD with avx512_bf16)")
    on_cpu(AVX2_EPYC)
    assert engine_choice.choose_base("auto", "auto", gpus=0).line() == (
        "features: the frozen base runs in float32 on litert: auto on this CPU (AVX2, no AVX-512 for oneDNN)")


def test_what_this_machine_cannot_run_is_refused_in_one_line(monkeypatch):
    with pytest.raises(UserError, match=r"^train.transfer.engine: litert runs the base in float32 only, not bfloat16;"):
        engine_choice.resolve_base("bfloat16", "litert", gpus=0)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError, match=r"bfloat16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 .*set precision: auto"):
        engine_choice.resolve_base("bfloat16", "keras", gpus=0)
    with pytest.raises(UserError, match=r"float16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 \(oneDNN has no float16 "
                                        r"kernels below AVX512_CORE_FP16\)"):
        engine_choice.resolve_base("float16", "keras", gpus=0)
    assert engine_choice.resolve_base("auto", "auto", gpus=0) == LITERT        # capped: an AVX2 CPU emulated
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")   # bfloat16 runs, float16 does not
    assert engine_choice.resolve_base("bfloat16", "keras", gpus=0) == ("bfloat16", "keras")
    assert engine_choice.resolve_base("float32", "keras", gpus=0) == ("float32", "keras")
    with pytest.raises(UserError, match=r"float16 cannot run"):
        engine_choice.resolve_base("float16", "keras", gpus=0)


@pytest.fixture(scope="module")
def random_transfer_model():
    """The transfer model (random VGG16 up to block4_pool, float32, and a head) and its frozen base."""
    params = transfer.Params.model_validate({
        **yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["transfer"], "seed": 1, "weights": "none"})
    keras.utils.set_random_seed(3)
    extractor = vgg16.feature_extractor((100, 100, 3), "none", params.feature_layer, "float32")
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
    base16 = vgg16.make_base((100, 100, 3), "none", params.feature_layer, "bfloat16")
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
def test_the_features_stage_runs_the_path_auto_gives_this_machine_and_records_it(tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 emulates an AVX2-only CPU: auto runs LiteRT float32, an explicit bfloat16
    is refused leaving the good output as it was, and engine: keras runs Keras float32. Without the
    cap the stage runs what this process resolves."""
    project = make_tfrecords_project(tmp_path / "project")
    run_tfrecords(project)
    capped = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = features_stage(project, capped)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "features: the frozen base runs in float32 on litert: auto on this CPU (AVX2, no AVX-512" in done.stderr
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
    done = features_stage(project, capped, engine="keras")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = FeaturesManifest.read_from(project / "data" / "features")
    assert (manifest.precision, manifest.engine, manifest.dtype) == ("float32", "keras", "float32")
    done = features_stage(project, {})
    assert done.returncode == 0, done.stderr[-2000:]
    native = json.loads((project / "data" / "features" / FeaturesManifest.name).read_text())
    assert (native["precision"], native["engine"]) == engine_choice.resolve_base("auto", "auto", gpus=0)


def test_predict_without_litert_installed_runs_keras_and_says_so(random_transfer_model, monkeypatch, capsys):
    model, _ = random_transfer_model
    monkeypatch.setattr(engines, "litert_installed", lambda: False)
    assert engines.on_engine(model, "litert", 2) is model
    assert "LiteRT, which is not installed here" in capsys.readouterr().err
    with pytest.raises(UserError, match="the ai-edge-litert package is not installed"):
        engines.LiteRTRunner.of_model(model, 2)


@pytest.mark.parametrize("precision, cpu, gpus, expected", [
    ("auto", AMX_XEON, 0, "bfloat16"), ("auto", BF16_XEON, 0, "float32"), ("auto", AVX2_EPYC, 0, "float32"),
    ("auto", AMX_XEON, 1, "float16"), ("float32", AMX_XEON, 0, "float32"), ("bfloat16", BF16_XEON, 0, "bfloat16"),
])
def test_the_head_learning_through_the_base_in_keras_takes_its_precision_from_the_cpu(on_cpu, precision, cpu, gpus,
                                                                                       expected):
    """With augmentation the head trains through the base in Keras, in auto's precision."""
    on_cpu(cpu)
    assert engine_choice.keras_precision(precision, gpus=gpus) == expected
    on_cpu(cpu, cap="AVX2")
    if precision == "bfloat16":
        with pytest.raises(UserError, match="bfloat16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2"):
            engine_choice.keras_precision(precision, gpus=gpus)
    elif precision == "auto" and not gpus:
        assert engine_choice.keras_precision(precision, gpus=gpus) == "float32"
