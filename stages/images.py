"""The one image loader and the one folder finder, used by prepare, predict and download's checks."""

from __future__ import annotations

import io
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


class UnreadableImage(Exception):
    """The file is not a decodable image; the message says why in a few words."""


def is_image_file(path: Path) -> bool:
    """True for a regular, non-hidden file with a common image extension (any case)."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
        and path.is_file()
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: honour EXIF orientation, flatten alpha on white, convert grey/CMYK/palette."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: Path | str, size: int) -> np.ndarray:
    """Load any common image file as a size x size x 3 uint8 array, or raise UnreadableImage."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableImage(f"cannot read file ({error.strerror})") from None
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns on odd-but-decodable metadata; decoding decides.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                rgb = to_rgb(image)
    except UnidentifiedImageError:
        raise UnreadableImage("not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(f"cannot decode image: {error}") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(rgb, dtype=np.uint8)


def iter_image_files(folder: Path) -> Iterator[Path]:
    """Image files under `folder` (recursively), in a stable sorted order."""
    for path in sorted(folder.rglob("*")):
        if is_image_file(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            yield path


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
