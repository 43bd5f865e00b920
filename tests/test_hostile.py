"""A hostile raw tree: every file under the split folders is prepared or listed with a reason, nothing
is followed out of data/raw, duplicates across splits are caught, and predict gets through it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import predict, prepare
from stages.contracts.prepared import PrepareSummary
from tests.helpers import files_under_split_folders, hostile_tree, run_cli, unzip_prepared

SIZE = 100


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, repo_params):
    root = tmp_path_factory.mktemp("hostile")
    raw, outside, out = root / "data/raw", root / "outside", root / "prepared"
    outside.mkdir()
    kinds = hostile_tree(raw, outside)
    out.mkdir()
    params = repo_params.prepare.model_copy(update={"max_pixels": 20_000_000})
    summary = prepare.prepare(raw, out, params, workers=2)
    return raw, unzip_prepared(out, root / "unzipped"), kinds, summary


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


def found_pairs(summary: PrepareSummary) -> dict[str, tuple[int, int]]:
    """(exact, near) pairs of the same picture per pair of splits, where there are any."""
    return {key: (found.exact, found.near) for key, found in summary.duplicates.items() if found.exact or found.near}


def test_duplicates_are_counted_and_the_training_copy_dropped(hostile):
    _, out, _, summary = hostile
    assert found_pairs(summary) == {"train-test": (1, 0)} and summary.duplicates_dropped == 1
    assert not (out / "train/Male/leak.png").exists() and (out / "test/Male/img0.png").exists()


def test_duplicates_can_be_kept(tmp_path, repo_params):
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    outside.mkdir()
    hostile_tree(raw, outside)
    (tmp_path / "out").mkdir()
    params = repo_params.prepare.model_copy(update={"drop_duplicates": False, "max_pixels": 20_000_000})
    summary = prepare.prepare(raw, tmp_path / "out", params, workers=1)
    assert found_pairs(summary) == {"train-test": (1, 0)} and summary.duplicates_dropped == 0
    assert (unzip_prepared(tmp_path / "out", tmp_path / "tree") / "train/Male/leak.png").exists()
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
