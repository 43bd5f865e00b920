"""images.load_rgb on every oddity of scraped data, is_image_file, iter_image_files, find_class_folders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import sample
from stages.images import (
    UnreadableImage,
    find_class_folders,
    is_image_file,
    iter_image_files,
    load_rgb,
)
from tests.helpers import png_bytes

SIZE = 100


@pytest.fixture(scope="module")
def face() -> Image.Image:
    image = sample.draw_face(np.random.default_rng(12345), "Male", sample.TRAINVAL_STUDIO)
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    return image


@pytest.fixture(scope="module")
def pixels(face) -> np.ndarray:
    return np.asarray(face).astype(int)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def check_array(array: np.ndarray, size: int = SIZE) -> None:
    assert isinstance(array, np.ndarray)
    assert array.shape == (size, size, 3)
    assert array.dtype == np.uint8


# --- readable oddities ------------------------------------------------------------------------

def test_plain_jpeg_is_close_to_original(tmp_path, face, pixels):
    loaded = load_rgb(write(tmp_path, "plain.jpg", sample.jpeg_bytes(face, 95)), SIZE)
    check_array(loaded)
    assert mean_abs(loaded, pixels) < 4


def test_grayscale_jpeg_gives_three_equal_channels(tmp_path, face):
    path = write(tmp_path, "gray.jpg", sample.grayscale_jpeg(face))
    with Image.open(path) as stored:
        assert stored.mode == "L"  # really a one-channel file
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    assert np.array_equal(loaded[..., 0], loaded[..., 1])
    assert np.array_equal(loaded[..., 0], loaded[..., 2])
    luma = np.asarray(face.convert("L"))
    assert mean_abs(loaded[..., 0], luma) < 4
    assert loaded.std() > 10  # a picture, not a flat fill


def test_cmyk_jpeg_is_close_to_original_rgb(tmp_path, face, pixels):
    path = write(tmp_path, "cmyk.jpg", sample.cmyk_jpeg(face))
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    assert mean_abs(loaded, pixels) < 5
    # Not inverted (Adobe CMYK JPEGs are often stored inverted): an inverted read is far off.
    assert mean_abs(255 - loaded.astype(int), pixels) > 40


def test_alpha_png_corners_become_white(tmp_path, face, pixels):
    path = write(tmp_path, "alpha.png", sample.alpha_png(face))
    with Image.open(path) as stored:
        assert stored.mode == "RGBA"
        alpha = np.asarray(stored)[..., 3]
    assert alpha[0, 0] == 0 and alpha[50, 50] == 255
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    for y, x in [(0, 0), (0, SIZE - 1), (SIZE - 1, 0), (SIZE - 1, SIZE - 1), (3, 3)]:
        assert loaded[y, x].tolist() == [255, 255, 255], (y, x)
    # The opaque middle is the original, exactly (PNG is lossless).
    assert np.array_equal(loaded[20:80, 20:80], pixels[20:80, 20:80])
    # Everything fully transparent is white, not black.
    assert (loaded[alpha == 0] == 255).all()


def test_palette_png_with_transparency_is_flattened_on_white(tmp_path):
    image = Image.new("P", (40, 40), 0)
    image.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    image.paste(1, (0, 0, 20, 40))  # left half: index 1 (black), transparent below
    loaded = load_rgb(write(tmp_path, "palette.png", png_bytes(image, transparency=1)), 40)
    check_array(loaded, 40)
    assert loaded[5, 5].tolist() == [255, 255, 255]
    assert loaded[5, 35].tolist() == [10, 200, 30]


def test_grey_with_alpha_is_flattened_on_white(tmp_path):
    image = Image.new("LA", (32, 32), (80, 255))
    image.paste((0, 0), (0, 0, 16, 32))
    loaded = load_rgb(write(tmp_path, "la.png", png_bytes(image)), 32)
    check_array(loaded, 32)
    assert loaded[10, 5].tolist() == [255, 255, 255]
    assert loaded[10, 28].tolist() == [80, 80, 80]


def test_exif_rotated_jpeg_is_shown_upright(tmp_path, face, pixels):
    path = write(tmp_path, "exif.jpg", sample.exif_rotated_jpeg(face))
    with Image.open(path) as stored:
        assert stored.getexif().get(0x0112) == 6
        stored_pixels = np.asarray(stored.convert("RGB")).astype(int)
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    # The same picture encoded upright without EXIF: the loader must land on it.
    upright = load_rgb(write(tmp_path, "upright.jpg", sample.jpeg_bytes(face, 92)), SIZE)
    assert mean_abs(loaded, upright) < 4
    assert mean_abs(loaded, pixels) < 5
    # The stored (sideways) pixels are clearly different: the orientation was really applied.
    assert mean_abs(stored_pixels, pixels) > 15
    assert mean_abs(stored_pixels, pixels) > 4 * mean_abs(loaded, pixels)


def test_exif_rotation_of_non_square_image_swaps_sides(tmp_path):
    wide = Image.new("RGB", (80, 40), (200, 10, 10))
    wide.paste((10, 10, 200), (0, 0, 40, 40))  # left half blue, right half red
    data = sample.exif_rotated_jpeg(wide)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (40, 80)  # stored sideways
    loaded = load_rgb(write(tmp_path, "wide.jpg", data), 80)
    # Upright again: left blue, right red (after the resize to 80x80).
    assert loaded[40, 10, 2] > 150 and loaded[40, 10, 0] < 60
    assert loaded[40, 70, 0] > 150 and loaded[40, 70, 2] < 60


# --- unreadable files -------------------------------------------------------------------------

def test_truncated_jpeg_is_unreadable(tmp_path, face):
    path = write(tmp_path, "truncated.jpg", sample.truncated_jpeg(face))
    assert path.stat().st_size > 0
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, SIZE)
    assert "truncated" in str(caught.value)
    assert str(caught.value).startswith("cannot decode image")


def test_empty_file_is_unreadable(tmp_path):
    path = write(tmp_path, "empty.jpg", b"")
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, SIZE)
    assert "empty" in str(caught.value)
    assert "0 bytes" in str(caught.value)


def test_thumbs_db_renamed_to_jpg_is_unreadable(tmp_path):
    # What sample writes as Thumbs.db: an OLE2 compound file header.
    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    sample._junk(thumbs)
    path = write(tmp_path, "Thumbs.jpg", (thumbs / "Thumbs.db").read_bytes())
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, SIZE)
    assert "not an image" in str(caught.value)


def test_text_file_named_png_is_unreadable(tmp_path):
    path = write(tmp_path, "notes.png", b"<html>404 Not Found</html>\n")
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(path, SIZE)
    assert "not an image" in str(caught.value)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(tmp_path / "gone.jpg", SIZE)
    assert "cannot read file" in str(caught.value)


def test_folder_is_unreadable(tmp_path):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(UnreadableImage) as caught:
        load_rgb(folder, SIZE)
    assert "cannot read file" in str(caught.value)


# --- resizing ---------------------------------------------------------------------------------

def test_non_square_input_is_resized(tmp_path):
    image = Image.new("RGB", (180, 90), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 90, 90))  # left half red
    loaded = load_rgb(write(tmp_path, "wide.png", png_bytes(image)), SIZE)
    check_array(loaded)
    # Squashed, not cropped: the left half is still red, the right half blue.
    assert loaded[50, 10].tolist() == [255, 0, 0]
    assert loaded[50, 90].tolist() == [0, 0, 255]


def test_tall_input_is_resized(tmp_path):
    image = Image.new("RGB", (37, 211), (0, 128, 0))
    loaded = load_rgb(write(tmp_path, "tall.png", png_bytes(image)), SIZE)
    check_array(loaded)
    assert (loaded == np.array([0, 128, 0], dtype=np.uint8)).all()


def test_large_input_is_resized(tmp_path, face):
    big = face.resize((1600, 1600), Image.Resampling.NEAREST)
    path = write(tmp_path, "big.jpg", sample.jpeg_bytes(big, 90))
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    assert mean_abs(loaded, np.asarray(face)) < 12


@pytest.mark.parametrize("size", [32, 64, 224])
def test_requested_size_is_honoured(tmp_path, face, size):
    loaded = load_rgb(write(tmp_path, "face.jpg", sample.jpeg_bytes(face, 90)), size)
    check_array(loaded, size)


def test_same_size_is_not_resampled(tmp_path, face, pixels):
    loaded = load_rgb(write(tmp_path, "face.png", png_bytes(face)), SIZE)
    assert np.array_equal(loaded, pixels)


# --- is_image_file / iter_image_files ---------------------------------------------------------

@pytest.mark.parametrize("name", ["a.jpg", "b.JPG", "c.Jpeg", "d.PNG", "e.jpeg", "f.webp", "g.bmp", "h.TIFF"])
def test_is_image_file_accepts_any_case(tmp_path, name):
    assert is_image_file(write(tmp_path, name, b"x"))


@pytest.mark.parametrize("name", [".DS_Store", "Thumbs.db", ".hidden.jpg", "._a.jpg", "notes.txt",
                                  "noext", "a.jpg.part", "desktop.ini"])
def test_is_image_file_rejects(tmp_path, name):
    assert not is_image_file(write(tmp_path, name, b"x"))


def test_is_image_file_rejects_folders_and_missing(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    assert not is_image_file(tmp_path / "dir.jpg")
    assert not is_image_file(tmp_path / "missing.jpg")


def test_iter_image_files_recursive_sorted_no_hidden(tmp_path):
    for name in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/.d.jpg", ".cache/e.jpg", "Thumbs.db", "x.txt"]:
        write(tmp_path, name, b"x")
    found = [path.relative_to(tmp_path).as_posix() for path in iter_image_files(tmp_path)]
    assert found == ["a.PNG", "b.jpg", "sub/c.jpeg"]


# --- find_class_folders -----------------------------------------------------------------------

def make_dirs(root: Path, *relative: str) -> None:
    for name in relative:
        (root / name).mkdir(parents=True, exist_ok=True)


def test_find_class_folders_case_insensitive(tmp_path):
    make_dirs(tmp_path, "TRAIN/FeMale", "TRAIN/MALE")
    found = find_class_folders(tmp_path, ["female", "male"], within="train")
    assert found == {"female": tmp_path / "TRAIN/FeMale", "male": tmp_path / "TRAIN/MALE"}


def test_find_class_folders_keys_are_requested_names(tmp_path):
    make_dirs(tmp_path, "faces/Man", "faces/WOMAN")
    found = find_class_folders(tmp_path, ["man", "woman"])
    assert found == {"man": tmp_path / "faces/Man", "woman": tmp_path / "faces/WOMAN"}


def test_find_class_folders_nested(tmp_path):
    make_dirs(tmp_path, "Train/Train/Female", "Train/Train/Male", "Test/Test/Female", "Test/Test/Male")
    found = find_class_folders(tmp_path, ["female", "male"], within="train")
    assert found == {"female": tmp_path / "Train/Train/Female", "male": tmp_path / "Train/Train/Male"}
    found = find_class_folders(tmp_path, ["female", "male"], within="TEST")
    assert found["male"] == tmp_path / "Test/Test/Male"


def test_find_class_folders_prefers_shallowest(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Male", "Train/backup/Female", "Train/backup/Male")
    found = find_class_folders(tmp_path, ["Female", "Male"], within="train")
    assert found["Female"] == tmp_path / "Train/Female"


def test_find_class_folders_within_filters(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Male", "Test/Female", "Test/Male", "Validation")
    assert find_class_folders(tmp_path, ["Female", "Male"], within="train")["Male"] == tmp_path / "Train/Male"
    assert find_class_folders(tmp_path, ["Female", "Male"], within="test")["Male"] == tmp_path / "Test/Male"


def test_find_class_folders_skips_hidden(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Male", ".Train.tmp-1/Train/Female", ".Train.tmp-1/Train/Male")
    found = find_class_folders(tmp_path, ["Female", "Male"], within="train")
    assert found["Female"] == tmp_path / "Train/Female"


def test_find_class_folders_root_itself(tmp_path):
    make_dirs(tmp_path, "man", "woman")
    assert find_class_folders(tmp_path, ["man", "woman"]) == {"man": tmp_path / "man", "woman": tmp_path / "woman"}


def test_find_class_folders_not_found(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Males")
    with pytest.raises(FileNotFoundError) as caught:
        find_class_folders(tmp_path, ["Female", "Male"], within="train")
    message = str(caught.value)
    assert "['Female', 'Male']" in message
    assert "'train'" in message
    assert str(tmp_path) in message


def test_find_class_folders_within_not_found(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Male")
    with pytest.raises(FileNotFoundError) as caught:
        find_class_folders(tmp_path, ["Female", "Male"], within="validation")
    assert "'validation'" in str(caught.value)


def test_find_class_folders_ambiguous(tmp_path):
    make_dirs(tmp_path, "Train/Female", "Train/Male", "Test/Female", "Test/Male")
    with pytest.raises(FileNotFoundError) as caught:
        find_class_folders(tmp_path, ["Female", "Male"])
    message = str(caught.value)
    assert "several" in message
    assert str(tmp_path / "Train") in message and str(tmp_path / "Test") in message


def test_find_class_folders_ambiguous_within(tmp_path):
    make_dirs(tmp_path, "Train/a/Female", "Train/a/Male", "Train/b/Female", "Train/b/Male")
    with pytest.raises(FileNotFoundError) as caught:
        find_class_folders(tmp_path, ["Female", "Male"], within="train")
    assert "several" in str(caught.value)
