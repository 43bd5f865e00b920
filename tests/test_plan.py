"""The real run's plan (make real-plan) and start (make real): sizes from Kaggle's metadata, disk against
what is free (refused, in one line, when short), time from the benchmark; and `make real`'s experiment
through DVC against the local fake Kaggle, up to the ImageNet weights file it cannot download here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import pytest

from stages import plan, sample
from stages.config import load_params
from tests.fake_kaggle import FakeKaggle, make_archive
from tests.helpers import ROOT, make_tiny_project, run_cli
from tests.test_download import KEY, SPLITS, USERNAME, clean_env, creds, fake, kaggle_params  # noqa: F401

GB = 1e9


@pytest.fixture
def benchmark(monkeypatch):
    monkeypatch.setattr(plan, "BENCHMARK_RESULTS", ROOT / "benchmarks" / "results.json")
    return plan.benchmark_run(ROOT / "benchmarks" / "results.json")


def test_real_params_are_the_assignments_setup():
    params = plan.real_params(ROOT / "params.yaml")
    assert params.download.source == "kaggle"
    assert params.train["transfer"]["weights"] == "imagenet"
    assert params.train["transfer"]["feature_layer"] == "block5_pool"
    assert load_params(ROOT / "params.yaml").download.source == "sample"       # params.yaml itself unchanged


def test_feature_bytes_are_the_cut_layers_values():
    params = plan.real_params(ROOT / "params.yaml")
    precision = params.train["transfer"]["precision"]
    assert plan.feature_bytes_per_image(params) == int(3 * 3 * 512 * plan.PRECISION_BYTES[precision] * 1.03)


def test_disk_needs_count_the_cache_only_when_it_copies():
    params = plan.real_params(ROOT / "params.yaml")
    shared = plan.disk_needs({"a": int(GB), "b": int(GB)}, 40_000, params, shared_cache=True)
    copied = plan.disk_needs({"a": int(GB), "b": int(GB)}, 40_000, params, shared_cache=False)
    assert shared[0].bytes == shared[1].bytes == 2 * GB                  # the archives, then unpacked
    assert shared[2].bytes == 40_000 * plan.PNG_BOUND_BYTES
    cache = sum(need.bytes for need in copied) - sum(need.bytes for need in shared)
    assert cache == sum(need.bytes for need in shared[1:])               # every output but the archives (not a DVC output)


@pytest.mark.parametrize("cache_type, shares", [("hardlink,copy", True), ("reflink,copy", False), (None, False)])
def test_cache_sharing_read_from_dvcs_config(tmp_path, cache_type, shares):
    project, plain = tmp_path / "project", tmp_path / "plain"
    project.mkdir()
    plain.mkdir()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=project, check=True)
    if cache_type:
        subprocess.run(["dvc", "config", "cache.type", cache_type], cwd=project, check=True)
    assert plan.cache_shares_files(project) is shares
    assert plan.cache_shares_files(plain) is False        # no DVC project: counted as copies
    assert plan.cache_shares_files(ROOT) is True          # this project: hardlink,copy (.dvc/config)


def test_stage_times_scale_with_images_and_cores(benchmark):
    assert benchmark is not None and benchmark["scale"] == 1.0
    same = dict(plan.stage_times(benchmark, sum(benchmark["images"].values()), benchmark["machine"]["cores"]))
    assert same["features"] == pytest.approx(next(s["wall_s"] for s in benchmark["stages"] if s["stage"] == "features"))
    double = dict(plan.stage_times(benchmark, 2 * sum(benchmark["images"].values()), 2 * benchmark["machine"]["cores"]))
    assert double["features"] == pytest.approx(same["features"])


def test_features_time_follows_the_vgg16_work_up_to_the_cut(benchmark):
    # Summed by hand from VGG16's layer table at 100x100: 2.71 G multiply-adds up to block4_pool; block5
    # adds three 3x3 convs of 512 channels at 6x6, 9.4% more.
    assert plan.vgg16_work("block4_pool") == 2_709_826_560
    ratio = plan.vgg16_work("block5_pool") / plan.vgg16_work("block4_pool")
    assert ratio == pytest.approx(1 + 3 * 6 * 6 * 512 * 512 * 9 / plan.vgg16_work("block4_pool"))
    images, cores = sum(benchmark["images"].values()), benchmark["machine"]["cores"]
    at4 = dict(plan.stage_times(benchmark, images, cores, "block4_pool"))
    at5 = dict(plan.stage_times(benchmark, images, cores, "block5_pool"))
    assert at5["features"] == pytest.approx(at4["features"] * ratio) and at5["prepare"] == at4["prepare"]


def test_plan_states_versions_sizes_disk_and_time(fake, creds, benchmark, capsys):  # noqa: F811
    assert run_cli(plan.main, []) == 0
    out = capsys.readouterr().out
    for name in ("trainval", "test"):
        size = len(fake.datasets[fake.slugs[name]]) / GB
        assert f"{name}: {fake.slugs[name]} version 4, updated 2021-04-15, {size:.1f} GB, licence CC0: Public Domain" in out
    assert "needed;" in out and "free here" in out and "data/features:" in out
    assert "min  features" in out and "in all, after the download" in out
    # Metadata only: nothing downloaded.
    assert fake.blob_gets() == [] and not fake.rpc_calls("datasets.DatasetApiService/DownloadDataset")


def test_run_refused_in_one_line_when_the_disk_is_short(fake, creds, benchmark, capsys, monkeypatch):  # noqa: F811
    started = []
    monkeypatch.setattr(plan, "free_bytes", lambda path=Path("."): 10**6)
    monkeypatch.setattr(plan.subprocess, "call", lambda command: started.append(command) or 0)
    code = run_cli(plan.main, ["--run"])
    captured = capsys.readouterr()
    assert code == 1 and started == []
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "GB are free" in errors[0] and "dvc cache dir" in errors[0], captured.err
    assert "<- not enough" in captured.out


def test_run_starts_the_experiment_with_the_real_settings(fake, creds, benchmark, capsys, monkeypatch):  # noqa: F811
    started = []
    monkeypatch.setattr(plan, "free_bytes", lambda path=Path("."): 10**13)
    monkeypatch.setattr(plan.subprocess, "call", lambda command: started.append(command) or 0)
    assert run_cli(plan.main, ["--run", "--name", "real-1"]) == 0
    assert started == [["dvc", "exp", "run", "-n", "real-1", "-S", "download.source=kaggle",
                        "-S", "train.transfer.weights=imagenet", "-S", "train.transfer.feature_layer=block5_pool"]]


def test_make_real_runs_through_dvc_up_to_the_imagenet_file(tmp_path, monkeypatch):
    """`python -m stages.plan --run` (what make real runs) in a tiny copy of the project: the real
    download through DVC from the fake Kaggle, prepare, tfrecords; then features needs the ImageNet
    file, which cannot be downloaded here: one line naming it, its MD5 and where to put it."""
    import yaml

    project = make_tiny_project(tmp_path / "project")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    assert raw["prepare"]["splits"] == SPLITS        # the fake's archives have the real layouts
    for key, value in (("user.name", "test"), ("user.email", "test@example.com")):   # HOME is empty below
        subprocess.run(["git", "config", key, value], cwd=project, check=True)
    server = FakeKaggle(username=USERNAME, key=KEY)
    # Archives in the real layouts, with images the tiny sample would have (distinct faces per split).
    sample_params = load_params(project / "params.yaml").download.sample
    for name in ("trainval", "test"):
        sample.generate(name, tmp_path / f"src-{name}", sample_params)
        server.add_dataset(raw["download"]["datasets"][name]["slug"], make_archive(tmp_path / f"src-{name}"))
    keras_home = tmp_path / "keras"
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAGGLE_")}
    env.update({"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY, "KERAS_HOME": str(keras_home),
                "HOME": str(tmp_path / "home"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
                "FACEGENDER_KAGGLE_ENDPOINT": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
    # A VGG16 notop weights file in Keras's own format (random weights: the ImageNet file cannot be had here).
    full = keras.applications.VGG16(include_top=False, weights=None, input_shape=(100, 100, 3))
    weights_file = tmp_path / "vgg16_notop.h5"
    with h5py.File(weights_file, "w") as handle:
        keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group(handle, full)
    with server:
        env["FACEGENDER_KAGGLE_ENDPOINT"] = server.url
        result = subprocess.run([sys.executable, "-m", "stages.plan", "--run", "--name", "real-test"], cwd=project,
                                env=env, capture_output=True, text=True, timeout=600)
        # make real WEIGHTS=FILE: the same run with that file for the base; it goes to the end.
        second = subprocess.run([sys.executable, "-m", "stages.plan", "--run", "--name", "real-own-weights",
                                 "--weights", str(weights_file)], cwd=project, env=env, capture_output=True, text=True,
                                timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "version 4, updated 2021-04-15" in result.stdout                          # the plan came first
    assert "dvc exp run -n real-test -S download.source=kaggle" in result.stdout
    for stage in ("download", "prepare", "tfrecords", "features"):
        assert f"Running stage '{stage}'" in output, (stage, output[-3000:])
    assert ("error: could not download the ImageNet VGG16 weights (" in output
            and "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (MD5 6d6bbae143d832006294945121d1f1fc)"
            f" in {keras_home / 'models'}/" in output), output[-3000:]
    assert USERNAME not in output and KEY not in output

    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    for stage in ("download", "prepare", "tfrecords"):           # done by the first run: not again
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout + second.stderr, stage
    assert f"train.transfer.weights={weights_file}" in second.stdout
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=project, env=env, capture_output=True, text=True,
                           check=True).stdout
    assert "real-own-weights" in shown
    page = (project / "reports/report.html").read_text()
    data = page[page.index('<section id="data">'):page.index('<section id="models">')]
    assert "version 4 (the latest at download time), updated 2021-04-15" in data
    assert "VGG16, weights from vgg16_notop.h5" in page
    assert USERNAME not in second.stdout + second.stderr and KEY not in (project / "metrics/download.json").read_text()
