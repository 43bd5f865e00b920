"""`make real` end to end: `python -m stages.plan --run` in a tiny copy of the project, through real DVC,
against the local fake Kaggle; up to the ImageNet weights file it cannot download here, then on to the
report with a weights file of one's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras

from stages.common.config import load_params
from stages.images import offline_sample
from tests.fake_kaggle import FakeKaggle, make_archive
from tests.helpers import make_tiny_project
from tests.fake_kaggle import KEY, SPLITS, USERNAME


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
        offline_sample.generate(name, tmp_path / f"src-{name}", sample_params)
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
