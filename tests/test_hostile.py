"""A hostile raw tree: every file under the split folders is prepared or listed with a reason, nothing
is followed out of data/raw, duplicates across splits are caught, and predict gets through it too."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import predict, prepare
from stages.contracts import PrepareSummary
from tests.helpers import png_bytes, run_cli

SIZE = 100


def photo(seed: int, size: tuple[int, int] = (120, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def hostile_tree(raw: Path, outside: Path) -> dict[str, str]:
    """data/raw/{trainval,test} with the odd things scraped data and careless hands produce. Returns
    {kind: file} for the hostile ones (relative to raw)."""
    train, val, test = raw / "trainval/Train", raw / "trainval/Test", raw / "test/faces"
    for folder, seeds in ((train / "Female", 0), (train / "Male", 10), (val / "Female", 20), (val / "Male", 30),
                          (test / "woman", 40), (test / "man", 50)):
        for i in range(3):
            write(folder / f"img{i}.jpg", jpeg(photo(seeds + i)))
    (outside / "secret.jpg").write_bytes(jpeg(photo(99)))
    kinds = {
        "case-variant class folder": write(train / "female" / "lower.jpg", jpeg(photo(60))),
        "unknown folder": write(train / "Other" / "who.jpg", jpeg(photo(61))),
        "file beside the class folders": write(train / "stray.jpg", jpeg(photo(62))),
        "hidden folder": write(train / "Male" / ".ipynb_checkpoints" / "img0-checkpoint.jpg", jpeg(photo(63))),
        "empty file": write(train / "Male" / "empty.jpg", b""),
        "truncated JPEG": write(train / "Male" / "cut.jpg", jpeg(photo(64))[:300]),
        "text with an image name": write(train / "Male" / "notes.png", b"hello, not a PNG"),
        "Thumbs.db": write(train / "Female" / "Thumbs.db", b"\x00" * 64),
        ".DS_Store": write(train / "Female" / ".DS_Store", b"\x00" * 64),
        "upper-case extension": write(train / "Female" / "LOUD.JPG", jpeg(photo(65))),
        "unicode and spaces": write(train / "Female" / "żółw é 1.jpg", jpeg(photo(66))),
        "long nested name": write(train / "Female" / ("a" * 120) / ("b" * 120) / ("c" * 100 + ".jpg"), jpeg(photo(67))),
        "16-bit PNG": write(train / "Male" / "deep.png", png_bytes(Image.fromarray(
            (np.tile(np.linspace(0, 65535, 120), (120, 1))).astype(np.uint16)))),
        "CMYK JPEG": write(train / "Male" / "cmyk.jpg", jpeg(photo(68).convert("CMYK"))),
        "palette with transparency": write(train / "Female" / "pal.png", png_bytes(photo(69).convert("P"), transparency=0)),
        "grey with alpha": write(train / "Female" / "la.png", png_bytes(photo(70).convert("LA"))),
        "huge declared size": write(train / "Male" / "bomb.png", png_bytes(Image.new("L", (6000, 5000)))),
        "same picture in train and test": write(train / "Male" / "leak.jpg", (test / "man" / "img0.jpg").read_bytes()),
        "directory named like an image": (train / "Male" / "folder.jpg"),
    }
    kinds["directory named like an image"].mkdir()
    write(kinds["directory named like an image"] / "inner.jpg", jpeg(photo(71)))
    links = {
        "link out of data/raw": (train / "Male" / "escape.jpg", outside / "secret.jpg"),
        "broken link": (train / "Male" / "gone.jpg", outside / "nothing.jpg"),
        "link loop": (train / "Male" / "loop", train / "Male"),
        "link to a folder outside": (train / "Female" / "elsewhere", outside),
    }
    for kind, (link, target) in links.items():
        os.symlink(target, link)
        kinds[kind] = link
    return {kind: str(path.relative_to(raw)) for kind, path in kinds.items()}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, repo_params):
    root = tmp_path_factory.mktemp("hostile")
    raw, outside, out = root / "data/raw", root / "outside", root / "prepared"
    outside.mkdir()
    kinds = hostile_tree(raw, outside)
    out.mkdir()
    params = repo_params.prepare.model_copy(update={"max_pixels": 20_000_000})
    summary = prepare.prepare(raw, out, params, workers=2)
    return raw, out, kinds, summary


def files_under_split_folders(raw: Path) -> list[Path]:
    """Every file and every link under the three split folders, links not followed."""
    found = []
    for folder in (raw / "trainval/Train", raw / "trainval/Test", raw / "test/faces"):
        for current, folders, files in os.walk(folder):
            found += [Path(current) / name for name in files]
            found += [Path(current) / name for name in folders if (Path(current) / name).is_symlink()]
    return found


def test_every_file_is_prepared_or_listed(hostile):
    raw, out, _, summary = hostile
    prepared = [path for path in out.rglob("*.png")]
    listed = {item.file for item in summary.skipped}
    assert len(listed) == len(summary.skipped)   # each file once
    assert len(prepared) + len(listed) == len(files_under_split_folders(raw))
    assert summary.counts["train"]["total"] + summary.counts["val"]["total"] + summary.counts["test"]["total"] \
        == len(prepared)


@pytest.mark.parametrize("kind, reason", [
    ("unknown folder", "not a class of prepare.splits.train.classes"),
    ("file beside the class folders", "not inside a class folder"),
    ("hidden folder", "hidden folder"),
    ("empty file", "empty file"),
    ("truncated JPEG", "cannot decode"),
    ("text with an image name", "not an image Pillow can identify"),
    ("Thumbs.db", "not an image file"),
    (".DS_Store", "not an image file"),
    ("huge declared size", "declares 6000x5000 pixels"),
    ("same picture in train and test", "same pixels as test image"),
    ("link out of data/raw", "symbolic link"),
    ("broken link", "symbolic link"),
    ("link loop", "symbolic link"),
    ("link to a folder outside", "symbolic link"),
])
def test_each_hostile_kind_is_listed_with_its_reason(hostile, kind, reason):
    raw, _, kinds, summary = hostile
    reasons = {Path(item.file).relative_to(raw).as_posix(): item.reason for item in summary.skipped}
    assert reason in reasons[kinds[kind]], reasons.get(kinds[kind])


@pytest.mark.parametrize("kind", ["case-variant class folder", "upper-case extension", "unicode and spaces",
                                  "long nested name", "16-bit PNG", "CMYK JPEG", "palette with transparency",
                                  "grey with alpha"])
def test_odd_but_good_files_are_prepared(hostile, kind):
    raw, out, kinds, summary = hostile
    assert kinds[kind] not in {Path(item.file).relative_to(raw).as_posix() for item in summary.skipped}


def test_merged_folders_long_names_and_deep_pixels(hostile):
    _, out, _, _ = hostile
    assert (out / "train/Female/lower.png").is_file()          # train/female merged into Female
    assert all(len(path.name.encode()) <= 255 for path in out.rglob("*.png"))
    deep = np.asarray(Image.open(out / "train/Male/deep.png"))
    assert deep.min() < 10 and deep.max() > 245 and (deep == 255).mean() < 0.05   # a gradient, not white
    assert not (out / "train/Male/escape.png").exists()       # nothing read from outside data/raw


def test_duplicates_are_counted_and_the_training_copy_dropped(hostile):
    _, out, _, summary = hostile
    assert summary.duplicates == {"train-test": 1} and summary.duplicates_dropped == 1
    assert not (out / "train/Male/leak.png").exists() and (out / "test/Male/img0.png").exists()


def test_duplicates_can_be_kept(tmp_path, repo_params):
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    outside.mkdir()
    hostile_tree(raw, outside)
    (tmp_path / "out").mkdir()
    params = repo_params.prepare.model_copy(update={"drop_duplicates": False, "max_pixels": 20_000_000})
    summary = prepare.prepare(raw, tmp_path / "out", params, workers=1)
    assert summary.duplicates == {"train-test": 1} and summary.duplicates_dropped == 0
    assert (tmp_path / "out/train/Male/leak.png").exists()
    assert isinstance(summary, PrepareSummary)


def test_predict_gets_through_the_hostile_tree(hostile, tmp_path, monkeypatch, capsys):
    import keras

    from stages.models import baseline

    raw, _, _, _ = hostile
    keras.utils.set_random_seed(1)
    baseline.make_model((SIZE, SIZE, 3)).save(tmp_path / "model.keras")
    (tmp_path / "training.json").write_text('{"classes": ["Female", "Male"]}')
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(tmp_path / "model.keras"), str(raw), "--csv", "out.csv", "--threshold", "0.5"],
                   ) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "warning:" in err
