"""The one image loader and the one folder finder, used by prepare, predict and download's checks."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

# A photo flattened from transparency lands on white, as browsers show it.
ALPHA_BACKGROUND = (255, 255, 255)

# The most pixels an image may declare before it is decoded (params.yaml: prepare.max_pixels). predict
# uses this when no params.yaml can be read; keep the two equal (tests/test_bombs.py checks).
DEFAULT_MAX_PIXELS = 25_000_000

# A big JPEG is decoded already scaled down by 2, 4 or 8 (libjpeg's DCT scaling, Pillow's draft
# mode), but never below this many times the output size on either side; the final resize then
# averages what is left. 1: a 250-640 px photo decodes at 100-200 px, faster than whole (decoding is
# prepare's largest cost at real scale), and the 100x100 result barely differs from a full-size decode
# (both measured: benchmarks/history.md). Photos under twice the output size decode whole.
DRAFT_MARGIN = 1

# Modes whose samples are wider than 8 bits: mapped to 8-bit grey by to_rgb (see there).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
WIDE_MODES = SIXTEEN_BIT_MODES | {"I", "F"}
# Temporaries of the 8-bit mapping stay this many pixels (x 8 bytes) at most, whatever the image size.
_BLOCK_PIXELS = 1 << 20


class UnreadableImage(Exception):
    """The file is not a decodable image; the message says why in a few words."""


def is_image_file(path: Path) -> bool:
    """True for a regular, non-hidden file with a common image extension (any case)."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
        and path.is_file()
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels} pixels"


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Raise UnreadableImage when an image of this declared size is over the pixel budget."""
    width, height = size
    if width * height > max_pixels:
        raise UnreadableImage(
            f"declares {width}x{height} pixels ({_megapixels(width * height)}), "
            f"over prepare.max_pixels ({_megapixels(max_pixels)})"
        )


def _row_blocks(array: np.ndarray) -> Iterator[slice]:
    rows = max(1, _BLOCK_PIXELS // max(1, array.shape[1]))
    for start in range(0, array.shape[0], rows):
        yield slice(start, start + rows)


def _value_range(array: np.ndarray) -> tuple[float, float]:
    """The range of the image's values that 0-255 stands for (to_rgb's rule for modes I and F)."""
    lo, hi = np.inf, -np.inf
    for rows in _row_blocks(array):
        block = array[rows]
        if block.dtype.kind == "f":
            block = block[np.isfinite(block)]
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if lo > hi:              # no finite value at all: NaN is black, +inf white, -inf black
        return 0.0, 1.0
    ranges = ([(0.0, 1.0)] if array.dtype.kind == "f" else []) + [(0.0, 255.0), (0.0, 65535.0)]
    for low, high in ranges:
        if low <= lo and hi <= high:
            return low, high
    return lo, hi


def _scale_to_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map lo..hi linearly onto 0..255 (rounded, clipped; NaN -> 0), in bounded-size blocks."""
    out = np.empty(array.shape, dtype=np.uint8)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    for rows in _row_blocks(array):
        block = (array[rows].astype(np.float64) - lo) * scale
        np.nan_to_num(block, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(block, 0.0, 255.0, out=block)
        out[rows] = np.rint(block)
    return out


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """An image in a mode wider than 8 bits as 8-bit grey ("L"), or "LA" where it has a transparent value."""
    array = np.asarray(image)
    if image.mode in SIXTEEN_BIT_MODES:
        lo, hi = 0.0, 65535.0
    else:
        lo, hi = _value_range(array)
    grey = Image.fromarray(_scale_to_uint8(array, lo, hi), "L")
    key = image.info.get("transparency")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        # A tRNS grey value: pixels of exactly that value are transparent.
        alpha = Image.fromarray(np.where(array == key, 0, 255).astype(np.uint8), "L")
        grey = Image.merge("LA", (grey, alpha))
    return grey


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from an image in any mode Pillow opens.

    EXIF orientation is honoured. Samples map onto 0-255 as follows:
    - 1, L, P, RGB, CMYK, YCbCr, LAB, HSV: Pillow's conversion to RGB (CMYK naively, no ICC profile;
      LAB through LittleCMS to sRGB).
    - I;16, I;16B (any 16-bit grey): by the full 16-bit range, v / 257 rounded, so 0-65535 is 0-255.
    - I (32-bit integer) and F (32-bit float) carry no bit depth of their own: the first of these
      ranges that holds every finite value maps linearly onto 0-255: 0-1 (F only, the usual float
      convention), 0-255 (8-bit data), 0-65535 (16-bit data, e.g. a 16-bit PGM, which Pillow opens
      as I). Values outside all three (negative, or over 65535) are stretched from the image's own
      minimum to its maximum (a flat image is black). NaN and -inf are black, +inf white.
    - Transparency (an alpha channel: LA, PA, RGBA, La, RGBa; a palette with transparent entries;
      a tRNS transparent colour or grey value) is flattened on white (ALPHA_BACKGROUND).
    """
    return _upright_to_rgb(ImageOps.exif_transpose(image))


def _upright_to_rgb(image: Image.Image) -> Image.Image:
    """to_rgb's mapping for an upright image the caller no longer needs: an RGB one comes back as it is."""
    if image.mode in WIDE_MODES:
        image = _wide_to_8bit(image)
    elif image.mode == "La":          # premultiplied grey + alpha: Pillow converts it only to LA
        image = image.convert("LA")
    if image.has_transparency_data:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        flat = Image.alpha_composite(background, rgba)
        del background, rgba
        return flat.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _declared_pixels(error: Exception) -> str:
    """The pixel count in Pillow's DecompressionBombError message, as \"N pixels (X MP)\"."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return f"{int(found.group(1))} pixels ({_megapixels(int(found.group(1)))})" if found else "too many pixels"


def open_rgb(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, draft: int | None = None) -> Image.Image:
    """Load any common image file upright (EXIF orientation applied) as an RGB image, or raise
    UnreadableImage.

    An image declaring more than max_pixels (width x height, read from its header) is refused before
    any pixel is decoded. With `draft`, a big JPEG is decoded already scaled down, to no less than
    `draft` pixels on its shorter side: memory stays bounded by the budget, not by what a file claims.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableImage(f"cannot read file ({error.strerror})") from None
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns on odd-but-decodable metadata; decoding decides. Its DecompressionBombWarning
            # (over 89 MP) is covered by the pixel budget, checked before anything is decoded.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            check_pixels(image.size, max_pixels)
            if draft and image.format in ("JPEG", "MPO") and min(image.size) >= 2 * draft:
                image.draft(image.mode, (draft, draft))
            image.load()
            # In place, and no copy for RGB: at most one full-size copy besides the decoded image.
            ImageOps.exif_transpose(image, in_place=True)
            return _upright_to_rgb(image)
    except UnidentifiedImageError:
        raise UnreadableImage("not an image Pillow can identify") from None
    except Image.DecompressionBombError as error:
        # Over Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS): Image.open refuses it before we see a size.
        raise UnreadableImage(
            f"declares {_declared_pixels(error)}, over Pillow's limit "
            f"({_megapixels(2 * (Image.MAX_IMAGE_PIXELS or 0))}) and prepare.max_pixels ({_megapixels(max_pixels)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"cannot decode image: {error}") from None


def square_pixels(rgb: Image.Image, size: int) -> np.ndarray:
    """An RGB image resized to size x size (as prepare resizes every image), as a uint8 array."""
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(rgb, dtype=np.uint8)


def load_rgb(path: Path | str, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load any common image file as a size x size x 3 uint8 array (open_rgb, then square_pixels),
    or raise UnreadableImage."""
    return square_pixels(open_rgb(path, max_pixels, draft=size * DRAFT_MARGIN), size)


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder` (recursively), in a stable sorted order."""
    for path in sorted(folder.rglob("*")):
        if is_image_file(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            yield path


def find_split_folder(root: Path, class_names: list[str], within: str | None = None) -> Path:
    """The folder that holds one sub-folder per class (see find_class_folders)."""
    return next(iter(find_class_folders(root, class_names, within).values())).parent


def find_class_folders(
    root: Path, class_names: list[str], within: str | None = None
) -> dict[str, Path]:
    """Find the folder that holds one sub-folder per class (names matched case-insensitively).

    `within`: a folder name (any case) that must appear on the path from `root`, e.g. "train",
    since the real archives nest their splits in undocumented ways (Train/, Train/Train/).
    Raises FileNotFoundError with a message naming what was looked for.
    """
    wanted = {name.lower(): name for name in class_names}
    candidates = []
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        relative = folder.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if within is not None and within.lower() not in (part.lower() for part in relative):
            continue
        children = {child.name.lower(): child for child in folder.iterdir() if child.is_dir()}
        if set(wanted) <= set(children):
            candidates.append((len(relative), folder, {wanted[k]: children[k] for k in wanted}))
    where = f" inside a folder named '{within}'" if within else ""
    if not candidates:
        raise FileNotFoundError(
            f"no folder with class sub-folders {class_names}{where} under {root}"
        )
    candidates.sort(key=lambda item: (item[0], str(item[1])))
    if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
        names = ", ".join(str(c[1]) for c in candidates[:3])
        raise FileNotFoundError(
            f"several folders with class sub-folders {class_names}{where} under {root}: {names}"
        )
    return candidates[0][2]
