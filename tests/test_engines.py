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
from stages.modelkit import engine_choice, engines, prediction
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


def test_the_cpu_description_names_a_onednn_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine.describe_cpu().endswith("; oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA)")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "oneDNN" not in machine.describe_cpu()


F32, LITERT, BF16 = ("float32", "keras"), ("float32", "litert"), ("bfloat16", "keras")


@pytest.mark.parametrize("precision, engine, native, gpus, litert, expected", [
    ("auto", "auto", True, 0, True, [F32, LITERT, BF16]),       # a CPU with native bfloat16: all three are timed
    ("auto", "auto", False, 0, True, [F32, LITERT]),            # without: never emulated bfloat16
    ("auto", "auto", False, 0, False, [F32]),                   # without ai-edge-litert: the fallback, nothing to time
    ("auto", "auto", True, 1, True, [("float16", "keras")]),    # a GPU
    ("auto", "litert", True, 0, True, [LITERT]),                # an explicit engine decides the precision
    ("auto", "keras", True, 0, True, [F32, BF16]),
    ("float32", "auto", True, 0, True, [F32, LITERT]),
    ("bfloat16", "auto", False, 0, True, [BF16]),               # explicit, emulated: kept
    ("float16", "keras", False, 0, True, [("float16", "keras")]),
    ("bfloat16", "litert", True, 0, True, [("bfloat16", "litert")]),   # refused by resolve_base
])
def test_auto_times_what_the_machine_can_run_and_explicit_choices_are_kept(monkeypatch, precision, engine, native,
                                                                            gpus, litert, expected):
    monkeypatch.setattr(machine, "native_bfloat16", lambda *args: native)
    assert engine_choice.base_candidates(precision, engine, gpus=gpus, litert=litert) == expected


def timed(ms: dict):
    """A stand-in for the base's timing, counting its calls (engine_choice.fastest's timer)."""
    def timer(candidates, feature_layer, threads):
        timer.calls += 1
        return {candidate: ms[candidate] for candidate in candidates}
    timer.calls = 0
    return timer


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(engine_choice.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})
    return tmp_path / "cache" / engine_choice.CACHE_FILE


@pytest.mark.parametrize("ms, chosen", [
    ({F32: 25.0, LITERT: 38.4, BF16: 7.0}, BF16),       # the Xeon with AMX (benchmarks/engines.json's kind)
    ({F32: 23.8, LITERT: 35.3, BF16: 36.2}, F32),       # avx512_bf16 without AMX: bfloat16 is slower there
    ({F32: 42.8, LITERT: 35.3}, LITERT),                # capped at AVX2
    ({F32: 30.0, LITERT: 28.0}, F32),                   # within the margin: the exact path stays
    ({LITERT: 30.0, BF16: 20.0}, BF16),                 # without the reference, the fastest
])
def test_the_fastest_path_is_chosen_and_a_close_call_keeps_keras_float32(ms, chosen):
    assert engine_choice.choose(ms) == chosen


def test_the_choice_is_timed_once_per_machine_and_kept(own_cache, capsys):
    timer = timed({F32: 23.8, LITERT: 35.3, BF16: 36.2})
    assert engine_choice.fastest([F32, LITERT, BF16], "block4_pool", 2, timer) == F32
    err = capsys.readouterr().err
    assert "auto: float32 on keras 23.8, float32 on litert 35.3, bfloat16 on keras 36.2 ms an image: float32 on keras" in err
    assert str(own_cache) in err
    entries = json.loads(own_cache.read_text())
    [(key, entry)] = entries.items()
    assert machine.describe_cpu() in key and "2 threads" in key and "block4_pool" in key
    assert entry["chosen"] == list(F32)
    # The same process, another process (the cache file), another candidate list (timed anew).
    assert engine_choice.fastest([F32, LITERT, BF16], "block4_pool", 2, timer) == F32
    engine_choice._CHOSEN.clear()
    assert engine_choice.fastest([F32, LITERT, BF16], "block4_pool", 2, timer) == F32 and timer.calls == 1
    assert engine_choice.fastest([F32, LITERT], "block4_pool", 2, timer) == F32 and timer.calls == 2
    assert engine_choice.fastest([LITERT], "block4_pool", 2, timer) == LITERT and timer.calls == 2
    assert len(json.loads(own_cache.read_text())) == 2


def test_a_damaged_cache_is_measured_again_and_rewritten(own_cache, capsys):
    own_cache.parent.mkdir(parents=True)
    own_cache.write_text("{not json")
    timer = timed({F32: 30.0, LITERT: 20.0})
    assert engine_choice.fastest([F32, LITERT], "block4_pool", 2, timer) == LITERT
    assert f"note: {own_cache}: unreadable (JSONDecodeError); measuring again and rewriting it" in capsys.readouterr().err
    assert [entry["chosen"] for entry in json.loads(own_cache.read_text()).values()] == [list(LITERT)]


def test_an_unwritable_cache_folder_still_chooses_and_says_how_to_keep_it(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(engine_choice.CACHE_VARIABLE, str(blocker / "cache"))
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})
    assert engine_choice.fastest([F32, LITERT], "block4_pool", 2, timed({F32: 30.0, LITERT: 20.0})) == LITERT
    assert f"set {engine_choice.CACHE_VARIABLE} to a writable folder" in capsys.readouterr().err


def test_the_cache_lives_where_the_user_keeps_caches(tmp_path):
    assert engine_choice.cache_path({"FACEGENDER_CACHE": "/c"}) == Path("/c/base-engines.json")
    assert engine_choice.cache_path({"XDG_CACHE_HOME": "/x"}) == Path("/x/facegender/base-engines.json")
    assert engine_choice.cache_path({}) == Path.home() / ".cache" / "facegender" / "base-engines.json"


def test_the_base_is_really_timed_on_each_path(own_cache):
    """The real timing (in this process), on two paths: every path gets a positive median."""
    timings = engine_choice.measure_here([F32, LITERT], "block1_pool", threads=2)
    assert set(timings) == {F32, LITERT} and all(ms > 0 for ms in timings.values())


def test_resolve_base_takes_the_measured_choice(own_cache, monkeypatch):
    monkeypatch.delenv(machine.ONEDNN_CAP_VARIABLE, raising=False)
    monkeypatch.setattr(machine, "native_bfloat16", lambda *args: True)
    monkeypatch.setattr(engine_choice, "measure_elsewhere", timed({F32: 25.0, LITERT: 38.4, BF16: 7.0}))
    assert engine_choice.resolve_base("auto", "auto", "block4_pool", gpus=0, litert=True) == BF16
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})
    monkeypatch.setattr(engine_choice, "measure_elsewhere", timed({F32: 23.8, LITERT: 35.3}))
    assert engine_choice.resolve_base("float32", "auto", "block4_pool", gpus=0, litert=True) == F32


def test_the_features_line_says_what_runs_the_base_and_why_timed_cached_or_pinned(own_cache, monkeypatch):
    monkeypatch.delenv(machine.ONEDNN_CAP_VARIABLE, raising=False)
    monkeypatch.setattr(machine, "native_bfloat16", lambda *args: False)
    monkeypatch.setattr(engine_choice, "measure_elsewhere", timed({F32: 42.8, LITERT: 35.3}))
    timed_here = engine_choice.choose_base("auto", "auto", "block4_pool", gpus=0, litert=True)
    assert timed_here.line() == ("features: the frozen base runs in float32 on litert: timed here now (float32 on "
                                 f"keras, float32 on litert), kept in {own_cache}; delete it to time again")
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})                      # the next process: the cache answers
    measured = next(iter(json.loads(own_cache.read_text()).values()))["measured"]
    cached = engine_choice.choose_base("auto", "auto", "block4_pool", gpus=0, litert=True)
    assert cached.line() == (f"features: the frozen base runs in float32 on litert: cached, timed on this machine "
                             f"on {measured} (float32 on keras, float32 on litert), in {own_cache}; "
                             "delete it to time again")
    pinned = engine_choice.choose_base("float32", "keras", "block4_pool", gpus=0, litert=True)
    assert pinned.line() == ("features: the frozen base runs in float32 on keras: pinned by train.transfer.precision "
                             "and .engine in params.yaml (auto lets each machine choose)")
    assert engine_choice.choose_base("auto", "litert", "block4_pool", gpus=0, litert=True).why == (
        "pinned by train.transfer.engine in params.yaml (auto lets each machine choose)")
    assert engine_choice.choose_base("auto", "auto", "block4_pool", gpus=0, litert=False).why == (
        "the only path auto has on this machine (no native bfloat16, no ai-edge-litert)")
    assert engine_choice.choose_base("auto", "auto", "block4_pool", gpus=1, litert=True).line() == (
        "features: the frozen base runs in float16 on keras: the only path auto has on a GPU")
    assert engine_choice.measure_elsewhere.calls == 1                      # timed once, in the first case only


def test_what_this_machine_cannot_run_is_refused_in_one_line(monkeypatch):
    with pytest.raises(UserError, match=r"^train.transfer.engine: litert runs the base in float32 only, not bfloat16;"):
        engine_choice.resolve_base("bfloat16", "litert", "block4_pool", gpus=0, litert=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError, match=r"bfloat16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 .*set precision: auto"):
        engine_choice.resolve_base("bfloat16", "keras", "block4_pool", gpus=0, litert=True)
    with pytest.raises(UserError, match=r"float16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2 \(oneDNN has no float16 "
                                        r"kernels below AVX512_CORE_FP16\)"):
        engine_choice.resolve_base("float16", "keras", "block4_pool", gpus=0, litert=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")   # bfloat16 runs, float16 does not
    assert engine_choice.resolve_base("bfloat16", "keras", "block4_pool", gpus=0, litert=True) == ("bfloat16", "keras")
    assert engine_choice.resolve_base("float32", "keras", "block4_pool", gpus=0, litert=True) == ("float32", "keras")
    with pytest.raises(UserError, match=r"float16 cannot run"):
        engine_choice.resolve_base("float16", "keras", "block4_pool", gpus=0, litert=True)


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
def test_the_features_stage_runs_the_path_chosen_for_this_machine_and_records_it(tmp_path, monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 emulates a CPU without native bfloat16 (oneDNN's kernels; XNNPACK still
    uses what the CPU has): auto runs what this machine's cache chose there (LiteRT, as timed on every
    CPU so far; set here so the check does not hang on a timing), and an explicit bfloat16 is refused.
    Without the cap the stage times the paths itself, and runs the choice this process reads back."""
    project = make_tfrecords_project(tmp_path / "project")
    run_tfrecords(project)
    capped = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    cache = tmp_path / "cache"
    monkeypatch.setenv(engine_choice.CACHE_VARIABLE, str(cache))
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})
    with monkeypatch.context() as inside:
        inside.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
        layer = transfer.Params.model_validate({**yaml.safe_load((project / "params.yaml").read_text())["train"]
                                                ["transfer"], "seed": 1}).feature_layer
        assert engine_choice.fastest([F32, LITERT], layer, 2, timed({F32: 42.8, LITERT: 35.3})) == LITERT
    monkeypatch.setattr(engine_choice, "_CHOSEN", {})
    done = features_stage(project, capped)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "auto: timing" not in done.stderr                      # the cache answered
    assert "features: the frozen base runs in float32 on litert: cached, timed on this machine on " in done.stderr
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
    # Without the cap: timed by the stage (in a fresh Python of its own), kept, and what this process resolves.
    done = features_stage(project, {})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "auto: timing the frozen base on this machine, once" in done.stderr
    assert "features: the frozen base runs in " in done.stderr and ": timed here now (" in done.stderr
    native = json.loads((project / "data" / "features" / FeaturesManifest.name).read_text())
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert (native["precision"], native["engine"]) == engine_choice.resolve_base("auto", "auto", layer)
    assert len(json.loads((cache / engine_choice.CACHE_FILE).read_text())) == 2


def test_predict_without_litert_installed_runs_keras_and_says_so(random_transfer_model, monkeypatch, capsys):
    model, _ = random_transfer_model
    monkeypatch.setattr(engines, "litert_installed", lambda: False)
    assert engines.on_engine(model, "litert", 2) is model
    assert "LiteRT, which is not installed here" in capsys.readouterr().err
    with pytest.raises(UserError, match="the ai-edge-litert package is not installed"):
        engines.LiteRTRunner.of_model(model, 2)


@pytest.mark.parametrize("precision, native, gpus, expected", [
    ("auto", True, 0, "bfloat16"), ("auto", False, 0, "float32"), ("auto", True, 1, "float16"),
    ("float32", True, 0, "float32"), ("bfloat16", False, 0, "bfloat16"),
])
def test_the_head_learning_through_the_base_in_keras_takes_its_precision_from_the_cpu(monkeypatch, precision,
                                                                                       native, gpus, expected):
    """With augmentation the head trains through the base in Keras: no engine to time there."""
    monkeypatch.delenv(machine.ONEDNN_CAP_VARIABLE, raising=False)
    monkeypatch.setattr(machine, "native_bfloat16", lambda *args: native)
    assert transfer.keras_precision(precision, gpus=gpus) == expected
    monkeypatch.setenv(machine.ONEDNN_CAP_VARIABLE, "AVX2")
    if expected == "bfloat16":
        with pytest.raises(UserError, match="bfloat16 cannot run with ONEDNN_MAX_CPU_ISA=AVX2"):
            transfer.keras_precision(precision, gpus=gpus)
