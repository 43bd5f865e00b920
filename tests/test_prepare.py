"""prepare: a tiny generated sample -> prepared/{train,val,test}/{Female,Male}/*.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import prepare
from stages.common.config import PrepareParams, SampleParams, parse_params
from stages.common.errors import UserError
from stages.contracts.prepared import PrepareSummary
from stages.images import offline_sample
from stages.images.reading import load_rgb
from tests.helpers import hashes, raw_repo_params, unzip_prepared

SAMPLE = SampleParams(seed=5, train_per_class=6, val_per_class=5, unlabeled=2,
                      test_images=12, test_male_fraction=0.65, test_sizes=[64, 260])
TRAIN, VAL = SAMPLE.train_per_class, SAMPLE.val_per_class  # per class
MEN, WOMEN = 8, 4  # round(12 * 0.65), the rest
SPLITS = ("train", "val", "test")
CLASSES = ("Female", "Male")
# What the datasets' class folders mean; a folder mapped to the other class would invert labels.
FOLDER_GENDER = {"female": "Female", "woman": "Female", "women": "Female",
                 "male": "Male", "man": "Male", "men": "Male"}


@pytest.fixture(scope="module")
def params(repo_params) -> PrepareParams:
    return repo_params.prepare


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    for name in ("trainval", "test"):
        offline_sample.generate(name, root / name, SAMPLE)
    return root


def run_prepare(raw: Path, out: Path, params: PrepareParams, workers: int = 1) -> tuple[Path, PrepareSummary]:
    """prepare into out; returns its archives unpacked as folders (<split>/<Class>/*.png) and the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = prepare.prepare(raw, out, params, workers=workers)
    # beside the archives: groups.csv, and duplicates.png where prepare found a pair
    assert {f"{split}.zip" for split in SPLITS} | {"groups.csv"} <= {p.name for p in out.iterdir()}
    return unzip_prepared(out, out.parent / f"{out.name}-unzipped"), summary


@pytest.fixture(scope="module")
def prepared(raw, params, tmp_path_factory) -> tuple[Path, PrepareSummary]:
    return run_prepare(raw, tmp_path_factory.mktemp("prepared") / "out", params, workers=2)


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def params_with(params: PrepareParams, **split_changes) -> PrepareParams:
    raw = params.model_dump()
    for split, changes in split_changes.items():
        raw["splits"][split].update(changes)
    return PrepareParams.model_validate(raw)


# --- output layout and content ----------------------------------------------------------------

def test_layout(prepared):
    out, _ = prepared
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)
    for split in SPLITS:
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(CLASSES)
        for label in CLASSES:
            files = list((out / split / label).iterdir())
            assert files and all(p.suffix == ".png" and p.is_file() for p in files)


def test_every_image_is_an_rgb_png_of_image_size(prepared, params):
    out, _ = prepared
    files = sorted(out.rglob("*.png"))
    assert len(files) == 2 * TRAIN + 2 * VAL + MEN + WOMEN
    for path in files:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "RGB", path
            assert image.size == (params.image_size, params.image_size), path


def test_counts_per_split_and_class(prepared, params):
    out, summary = prepared
    expected = {
        "train": {"Female": TRAIN, "Male": TRAIN, "total": 2 * TRAIN},
        "val": {"Female": VAL, "Male": VAL, "total": 2 * VAL},  # the broken files in Test/Male are skipped
        "test": {"Female": WOMEN, "Male": MEN, "total": MEN + WOMEN},
    }
    assert summary.counts == expected
    assert summary.image_size == params.image_size
    for split in SPLITS:
        for label in CLASSES:
            assert len(pngs(out / split / label)) == summary.counts[split][label], (split, label)


def test_test_labels_follow_the_mapping(prepared, raw):
    out, _ = prepared
    men = [p for p in (raw / "test/faces/man").iterdir() if "empty" not in p.name and "truncated" not in p.name]
    women = [p for p in (raw / "test/faces/woman").iterdir() if p.suffix in (".jpg", ".png")]
    assert len(pngs(out / "test/Male")) == len(men) == MEN
    assert len(pngs(out / "test/Female")) == len(women) == WOMEN
    assert all(p.name.startswith("man_") for p in pngs(out / "test/Male"))
    assert all(p.name.startswith("woman_") for p in pngs(out / "test/Female"))


def test_train_and_val_come_from_the_right_folders(prepared, raw):
    out, _ = prepared
    for split, folder in (("train", "Train"), ("val", "Test")):
        for label in CLASSES:
            sources = sorted(p.stem for p in (raw / "trainval" / folder / label).iterdir()
                             if p.suffix in (".jpg", ".png") and p.stat().st_size and "truncated" not in p.name)
            assert [p.stem for p in pngs(out / split / label)] == sources


def test_pixels_are_the_loaders_output(prepared, raw, params):
    out, _ = prepared
    pairs = [
        ("train/Female/00001_alpha.png", "trainval/Train/Female/00001_alpha.png"),
        ("train/Male/00001_exif.png", "trainval/Train/Male/00001_exif.jpg"),
        ("train/Male/00000_cmyk.png", "trainval/Train/Male/00000_cmyk.jpg"),
        ("val/Female/00003.png", "trainval/Test/Female/00003.jpg"),
        ("test/Male/man_00004.png", "test/faces/man/man_00004.jpg"),  # resized from another size
    ]
    for prepared_name, raw_name in pairs:
        written = np.asarray(Image.open(out / prepared_name))
        assert np.array_equal(written, load_rgb(raw / raw_name, params.image_size)), prepared_name
    gray = np.asarray(Image.open(out / "train/Female/00000_gray.png"))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    alpha = np.asarray(Image.open(out / "train/Female/00001_alpha.png"))
    assert alpha[0, 0].tolist() == [255, 255, 255]


def test_skipped_lists_exactly_the_broken_and_junk_files(prepared, raw):
    _, summary = prepared
    skipped = {(item.split, Path(item.file).relative_to(raw).as_posix()): item.reason
               for item in summary.skipped}
    assert set(skipped) == {
        ("train", "trainval/Train/Female/.DS_Store"),
        ("train", "trainval/Train/Female/Thumbs.db"),
        ("val", "trainval/Test/Male/xempty.jpg"),
        ("val", "trainval/Test/Male/xtruncated.jpg"),
        ("test", "test/faces/man/man_empty.jpg"),
        ("test", "test/faces/man/man_truncated.jpg"),
        ("test", "test/faces/woman/.DS_Store"),
        ("test", "test/faces/woman/Thumbs.db"),
    }
    assert summary.skipped_count == len(summary.skipped) == 8
    for (split, name), reason in skipped.items():
        if name.endswith(("Thumbs.db", ".DS_Store")):
            assert reason == "not an image file (name or extension)"
        elif "empty" in name:
            assert reason == "empty file (0 bytes)"
        else:
            assert reason.startswith("cannot decode image") and "truncated" in reason
    # Sorted by split order, then file.
    order = [(SPLITS.index(item.split), item.file) for item in summary.skipped]
    assert order == sorted(order)


def archives(tree: Path) -> Path:
    """The folder of split archives run_prepare unpacked into `tree`."""
    return tree.parent / tree.name.removesuffix("-unzipped")


def test_rerun_is_byte_identical(prepared, raw, params, tmp_path):
    out, summary = prepared
    again, summary_again = run_prepare(raw, tmp_path / "again", params, workers=2)
    assert hashes(archives(again)) == hashes(archives(out))        # the archives themselves, byte for byte
    assert summary_again.counts == summary.counts


def test_workers_do_not_change_output(prepared, raw, params, tmp_path):
    out, summary = prepared
    one, summary_one = run_prepare(raw, tmp_path / "one", params, workers=1)
    first = hashes(out)
    assert len(first) == 2 * TRAIN + 2 * VAL + MEN + WOMEN
    assert hashes(one) == first
    assert hashes(archives(one)) == hashes(archives(out))
    # Same summary apart from where the raw files live (same here).
    assert summary_one == summary


def test_rerun_from_a_copied_raw_tree(prepared, raw, params, tmp_path):
    out, _ = prepared
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    target, _ = run_prepare(copy, tmp_path / "out", params, workers=3)
    assert hashes(archives(target)) == hashes(archives(out))


# --- target_names -----------------------------------------------------------------------------

def test_target_names_plain():
    assert prepare.target_names([Path("a.jpg"), Path("b.jpeg"), Path("c.PNG")]) == ["a.png", "b.png", "c.png"]


def test_target_names_keeps_same_stem_apart():
    names = prepare.target_names([Path("a.jpg"), Path("a.png"), Path("b.jpg")])
    assert names == ["a.png", "a__2.png", "b.png"]


def test_target_names_flattens_sub_folders():
    names = prepare.target_names([Path("x/a.jpg"), Path("y/a.jpg"), Path("a.jpg")])
    assert names == ["x__a.png", "y__a.png", "a.png"]
    assert len(set(names)) == 3


@pytest.mark.parametrize("paths", [
    ["a.jpg", "a.png", "a_jpg.png"],
    ["sub/a.jpg", "sub__a.jpg"],
])
def test_target_names_never_collide(paths):
    names = prepare.target_names([Path(p) for p in paths])
    assert len(set(names)) == len(names), names


def test_counts_match_disk_when_names_could_collide(raw, params, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    female = copy / "trainval/Train/Female"
    (female / "sub").mkdir()
    shutil.copy(female / "00002.jpg", female / "sub" / "a.jpg")
    shutil.copy(female / "00003.jpg", female / "sub__a.jpg")
    out, summary = run_prepare(copy, tmp_path / "out", params, workers=1)
    assert len(pngs(out / "train/Female")) == summary.counts["train"]["Female"] == TRAIN + 2


def test_same_stem_files_both_prepared(raw, params, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    female = copy / "trainval/Train/Female"
    Image.open(female / "00002.jpg").save(female / "00002.png")  # same stem, other format
    (female / "nested").mkdir()
    shutil.copy(female / "00003.jpg", female / "nested" / "00003.JPG")
    out, summary = run_prepare(copy, tmp_path / "out", params, workers=1)
    names = sorted(p.name for p in pngs(out / "train/Female"))
    assert {"00002.png", "00002__2.png", "nested__00003.png", "00003.png"} <= set(names)
    assert len(names) == summary.counts["train"]["Female"] == TRAIN + 2


def test_hidden_sub_folders_are_not_prepared(raw, params, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    hidden = copy / "trainval/Train/Female/.ipynb_checkpoints"
    hidden.mkdir()
    shutil.copy(copy / "trainval/Train/Female/00002.jpg", hidden / "00002.jpg")
    out, summary = run_prepare(copy, tmp_path / "out", params, workers=1)
    assert summary.counts["train"]["Female"] == TRAIN
    assert not any(p.name.startswith(".") for p in out.rglob("*"))


# --- errors -----------------------------------------------------------------------------------

def test_missing_dataset_folder(raw, params, tmp_path):
    partial = tmp_path / "raw"
    shutil.copytree(raw / "trainval", partial / "trainval")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as caught:
        prepare.prepare(partial, out, params, workers=1)
    message = str(caught.value)
    assert str(partial / "test") in message
    assert "download" in message
    assert "\n" not in message
    assert list(out.iterdir()) == []  # nothing written before the check


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_wrong_folder_names_the_param(raw, params, tmp_path, split):
    bad = params_with(params, **{split: {"folder": "nonexistent"}})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as caught:
        prepare.prepare(raw, out, bad, workers=1)
    message = str(caught.value)
    assert f"prepare.splits.{split}.folder" in message
    assert "'nonexistent'" in message
    assert "\n" not in message


def test_no_folder_with_two_candidates_is_ambiguous(raw, params, tmp_path):
    bad = params_with(params, train={"folder": None})  # Train/ and Test/ both hold Female, Male
    with pytest.raises(UserError) as caught:
        prepare.account_for_files(raw, bad)
    assert "several" in str(caught.value)
    assert "prepare.splits.train.folder" in str(caught.value)


def test_wrong_class_name_names_the_param(raw, params):
    raw_params = params.model_dump()
    raw_params["splits"]["test"]["classes"] = {"men": "Male", "woman": "Female"}
    bad = PrepareParams.model_validate(raw_params)
    with pytest.raises(UserError) as caught:
        prepare.account_for_files(raw, bad)
    assert "prepare.splits.test" in str(caught.value)
    assert "'men'" in str(caught.value)


def test_class_without_readable_images(raw, params, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    male = copy / "trainval/Train/Male"
    for path in male.iterdir():
        path.write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as caught:
        prepare.prepare(copy, out, params, workers=1)
    assert "train/Male" in str(caught.value)
    assert "val/" not in str(caught.value)


def test_plan_lists_tasks_in_order(raw, params):
    tasks, skipped = prepare.account_for_files(raw, params)
    assert len(tasks) == 2 * TRAIN + 2 * VAL + 2 + MEN + 2 + WOMEN  # broken files are only found on decode
    assert [t.split for t in tasks] == sorted((t.split for t in tasks), key=SPLITS.index)
    assert all(t.name.endswith(".png") and "/" not in t.name for t in tasks)
    assert len({(t.split, t.label, t.name) for t in tasks}) == len(tasks)
    assert len(skipped) == 4  # junk in Train/Female and faces/woman


def test_params_in_repo_map_each_folder_to_its_gender(params):
    for split, source in params.splits.items():
        assert sorted(source.classes.values()) == sorted(params.classes), split  # every class, once
        for folder, label in source.classes.items():
            assert FOLDER_GENDER.get(folder.lower()) == label, (split, folder, label)
    assert parse_params(raw_repo_params()).prepare == params
