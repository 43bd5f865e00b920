"""The offline sample source: exact layouts, every oddity, counts, determinism, no leaks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.common.config import SampleParams
from stages.common.errors import UserError
from stages.images import offline_sample
from tests.helpers import hashes

PARAMS = SampleParams(seed=11, train_per_class=6, val_per_class=5, unlabeled=2,
                      test_images=12, test_male_fraction=0.65, test_sizes=[64, 260])
MEN = 8    # round(12 * 0.65)
WOMEN = 4


def generate_both(root: Path, params: SampleParams = PARAMS) -> Path:
    for name in ("trainval", "test"):
        offline_sample.generate(name, root / name, params)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return generate_both(tmp_path_factory.mktemp("sample"))


def listing(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".jpg", ".png")
                  and "truncated" not in p.name and "empty" not in p.name)


def test_every_labelled_face_has_a_synthetic_group_drawn_independently_of_its_class(tree):
    groups = {}
    for name in ("trainval", "test"):
        lines = (tree / name / "groups.csv").read_text().splitlines()
        assert lines[0] == "path,group"
        groups |= {f"{name}/{line.split(',')[0]}": line.split(",")[1] for line in lines[1:]}
    labelled = {p.relative_to(tree).as_posix() for p in tree.rglob("*.*") if p.parent.name.lower() in
                ("female", "male", "man", "woman") and "truncated" not in p.name and "empty" not in p.name
                and p.suffix in (".jpg", ".png")}
    assert set(groups) == labelled
    assert set(groups.values()) == {"lighter", "medium", "darker"}


# --- layouts ----------------------------------------------------------------------------------

def test_trainval_layout(tree):
    root = tree / "trainval"
    assert sorted(p.name for p in root.iterdir()) == [".DS_Store", "Test", "Thumbs.db", "Train", "Validation",
                                                       "groups.csv"]
    assert sorted(p.name for p in (root / "Train").iterdir()) == ["Female", "Male"]
    assert sorted(p.name for p in (root / "Test").iterdir()) == ["Female", "Male"]
    validation = root / "Validation"
    assert all(p.is_file() for p in validation.iterdir())  # no class folders: no labels
    assert sorted(p.name for p in validation.iterdir()) == ["00000.jpg", "00001.jpg"]


def test_test_layout(tree):
    root = tree / "test"
    assert sorted(p.name for p in root.iterdir()) == [".DS_Store", "Thumbs.db", "faces", "groups.csv"]
    assert sorted(p.name for p in (root / "faces").iterdir()) == ["man", "woman"]
    assert all(p.is_file() for p in (root / "faces" / "man").iterdir())
    assert all(p.is_file() for p in (root / "faces" / "woman").iterdir())


def test_every_oddity_is_present(tree):
    trainval, test = tree / "trainval", tree / "test"
    expected = [
        trainval / "Train/Female/00000_gray.jpg",
        trainval / "Train/Female/00001_alpha.png",
        trainval / "Train/Male/00000_cmyk.jpg",
        trainval / "Train/Male/00001_exif.jpg",
        trainval / "Train/Female/Thumbs.db",
        trainval / "Train/Female/.DS_Store",
        trainval / "Test/Male/xtruncated.jpg",
        trainval / "Test/Male/xempty.jpg",
        test / "faces/man/man_00000_cmyk.jpg",
        test / "faces/man/man_00001_exif.jpg",
        test / "faces/woman/woman_00000_gray.jpg",
        test / "faces/woman/woman_00001_alpha.png",
        test / "faces/man/man_truncated.jpg",
        test / "faces/man/man_empty.jpg",
        test / "faces/woman/Thumbs.db",
        test / "faces/woman/.DS_Store",
    ]
    for path in expected:
        assert path.is_file(), path


def test_oddities_are_what_their_names_say(tree):
    for dataset, folder_f, folder_m, prefix_f, prefix_m in (
        ("trainval", "Train/Female", "Train/Male", "", ""),
        ("test", "faces/woman", "faces/man", "woman_", "man_"),
    ):
        root = tree / dataset
        with Image.open(root / folder_f / f"{prefix_f}00000_gray.jpg") as image:
            assert (image.format, image.mode) == ("JPEG", "L")
        with Image.open(root / folder_f / f"{prefix_f}00001_alpha.png") as image:
            assert (image.format, image.mode) == ("PNG", "RGBA")
            assert np.asarray(image)[0, 0, 3] == 0
        with Image.open(root / folder_m / f"{prefix_m}00000_cmyk.jpg") as image:
            assert (image.format, image.mode) == ("JPEG", "CMYK")
        with Image.open(root / folder_m / f"{prefix_m}00001_exif.jpg") as image:
            assert image.format == "JPEG"
            assert image.getexif().get(0x0112) == 6
    for empty in (tree / "trainval/Test/Male/xempty.jpg", tree / "test/faces/man/man_empty.jpg"):
        assert empty.stat().st_size == 0
    for truncated in (tree / "trainval/Test/Male/xtruncated.jpg", tree / "test/faces/man/man_truncated.jpg"):
        data = truncated.read_bytes()
        assert data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
        with pytest.raises(OSError):
            with Image.open(truncated) as image:
                image.load()
    thumbs = (tree / "trainval/Train/Female/Thumbs.db").read_bytes()
    assert thumbs.startswith(b"\xd0\xcf\x11\xe0")


def test_image_counts_match_params(tree):
    trainval, test = tree / "trainval", tree / "test"
    for gender in ("Female", "Male"):
        assert len(images_in(trainval / "Train" / gender)) == PARAMS.train_per_class
        assert len(images_in(trainval / "Test" / gender)) == PARAMS.val_per_class
    assert len(images_in(trainval / "Validation")) == PARAMS.unlabeled
    men, women = images_in(test / "faces/man"), images_in(test / "faces/woman")
    assert (len(men), len(women)) == (MEN, WOMEN)
    assert len(men) + len(women) == PARAMS.test_images
    # Nothing else besides the listed oddities.
    assert listing(trainval / "Train/Female") == sorted(
        [p.name for p in images_in(trainval / "Train/Female")] + [".DS_Store", "Thumbs.db"])
    assert listing(trainval / "Test/Male") == sorted(
        [p.name for p in images_in(trainval / "Test/Male")] + ["xempty.jpg", "xtruncated.jpg"])
    assert listing(test / "faces/man") == sorted(
        [p.name for p in men] + ["man_empty.jpg", "man_truncated.jpg"])


@pytest.mark.parametrize(("total", "fraction", "men"), [(12, 0.65, 8), (20, 0.5, 10), (3, 0.2, 1)])
def test_test_male_fraction(tmp_path, total, fraction, men):
    params = PARAMS.model_copy(update={"test_images": total, "test_male_fraction": fraction})
    offline_sample.generate("test", tmp_path, params)
    assert len(images_in(tmp_path / "faces/man")) == men
    assert len(images_in(tmp_path / "faces/woman")) == total - men


@pytest.mark.parametrize("sizes", [[250, 640], [64, 64]])
def test_test_photo_sizes_follow_params(tmp_path, sizes):
    offline_sample.generate("test", tmp_path, PARAMS.model_copy(update={"test_sizes": sizes}))
    shapes = []
    for path in images_in(tmp_path / "faces/man") + images_in(tmp_path / "faces/woman"):
        with Image.open(path) as image:
            shapes.append(image.size)
    # One side is drawn from the range, the other is 0.9-1.12 times it (and some photos lie on their side).
    assert len(shapes) == 12
    assert all(max(shape) >= sizes[0] and min(shape) <= sizes[1] for shape in shapes), shapes
    if sizes[0] < sizes[1]:
        widths = [min(shape) for shape in shapes]
        assert max(widths) - min(widths) > (sizes[1] - sizes[0]) / 3      # spread over the range


def test_generated_files_do_not_depend_on_the_number_of_processes(tmp_path, monkeypatch):
    params = PARAMS.model_copy(update={"train_per_class": 450})     # enough for two workers
    offline_sample.generate("trainval", tmp_path / "two", params)
    monkeypatch.setattr(offline_sample.os, "cpu_count", lambda: 1)
    offline_sample.generate("trainval", tmp_path / "one", params)
    assert hashes(tmp_path / "two") == hashes(tmp_path / "one")


def test_trainval_images_are_100px_rgb_jpeg(tree):
    checked = 0
    for folder in ("Train/Female", "Train/Male", "Test/Female", "Test/Male", "Validation"):
        for path in images_in(tree / "trainval" / folder):
            with Image.open(path) as image:
                assert image.size == (100, 100), path
                if not any(odd in path.name for odd in ("_gray", "_cmyk", "_alpha")):  # _exif is RGB
                    assert (image.format, image.mode) == ("JPEG", "RGB"), path
                    checked += 1
    assert checked == 2 * PARAMS.train_per_class - 3 + 2 * PARAMS.val_per_class + PARAMS.unlabeled


def test_test_images_vary_in_size(tree):
    sizes = set()
    for path in images_in(tree / "test/faces/man") + images_in(tree / "test/faces/woman"):
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) == 6:
                width, height = height, width
        assert 64 <= width <= 260 and 32 <= height <= 300, (path, image.size)
        sizes.add((width, height))
    assert len(sizes) >= PARAMS.test_images // 2
    assert (100, 100) not in sizes or len(sizes) > 1


def test_images_are_faces_not_noise(tree):
    # Each image differs from the others: no generator is reused.
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in images_in(tree / "trainval/Train/Male")]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.abs(arrays[i].astype(int) - arrays[j].astype(int)).mean() > 5


# --- determinism and leaks --------------------------------------------------------------------

def test_generating_twice_is_byte_identical(tree, tmp_path):
    again = generate_both(tmp_path)
    first, second = hashes(tree), hashes(again)
    # trainval: Train 2 per class + 2 junk, Test 2 per class + 2 broken, Validation, 2 junk at the root;
    # test: men + 2 broken, women + 2 junk, 2 junk at the root; groups.csv in each.
    assert len(first) == ((2 * PARAMS.train_per_class + 2) + (2 * PARAMS.val_per_class + 2) + PARAMS.unlabeled + 2
                          + (MEN + 2) + (WOMEN + 2) + 2 + 2)
    assert first == second
    assert listing(tree) == listing(again)  # folders too


def test_different_seeds_differ(tree, tmp_path):
    other = generate_both(tmp_path, PARAMS.model_copy(update={"seed": PARAMS.seed + 1}))
    first, second = hashes(tree), hashes(other)
    assert first.keys() == second.keys()  # same layout
    images = [name for name in first if name.endswith((".jpg", ".png")) and "empty" not in name]
    changed = [name for name in images if first[name] != second[name]]
    assert changed == images


def test_more_images_keep_the_first_ones(tree, tmp_path):
    # Each image depends on its place alone: asking for more adds images, it changes none.
    bigger = PARAMS.model_copy(update={"train_per_class": PARAMS.train_per_class + 2})
    offline_sample.generate("trainval", tmp_path, bigger)
    first, second = hashes(tree / "trainval"), hashes(tmp_path)
    for name, digest in first.items():
        assert second[name] == digest or name == "groups.csv", name
    added = range(PARAMS.train_per_class, bigger.train_per_class)
    assert set(second) - set(first) == {f"Train/{g}/{i:05d}.jpg" for g in ("Female", "Male") for i in added}


def test_no_image_is_shared_between_splits(tree):
    digests: dict[str, list[str]] = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and path.suffix in (".jpg", ".png") and path.stat().st_size:
            digests.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(
                path.relative_to(tree).as_posix())
    duplicates = [names for names in digests.values() if len(names) > 1]
    assert duplicates == []
    train = {d for d, names in digests.items() if any(n.startswith("trainval/Train/") for n in names)}
    val = {d for d, names in digests.items() if any(n.startswith("trainval/Test/") for n in names)}
    assert len(train) == 2 * PARAMS.train_per_class
    assert train.isdisjoint(val)


def test_no_pixel_level_leak_between_train_and_test(tree):
    # Not just different bytes: different pictures (a re-encode of one face would be close).
    train = [np.asarray(Image.open(p).convert("RGB"), dtype=float)
             for g in ("Female", "Male") for p in images_in(tree / "trainval/Train" / g)]
    for gender in ("Female", "Male"):
        for path in images_in(tree / "trainval/Test" / gender):
            test = np.asarray(Image.open(path).convert("RGB"), dtype=float)
            closest = min(np.abs(test - t).mean() for t in train)
            assert closest > 5, path


def test_unknown_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as caught:
        offline_sample.generate("validation", tmp_path, PARAMS)
    assert "'validation'" in str(caught.value)
    assert "trainval" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_draw_face_is_seeded():
    a = offline_sample.draw_face(np.random.default_rng(3), "Female", offline_sample.TEST_STUDIO)
    b = offline_sample.draw_face(np.random.default_rng(3), "Female", offline_sample.TEST_STUDIO)
    c = offline_sample.draw_face(np.random.default_rng(4), "Female", offline_sample.TEST_STUDIO)
    assert a.tobytes() == b.tobytes() and a.size == b.size
    assert a.tobytes() != c.tobytes()
    assert a.mode == "RGB"
