"""reading.load_rgb on every oddity of scraped data, is_image_file, iter_image_files, find_class_folders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.images import offline_sample, reading
from stages.images.reading import UnreadableImage, find_class_folders, is_image_file, iter_image_files, load_rgb, to_rgb
from tests.helpers import png_bytes

SIZE = 100


@pytest.fixture(scope="module")
def face() -> Image.Image:
    image = offline_sample.draw_face(np.random.default_rng(12345), "Male", offline_sample.TRAINVAL_STUDIO)
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
    loaded = load_rgb(write(tmp_path, "plain.jpg", offline_sample.jpeg_bytes(face, 95)), SIZE)
    check_array(loaded)
    assert mean_abs(loaded, pixels) < 4


def test_grayscale_jpeg_gives_three_equal_channels(tmp_path, face):
    path = write(tmp_path, "gray.jpg", offline_sample.grayscale_jpeg(face))
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
    path = write(tmp_path, "cmyk.jpg", offline_sample.cmyk_jpeg(face))
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    assert mean_abs(loaded, pixels) < 5
    # Not inverted (Adobe CMYK JPEGs are often stored inverted): an inverted read is far off.
    assert mean_abs(255 - loaded.astype(int), pixels) > 40


def test_alpha_png_corners_become_white(tmp_path, face, pixels):
    path = write(tmp_path, "alpha.png", offline_sample.alpha_png(face))
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
    path = write(tmp_path, "exif.jpg", offline_sample.exif_rotated_jpeg(face))
    with Image.open(path) as stored:
        assert stored.getexif().get(0x0112) == 6
        stored_pixels = np.asarray(stored.convert("RGB")).astype(int)
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    # The same picture encoded upright without EXIF: the loader must land on it.
    upright = load_rgb(write(tmp_path, "upright.jpg", offline_sample.jpeg_bytes(face, 92)), SIZE)
    assert mean_abs(loaded, upright) < 4
    assert mean_abs(loaded, pixels) < 5
    # The stored (sideways) pixels are clearly different: the orientation was really applied.
    assert mean_abs(stored_pixels, pixels) > 15
    assert mean_abs(stored_pixels, pixels) > 4 * mean_abs(loaded, pixels)


def test_exif_rotation_of_non_square_image_swaps_sides(tmp_path):
    wide = Image.new("RGB", (80, 40), (200, 10, 10))
    wide.paste((10, 10, 200), (0, 0, 40, 40))  # left half blue, right half red
    data = offline_sample.exif_rotated_jpeg(wide)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (40, 80)  # stored sideways
    loaded = load_rgb(write(tmp_path, "wide.jpg", data), 80)
    # Upright again: left blue, right red (after the resize to 80x80).
    assert loaded[40, 10, 2] > 150 and loaded[40, 10, 0] < 60
    assert loaded[40, 70, 0] > 150 and loaded[40, 70, 2] < 60


# --- unreadable files -------------------------------------------------------------------------

def test_truncated_jpeg_is_unreadable(tmp_path, face):
    path = write(tmp_path, "truncated.jpg", offline_sample.truncated_jpeg(face))
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
    offline_sample._junk(thumbs)
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
    path = write(tmp_path, "big.jpg", offline_sample.jpeg_bytes(big, 90))
    loaded = load_rgb(path, SIZE)
    check_array(loaded)
    assert mean_abs(loaded, np.asarray(face)) < 12


@pytest.mark.parametrize("size", [32, 64, 224])
def test_requested_size_is_honoured(tmp_path, face, size):
    loaded = load_rgb(write(tmp_path, "face.jpg", offline_sample.jpeg_bytes(face, 90)), size)
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


# --- every mode Pillow opens: correct 8-bit RGB -------------------------------------------------
# Each case: an N x N image of known content (a horizontal gradient; where the mode has alpha, the
# top rows fully and then half transparent), saved in a format that keeps its mode, and the RGB
# load_rgb must give (float, 0-255) with the largest difference allowed per pixel and channel.

N = 64
X = np.arange(N, dtype=float)
GRADIENT = np.tile(np.rint(X * 255 / (N - 1)), (N, 1))        # 0..255 left to right, exact integers
WIDE_GRADIENT = np.tile(np.rint(X * 65535 / (N - 1)), (N, 1))  # 0..65535
ALPHA = np.full((N, N), 255.0)
ALPHA[:16] = 0      # fully transparent band
ALPHA[16:32] = 128  # half transparent band
PALETTE = np.array([[4 * i, 255 - 4 * i, (37 * i) % 256] for i in range(N)], dtype=float)
ROUNDING = 0.5      # a correct mapping, rounded to the nearest level
BLEND = 1.0         # alpha compositing rounds once more


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1)


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255
    return rgb * a + 255 * (1 - a)


def rgb_gradient() -> np.ndarray:
    return np.stack([GRADIENT, 255 - GRADIENT, np.full((N, N), 128.0)], axis=-1)


def u8(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.uint8)


def palette_image(indexes: np.ndarray) -> Image.Image:
    image = Image.fromarray(u8(indexes), "P")
    image.putpalette(u8(PALETTE).flatten().tolist())
    return image


def case_1():
    bits = GRADIENT >= 128
    return Image.fromarray(bits), "PNG", {}, grey(255.0 * bits), 0


def case_L():
    return Image.fromarray(u8(GRADIENT), "L"), "PNG", {}, grey(GRADIENT), 0


def case_L_transparent_grey():
    key = GRADIENT[0, 10]   # only column 10 has this value
    expected = grey(GRADIENT)
    expected[:, 10] = 255
    return Image.fromarray(u8(GRADIENT), "L"), "PNG", {"transparency": int(key)}, expected, 0


def case_LA():
    image = Image.merge("LA", (Image.fromarray(u8(GRADIENT)), Image.fromarray(u8(ALPHA))))
    return image, "PNG", {}, on_white(grey(GRADIENT), ALPHA), BLEND


def case_P():
    indexes = np.tile(np.arange(N), (N, 1))
    return palette_image(indexes), "PNG", {}, PALETTE[indexes], 0


def case_P_transparent_index():
    indexes = np.tile(np.arange(N) % (N - 1), (N, 1))
    indexes[:16] = N - 1    # the transparent entry
    expected = PALETTE[indexes]
    expected[:16] = 255
    return palette_image(indexes), "PNG", {"transparency": N - 1}, expected, 0


def case_P_palette_alpha():
    # An RGBA palette: entry i is 4i opaque (tRNS with one alpha per entry).
    indexes = np.tile(np.arange(N), (N, 1))
    image = Image.fromarray(u8(indexes), "P")
    entry_alpha = 4.0 * np.arange(N)
    image.putpalette(u8(np.column_stack([PALETTE, entry_alpha])).flatten().tolist(), "RGBA")
    return image, "PNG", {}, on_white(PALETTE[indexes], entry_alpha[indexes]), BLEND


def case_PA():
    indexes = np.tile(np.arange(N), (N, 1))
    image = palette_image(indexes).convert("PA")
    image.putalpha(Image.fromarray(u8(ALPHA)))
    return image, "TIFF", {}, on_white(PALETTE[indexes], ALPHA), BLEND


def case_RGB():
    return Image.fromarray(u8(rgb_gradient()), "RGB"), "PNG", {}, rgb_gradient(), 0


def case_RGB_transparent_colour():
    key = tuple(int(v) for v in rgb_gradient()[0, 10])   # only column 10 has this colour
    expected = rgb_gradient()
    expected[:, 10] = 255
    return Image.fromarray(u8(rgb_gradient()), "RGB"), "PNG", {"transparency": key}, expected, 0


def case_RGBA():
    rgba = np.dstack([rgb_gradient(), ALPHA])
    return Image.fromarray(u8(rgba), "RGBA"), "PNG", {}, on_white(rgb_gradient(), ALPHA), BLEND


def case_CMYK():
    # Cyan and yellow gradients, no magenta, and black ink (K) on the lower half. Pillow converts
    # naively (no ICC profile): each of R, G, B = (255 - C|M|Y) * (255 - K) / 255.
    c, m, y = GRADIENT, np.zeros((N, N)), 255 - GRADIENT
    k = np.zeros((N, N))
    k[N // 2:] = 100
    image = Image.fromarray(u8(np.stack([c, m, y, k], axis=-1)), "CMYK")
    expected = np.stack([(255 - ink) * (255 - k) / 255 for ink in (c, m, y)], axis=-1)
    return image, "TIFF", {}, expected, BLEND


def case_YCbCr():
    # JPEG's full-range YCbCr (ITU-R BT.601) of the RGB gradient.
    r, g, b = np.moveaxis(rgb_gradient(), -1, 0)
    ycc = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                    128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                    128 + 0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)
    image = Image.fromarray(u8(np.clip(np.rint(ycc), 0, 255)), "YCbCr")
    return image, "TIFF", {}, rgb_gradient(), 2    # the 8-bit YCbCr file rounds once more


def case_LAB():
    # 8-bit CIELAB of the RGB gradient. 8-bit L*a*b* cannot hold every sRGB colour exactly, so the
    # reference is LittleCMS's own LAB -> sRGB transform of the stored values, itself near the original.
    from PIL import ImageCms

    lab_profile, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    image = ImageCms.applyTransform(Image.fromarray(u8(rgb_gradient()), "RGB"),
                                    ImageCms.buildTransform(srgb, lab_profile, "RGB", "LAB"))
    expected = np.asarray(ImageCms.applyTransform(image, ImageCms.buildTransform(lab_profile, srgb, "LAB", "RGB")))
    assert np.abs(expected - rgb_gradient()).mean() < 2
    return image, "TIFF", {}, expected.astype(float), 1


def case_I16_png():
    # What Pillow makes of a 16-bit greyscale PNG; convert("RGB") alone clips it to white.
    return Image.fromarray(WIDE_GRADIENT.astype(np.uint16)), "PNG", {}, grey(WIDE_GRADIENT / 257), ROUNDING


def case_I16_png_transparent_value():
    values = WIDE_GRADIENT.copy()
    values[:16] = 1234      # not a gradient value
    expected = grey(values / 257)
    expected[:16] = 255
    image = Image.fromarray(values.astype(np.uint16))
    return image, "PNG", {"transparency": 1234}, expected, ROUNDING


def case_I16_tiff():
    return Image.fromarray(WIDE_GRADIENT.astype(np.uint16)), "TIFF", {}, grey(WIDE_GRADIENT / 257), ROUNDING


def case_I16B_tiff():
    image = Image.frombytes("I;16B", (N, N), WIDE_GRADIENT.astype(">u2").tobytes())
    return image, "TIFF", {}, grey(WIDE_GRADIENT / 257), ROUNDING


def case_I_pgm16():
    # A 16-bit PGM (maxval 65535): Pillow opens it as I, 32-bit; its values lie in 0-65535.
    return Image.fromarray(WIDE_GRADIENT.astype(np.uint16)), "PPM", {}, grey(WIDE_GRADIENT / 257), ROUNDING


def case_I_16bit_values():
    return Image.fromarray(WIDE_GRADIENT.astype(np.int32)), "TIFF", {}, grey(WIDE_GRADIENT / 257), ROUNDING


def case_I_8bit_values():
    return Image.fromarray(GRADIENT.astype(np.int32)), "TIFF", {}, grey(GRADIENT), 0


def case_I_other_range():
    # Negative and beyond 16 bits: stretched from the image's own minimum to its maximum.
    values = -1000 + np.tile(X, (N, 1)) * 2000
    return Image.fromarray(values.astype(np.int32)), "TIFF", {}, grey(np.tile(X, (N, 1)) * 255 / (N - 1)), ROUNDING


def case_F_unit_range():
    values = np.tile(X / (N - 1), (N, 1))
    return Image.fromarray(values.astype(np.float32)), "TIFF", {}, grey(values * 255), ROUNDING


def case_F_8bit_range():
    values = np.tile(X * 255 / (N - 1), (N, 1))       # not whole numbers
    return Image.fromarray(values.astype(np.float32)), "TIFF", {}, grey(values), ROUNDING


def case_F_16bit_range():
    values = np.tile(X * 65535 / (N - 1), (N, 1))
    return Image.fromarray(values.astype(np.float32)), "TIFF", {}, grey(values / 257), ROUNDING


def case_F_other_range_nan_inf():
    values = np.tile(-5 + 10 * X / (N - 1), (N, 1))
    expected = grey(np.tile(X * 255 / (N - 1), (N, 1)))
    values[0], expected[0] = np.nan, 0
    values[1], expected[1] = np.inf, 255
    values[2], expected[2] = -np.inf, 0
    return Image.fromarray(values.astype(np.float32)), "TIFF", {}, expected, ROUNDING


MODE_CASES = {
    "1": case_1,
    "L": case_L,
    "L, transparent grey": case_L_transparent_grey,
    "LA": case_LA,
    "P": case_P,
    "P, transparent index": case_P_transparent_index,
    "P, palette alpha": case_P_palette_alpha,
    "PA": case_PA,
    "RGB": case_RGB,
    "RGB, transparent colour": case_RGB_transparent_colour,
    "RGBA": case_RGBA,
    "CMYK": case_CMYK,
    "YCbCr": case_YCbCr,
    "LAB": case_LAB,
    "I;16": case_I16_png,
    "I;16, transparent value": case_I16_png_transparent_value,
    "I;16 TIFF": case_I16_tiff,
    "I;16B": case_I16B_tiff,
    "I, 16-bit PGM": case_I_pgm16,
    "I, 0-65535": case_I_16bit_values,
    "I, 0-255": case_I_8bit_values,
    "I, other range": case_I_other_range,
    "F, 0-1": case_F_unit_range,
    "F, 0-255": case_F_8bit_range,
    "F, 0-65535": case_F_16bit_range,
    "F, other range, NaN, inf": case_F_other_range_nan_inf,
}


@pytest.mark.parametrize("name", list(MODE_CASES))
def test_every_mode_gives_correct_rgb(tmp_path, name):
    image, file_format, options, expected, tolerance = MODE_CASES[name]()
    mode = name.split(",")[0].split()[0]
    extension = {"PNG": "png", "TIFF": "tif", "PPM": "pgm"}[file_format]
    path = tmp_path / f"image.{extension}"
    image.save(path, format=file_format, **options)
    with Image.open(path) as stored:
        assert stored.mode == mode, "the file does not keep the mode under test"
        assert stored.size == (N, N)
    loaded = load_rgb(path, N)
    check_array(loaded, N)
    difference = np.abs(loaded.astype(float) - expected)
    worst = np.unravel_index(difference.argmax(), difference.shape)
    assert difference.max() <= tolerance, (worst, loaded[worst[:2]].tolist(), expected[worst[:2]].tolist())


def test_sixteen_bit_gradient_is_a_gradient_not_white(tmp_path):
    """The issue's case: a 16-bit PNG came out 99.6% pure white."""
    path = tmp_path / "deep.png"
    Image.fromarray(WIDE_GRADIENT.astype(np.uint16)).save(path)
    loaded = load_rgb(path, N)
    assert (loaded == 255).all(axis=-1).mean() < 0.05
    assert loaded[:, 0].max() == 0 and loaded[:, -1].min() == 255
    assert (np.diff(loaded[..., 0].astype(int), axis=1) > 0).all()   # strictly increasing along x


@pytest.mark.parametrize(("mode", "value", "expected"), [
    ("HSV", (0, 255, 255), (255, 0, 0)),
    ("RGBX", (10, 20, 30, 0), (10, 20, 30)),
    ("La", (64, 128), (191, 191, 191)),                  # premultiplied: grey 128 at half alpha, on white
    ("RGBa", (100, 50, 0, 128), (227, 177, 127)),        # premultiplied: (199, 99, 0) at half alpha
])
def test_modes_only_made_in_memory(mode, value, expected):
    rgb = to_rgb(Image.new(mode, (4, 4), value))
    assert rgb.mode == "RGB"
    assert np.abs(np.asarray(rgb).astype(int) - expected).max() <= 1, np.asarray(rgb)[0, 0]


# --- big JPEGs are decoded already scaled down (draft mode) -------------------------------------

@pytest.fixture(scope="module")
def photo_4000x3000(tmp_path_factory, face) -> Path:
    """A natural-looking 12 MP photo: the face scaled up smoothly, with sensor-like noise, as JPEG."""
    noise = np.random.default_rng(7).integers(-12, 13, size=(3000, 4000, 3), dtype=np.int16)
    big = np.asarray(face.resize((4000, 3000), Image.Resampling.BICUBIC)) + noise
    image = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
    return write(tmp_path_factory.mktemp("photo"), "photo.jpg", offline_sample.jpeg_bytes(image, 90))


def decoded_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Record the size of every image load_rgb decodes (before its final resize)."""
    sizes = []
    original = reading._upright_to_rgb

    def spy(image):
        sizes.append(image.size)
        return original(image)

    monkeypatch.setattr(reading, "_upright_to_rgb", spy)
    return sizes


def full_size_decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        rgb = to_rgb(image)
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


@pytest.mark.parametrize(("size", "decoded"), [(100, (500, 375)), (224, (500, 375)), (32, (500, 375))])
def test_big_jpeg_is_decoded_scaled_down(photo_4000x3000, monkeypatch, size, decoded):
    sizes = decoded_sizes(monkeypatch)
    loaded = load_rgb(photo_4000x3000, size)
    check_array(loaded, size)
    # Scaled by 1/8: 1/64 of the pixels, yet at least DRAFT_MARGIN x the output per side.
    assert sizes == [decoded]
    assert min(decoded) >= reading.DRAFT_MARGIN * size
    # Close to decoding all 12 MP and resizing from there.
    difference = np.abs(loaded.astype(float) - full_size_decode(photo_4000x3000, size))
    assert difference.mean() < 3
    assert difference.max() <= 8


def test_big_exif_rotated_jpeg_is_upright_when_scaled_down(tmp_path, monkeypatch, face):
    big = face.resize((1600, 1200), Image.Resampling.BICUBIC)
    path = write(tmp_path, "sideways.jpg", offline_sample.exif_rotated_jpeg(big))
    sizes = decoded_sizes(monkeypatch)
    loaded = load_rgb(path, SIZE)
    assert sizes == [(200, 150)]                    # decoded at 1/8 (stored 1200x1600), then turned upright
    assert mean_abs(loaded, full_size_decode(path, SIZE)) < 3


def test_jpeg_under_twice_the_output_size_is_decoded_whole(tmp_path, monkeypatch, face):
    # The sample data's largest photos (up to 260 px) decode exactly as before draft mode.
    path = write(tmp_path, "photo.jpg", offline_sample.jpeg_bytes(face.resize((260, 199)), 90))
    sizes = decoded_sizes(monkeypatch)
    loaded = load_rgb(path, SIZE)
    assert sizes == [(260, 199)]
    assert np.array_equal(loaded, full_size_decode(path, SIZE))
