"""Decompression bombs: small files declaring huge images are refused before decoding.

The bombs are the ones from the report: a 657 KB PNG declaring 13000x13000 RGBA and a 164 KB
greyscale one. Before the pixel budget (prepare.max_pixels) prepare peaked at 4.0 GB on them and
predict at 4.7 GB. The real stages run here as child processes, and a small wrapper process reports
the peak resident memory of its descendants (getrusage RUSAGE_CHILDREN: the largest of them, pool
workers included), so each measurement is that one command and nothing of pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import predict
from stages.common.config import SampleParams, parse_params
from stages.common.errors import UserError
from stages.images import offline_sample
from stages.images.reading import DEFAULT_MAX_PIXELS, UnreadableImage, load_rgb
from tests.helpers import unzip_prepared

ROOT = Path(__file__).resolve().parents[1]
SIDE = 13000
BOMB_REASON = f"declares {SIDE}x{SIDE} pixels (169.0 MP), over prepare.max_pixels (25.0 MP)"
MB = 1024  # ru_maxrss is in KB on Linux
PREPARE_LIMIT_KB = 300 * MB
# predict imports TensorFlow (about 0.7 GB before any image is read): the bombs may add this much.
ADDED_LIMIT_KB = 100 * MB

# --- PNGs written by hand: header, zlib streamed over rows of zeros, never the whole image --------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, RGBA = 0, 2, 6          # PNG colour types
CHANNELS = {GREY: 1, RGB: 3, RGBA: 4}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, colour_type: int) -> bytes:
    """The signature and IHDR chunk (8 bits per sample) of a PNG: all Image.open reads."""
    return PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))


def write_bomb(path: Path, width: int, height: int, colour_type: int) -> Path:
    """A valid PNG of black (and transparent) pixels; memory: one row, plus the compressed stream."""
    row = bytes(1 + width * CHANNELS[colour_type])       # filter byte 0, then zero samples
    compressor = zlib.compressobj(9)
    idat = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_header(width, height, colour_type) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {"rgba": write_bomb(folder / "bomb_rgba.png", SIDE, SIDE, RGBA),
            "grey": write_bomb(folder / "bomb_grey.png", SIDE, SIDE, GREY)}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # reading the header here, on purpose
def test_bombs_are_small_files_declaring_huge_images(bombs):
    sizes = {name: path.stat().st_size for name, path in bombs.items()}
    assert 500_000 < sizes["rgba"] < 800_000, sizes      # the report: 657 KB
    assert 100_000 < sizes["grey"] < 250_000, sizes      # the report: 164 KB
    for name, mode in (("rgba", "RGBA"), ("grey", "L")):
        with Image.open(bombs[name]) as image:           # the header only
            assert (image.mode, image.size) == (mode, (SIDE, SIDE))


# --- the loader: refused from the header ----------------------------------------------------------

@pytest.mark.parametrize("name", ["rgba", "grey"])
def test_load_rgb_refuses_a_bomb_naming_its_size(bombs, name):
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(bombs[name], 100)
    assert str(caught.value) == BOMB_REASON


def test_refused_before_decoding(tmp_path):
    """A header with no pixel data at all: over the budget, it is the size that is reported."""
    path = tmp_path / "header_only.png"
    path.write_bytes(png_header(6000, 6000, RGB) + png_chunk(b"IEND", b""))
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, 100)
    assert str(caught.value) == "declares 6000x6000 pixels (36.0 MP), over prepare.max_pixels (25.0 MP)"
    # Within a larger budget it is decoded, and then it is broken.
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, 100, max_pixels=40_000_000)
    assert str(caught.value).startswith("cannot decode image")


def test_budget_is_inclusive(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(path)
    assert load_rgb(path, 32, max_pixels=200).shape == (32, 32, 3)
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, 32, max_pixels=199)
    assert str(caught.value) == "declares 20x10 pixels (200 pixels), over prepare.max_pixels (199 pixels)"


def test_over_pillows_own_limit(tmp_path):
    """Over 2 x Image.MAX_IMAGE_PIXELS Image.open itself refuses: still an UnreadableImage naming the size."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(20000, 20000, GREY) + png_chunk(b"IEND", b""))
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, 100)
    assert str(caught.value).startswith("declares 400000000 pixels (400.0 MP), over Pillow's limit")


# --- the budget in params.yaml, and predict's copy of it --------------------------------------------

def test_params_default_is_the_loaders_default(repo_params):
    # predict falls back to DEFAULT_MAX_PIXELS without a params.yaml: the same budget as prepare.
    assert repo_params.prepare.max_pixels == DEFAULT_MAX_PIXELS == 25_000_000


@pytest.mark.parametrize("value", [0, -1, 2.5e7, 25_000_000.0, "25000000", True, None])
def test_max_pixels_must_be_a_positive_int(raw_params, value):
    raw_params["prepare"]["max_pixels"] = value
    with pytest.raises(UserError) as caught:
        parse_params(raw_params)
    assert "prepare.max_pixels:" in str(caught.value)


def test_max_pixels_is_required(raw_params):
    del raw_params["prepare"]["max_pixels"]
    with pytest.raises(UserError) as caught:
        parse_params(raw_params)
    assert "prepare.max_pixels: missing" in str(caught.value)


def test_predict_takes_the_budget_from_params(raw_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert predict.read_settings().max_pixels == DEFAULT_MAX_PIXELS            # no params.yaml here
    raw_params["prepare"]["max_pixels"] = 1234
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    assert predict.read_settings().max_pixels == 1234
    (tmp_path / "params.yaml").write_text("prepare: [")               # unreadable: the default
    assert predict.read_settings().max_pixels == DEFAULT_MAX_PIXELS


# --- the real stages, in their own processes: peak memory -------------------------------------------

MEASURE = """\
import json, resource, subprocess, sys
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured(command: list[str], cwd: Path) -> dict:
    """Run `command` in cwd as a grandchild; its exit code, output and peak RSS (KB, the largest process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    wrapper = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=cwd, env=env,
                             capture_output=True, text=True, timeout=600, check=True)
    return json.loads(wrapper.stdout)


def describe(run: dict) -> str:
    return f"rc {run['rc']}, peak {run['peak_kb'] / MB:.0f} MB; stderr tail: {run['stderr'][-1500:]}"


TINY = SampleParams(seed=3, train_per_class=3, val_per_class=2, unlabeled=1, test_images=4, test_male_fraction=0.5,
                    test_sizes=[64, 260])


def make_project(root: Path, bombs: dict[str, Path] | None) -> Path:
    """A project folder as prepare expects it: params.yaml and a tiny data/raw, with the bombs among the photos."""
    root.mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    for name in ("trainval", "test"):
        offline_sample.generate(name, root / "data/raw" / name, TINY)
    if bombs:
        shutil.copy(bombs["rgba"], root / "data/raw/trainval/Train/Female/zz_bomb_rgba.png")
        shutil.copy(bombs["grey"], root / "data/raw/test/faces/man/zz_bomb_grey.png")
    return root


@pytest.mark.e2e
def test_prepare_skips_bombs_in_bounded_memory(bombs, tmp_path):
    normal = measured([sys.executable, "-m", "stages.prepare"], make_project(tmp_path / "normal", None))
    project = make_project(tmp_path / "bombs", bombs)
    run = measured([sys.executable, "-m", "stages.prepare"], project)
    print(f"\nprepare peak RSS: tiny tree {normal['peak_kb'] / MB:.0f} MB, "
          f"with the two bombs {run['peak_kb'] / MB:.0f} MB")
    assert normal["rc"] == 0, describe(normal)
    assert run["rc"] == 0, describe(run)
    assert run["peak_kb"] < PREPARE_LIMIT_KB, describe(run)
    assert run["peak_kb"] < normal["peak_kb"] + ADDED_LIMIT_KB, (describe(run), describe(normal))

    summary = json.loads((project / "metrics/prepare.json").read_text())
    reasons = {Path(item["file"]).name: (item["split"], item["reason"]) for item in summary["skipped"]}
    assert reasons["zz_bomb_rgba.png"] == ("train", BOMB_REASON)
    assert reasons["zz_bomb_grey.png"] == ("test", BOMB_REASON)
    normal_summary = json.loads((tmp_path / "normal/metrics/prepare.json").read_text())
    assert summary["counts"] == normal_summary["counts"]          # nothing else lost, nothing written for them
    assert summary["skipped_count"] == normal_summary["skipped_count"] + 2
    assert not list(unzip_prepared(project / "data/prepared", tmp_path / "tree").rglob("zz_bomb*"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained, seeded baseline saved as train saves it, with its classes beside it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from stages.models import baseline

    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(7)
    baseline.make_model((100, 100, 3)).save(folder / "model.keras")
    (folder / "training.json").write_text(json.dumps({"model": "baseline", "classes": ["Female", "Male"]}))
    return folder


def warning_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip().startswith("warning:")]


@pytest.mark.e2e
def test_predict_skips_bombs_in_bounded_memory(bombs, model_dir, tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    face = offline_sample.draw_face(np.random.default_rng(1), "Male", offline_sample.TRAINVAL_STUDIO)
    good = tmp_path / "face.jpg"
    good.write_bytes(offline_sample.jpeg_bytes(face, 90))
    command = [sys.executable, "-m", "stages.predict", str(model_dir)]

    normal = measured([*command, str(good)], tmp_path)
    run = measured([*command, str(bombs["rgba"]), str(bombs["grey"]), str(good)], tmp_path)
    only_bombs = measured([*command, str(bombs["rgba"]), str(bombs["grey"])], tmp_path)
    print(f"\npredict peak RSS: one photo {normal['peak_kb'] / MB:.0f} MB, with the two bombs "
          f"{run['peak_kb'] / MB:.0f} MB, the bombs alone {only_bombs['peak_kb'] / MB:.0f} MB")

    assert normal["rc"] == 0, describe(normal)
    assert run["rc"] == 0, describe(run)
    expected_warnings = [f"warning: {bombs[name]}: skipped, {BOMB_REASON}" for name in ("rgba", "grey")]
    assert warning_lines(run["stderr"]) == expected_warnings
    assert [line.split()[-1] for line in run["stdout"].splitlines()[1:]] == [str(good)]
    assert "predicted 1 image; skipped 2 unreadable" in run["stderr"]
    # Nothing readable: exit 1, as for any folder of broken files.
    assert only_bombs["rc"] == 1, describe(only_bombs)
    assert "error: none of the 2 files could be read as an image" in only_bombs["stderr"]
    assert len(warning_lines(only_bombs["stderr"])) == 2
    # TensorFlow alone takes about 0.7 GB: the bombs must add next to nothing to it.
    for bombed in (run, only_bombs):
        assert bombed["peak_kb"] < normal["peak_kb"] + ADDED_LIMIT_KB, (describe(bombed), describe(normal))
