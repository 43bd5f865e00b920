"""Your own data (download.source: own): the three layouts, the splits drawn for you, groups, and every refusal
in one line that names the file or key."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from stages import download, prepare
from stages.common.config import OwnSplitParams, parse_params
from stages.common.errors import UserError
from stages.contracts.prepared import PrepareSummary, read_groups
from stages.images.own_data import OwnImage, assign_splits, layout_of, list_own_data
from tests.helpers import raw_repo_params, write, write_own_faces, write_params

SHARES = OwnSplitParams(val=0.2, test=0.2, seed=3)


@pytest.fixture
def own_params(repo_params):
    return repo_params.prepare.own


def members(root: Path, split: str) -> list[str]:
    with zipfile.ZipFile(root / f"{split}.zip") as archive:
        return sorted(name for name in archive.namelist() if not name.endswith("/"))


def image(relative: str, label: str = "Female", split: str | None = None) -> OwnImage:
    return OwnImage(relative, label, split, None, relative)


@pytest.mark.parametrize("layout", ["classes", "splits", "csv"])
def test_each_layout_is_recognised_and_every_image_labelled(tmp_path, own_params, layout):
    root = write_own_faces(tmp_path / "faces", layout, per_class=5)
    assert layout_of(root, own_params.classes) == layout
    images, left_out = list_own_data(root, own_params)
    assert len(images) == 10 and left_out == []
    assert sorted({found.label for found in images}) == ["Female", "Male"]
    assert all(found.label.lower() in found.relative for found in images)


def test_the_drawn_splits_are_stratified_fixed_by_the_seed_and_adding_an_image_moves_no_other():
    images = [image(f"f{i:02d}.jpg") for i in range(20)] + [image(f"m{i:02d}.jpg", "Male") for i in range(10)]
    drawn = assign_splits(images, SHARES)
    counts = {(found.split, found.label): 0 for found in drawn}
    for found in drawn:
        counts[found.split, found.label] += 1
    assert counts == {("train", "Female"): 12, ("val", "Female"): 4, ("test", "Female"): 4,
                      ("train", "Male"): 6, ("val", "Male"): 2, ("test", "Male"): 2}
    assert assign_splits(list(reversed(images)), SHARES) == drawn
    before = {found.relative: found.split for found in drawn}
    after = {found.relative: found.split for found in assign_splits(images + [image("f99.jpg")], SHARES)}
    moved = [name for name in before if after[name] != before[name]]
    assert len(moved) <= 1      # a boundary may shift by the one image, never a reshuffle
    assert {found.split for found in assign_splits(images, OwnSplitParams(val=0.2, test=0.2, seed=4))} \
        == {"train", "val", "test"}


def test_given_splits_are_kept_and_a_missing_test_split_is_drawn_from_train():
    images = [image(f"t{i}.jpg", split="train") for i in range(10)] + [image(f"v{i}.jpg", split="val") for i in range(3)]
    drawn = assign_splits(images, SHARES)
    assert sorted(found.relative for found in drawn if found.split == "val") == [f"v{i}.jpg" for i in range(3)]
    assert len([found for found in drawn if found.split == "test"]) == 2     # 0.2 of train's 10
    assert all(found.relative.startswith("t") for found in drawn if found.split == "test")


def run_prepare(raw: Path, out: Path, params) -> PrepareSummary:
    out.mkdir(parents=True)
    return prepare.prepare(raw, out, params, workers=1, own=True)


def test_prepare_writes_the_groups_a_labels_csv_gives(tmp_path, repo_params):
    write_own_faces(tmp_path / "raw" / "own", "csv", per_class=10)
    summary = run_prepare(tmp_path / "raw", tmp_path / "prepared", repo_params.prepare)
    assert sum(summary.counts[split]["total"] for split in ("train", "val", "test")) == 20
    groups = read_groups(tmp_path / "prepared")
    written = [f"{split}/{name}" for split in ("train", "val", "test") for name in members(tmp_path / "prepared", split)]
    assert sorted(groups) == sorted(written)
    with (tmp_path / "raw" / "own" / "labels.csv").open() as handle:
        given = {row["path"].split("/")[1].removesuffix(".jpg"): row["group"] for row in csv.DictReader(handle)}
    assert {file.split("/")[-1].removeprefix("img__").removesuffix(".png"): group
            for file, group in groups.items()} == given


def test_files_that_are_not_images_are_listed_with_their_reason(tmp_path, repo_params):
    own = write_own_faces(tmp_path / "raw" / "own", "classes", per_class=14)
    write(own / "female" / "notes.txt", b"who is who")
    write(own / "README.md", b"my faces")
    write(own / "male" / "broken.jpg", b"")
    summary = run_prepare(tmp_path / "raw", tmp_path / "prepared", repo_params.prepare)
    reasons = {Path(item.file).name: item.reason for item in summary.skipped}
    assert reasons == {"notes.txt": "not an image file (name or extension)", "README.md": "not inside a label folder",
                       "broken.jpg": "empty file (0 bytes)"}


@pytest.mark.parametrize("make, expected", [
    (lambda root: write(root / "photos" / "a.jpg", b"x"),
     "found folders photos and no labels.csv; expected a folder per label (female, male, woman, man: "
     "prepare.own.classes), train/val/test folders holding them, or a labels.csv"),
    (lambda root: write(root / "a.jpg", b"x"), "found no folders and no labels.csv"),
    (lambda root: [write(root / name / "a.jpg", b"x") for name in ("female", "male", "other")],
     "other: label 'other' is not in prepare.own.classes (female, male, woman, man); map it there "
     "(e.g. other: Female) or move its images out"),
    (lambda root: [write(root / name / "a.jpg", b"x") for name in ("train/female", "male")],
     "found split folders (train) beside other folders (male)"),
    (lambda root: write(root / "labels.csv", b"file,class\na.jpg,female\n"),
     "labels.csv: no column path, label (found: file, class); expected columns path, label, split, group"),
    (lambda root: write(root / "labels.csv", b"path,label\na.jpg,female\nb.jpg,robot\n"),
     "labels.csv line 3: label 'robot' is not in prepare.own.classes"),
    (lambda root: write(root / "labels.csv", b"path,label\n../secret.jpg,female\n"),
     "labels.csv line 2: path '../secret.jpg' must be relative and inside"),
    (lambda root: write(root / "labels.csv", b"path,label\na.jpg,female\na.jpg,male\n"),
     "labels.csv line 3: 'a.jpg' is listed already on line 2; list each image once"),
    (lambda root: write(root / "labels.csv", b"path,label,split\na.jpg,female,holdout\n"),
     "labels.csv line 2: split 'holdout' is not train, val or test"),
], ids=["unknown folders", "no folders", "a third label", "splits beside labels", "csv columns", "csv label",
        "csv path outside", "csv twice", "csv split"])
def test_a_wrong_layout_is_one_line_naming_what_was_found_and_what_is_expected(tmp_path, own_params, make, expected):
    root = tmp_path / "faces"
    root.mkdir()
    make(root)
    with pytest.raises(UserError) as error:
        list_own_data(root, own_params)
    message = str(error.value)
    assert expected in message and "\n" not in message
    assert str(root) in message


@pytest.fixture
def own_project(tmp_path, monkeypatch):
    """A project folder (cwd) with the sample's data/raw in place and params pointing at an own folder."""
    work = tmp_path / "work"
    (work / "data" / "raw" / "trainval").mkdir(parents=True)
    (work / "data" / "raw" / "trainval" / "MARKER").write_text("the sample\n")
    monkeypatch.chdir(work)
    raw = raw_repo_params()
    raw["download"]["source"] = "own"
    raw["download"]["own"] = str(tmp_path / "faces")
    write_params(raw)
    return work, raw


def test_download_copies_your_folder_and_leaves_only_it_in_data_raw(own_project, tmp_path, capsys):
    work, raw = own_project
    write_own_faces(tmp_path / "faces", "splits", per_class=4)
    provenance = download.download_all(parse_params(raw))
    assert provenance.source == "own" and provenance.datasets["own"].images == 8
    assert sorted(path.name for path in (work / "data" / "raw").iterdir()) == ["own"]
    assert sorted(p.relative_to(work / "data/raw/own").as_posix() for p in (work / "data/raw/own").rglob("*.jpg")) \
        == sorted(p.relative_to(tmp_path / "faces").as_posix() for p in (tmp_path / "faces").rglob("*.jpg"))
    assert f"your folder '{tmp_path / 'faces'}'" in capsys.readouterr().out


@pytest.mark.parametrize("folder, expected", [
    ("missing", "is not a folder; set download.own in params.yaml to the folder of your labelled faces"),
    ("work/data/mine", "is inside data/, which the pipeline rewrites"),
])
def test_a_folder_download_cannot_use_is_refused_and_data_raw_is_untouched(own_project, tmp_path, folder, expected):
    work, raw = own_project
    write_own_faces(tmp_path / folder, "classes", per_class=2) if folder != "missing" else None
    raw["download"]["own"] = str(tmp_path / folder)
    with pytest.raises(UserError, match=expected):
        download.download_all(parse_params(raw))
    assert (work / "data/raw/trainval/MARKER").read_text() == "the sample\n"


def test_a_third_label_stops_the_download_before_data_raw_changes(own_project, tmp_path):
    work, raw = own_project
    write_own_faces(tmp_path / "faces", "classes", per_class=2)
    write(tmp_path / "faces" / "unknown" / "a.jpg", b"x")
    with pytest.raises(UserError, match="label 'unknown' is not in prepare.own.classes"):
        download.download_all(parse_params(raw))
    assert sorted(path.name for path in (work / "data" / "raw").iterdir()) == ["trainval"]


def test_a_label_mapped_to_no_class_of_prepare_is_refused_only_where_your_data_are_used():
    raw = raw_repo_params()
    raw["prepare"]["own"]["classes"] = {"f": "Female", "m": "Man"}
    parse_params(raw)                       # the sample or Kaggle does not read it
    raw["download"]["source"] = "own"
    with pytest.raises(UserError, match=r"prepare.own.classes maps to \['Man'\], which are not in prepare.classes"):
        parse_params(raw)
