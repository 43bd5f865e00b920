"""Ordinary photos for the face detector, built from images that installed packages ship.

- Grace Hopper: matplotlib's sample_data/grace_hopper.jpg, an official US Navy portrait (public
  domain as a work of the US federal government).
- china.jpg and flower.jpg: scikit-learn's sample images (sklearn/datasets/images/README.txt: Creative
  Commons Attribution 2.0, by danielbuechele and vultilion on Flickr). No faces. Copied, unchanged.
- A drawn room (gradients, a window, a floor and noise), made here. No faces.

Two faces and an off-centre face are the portrait pasted (scaled, once mirrored) into the drawn room.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import numpy as np
import sklearn
from PIL import Image

PORTRAIT = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SKLEARN_IMAGES = Path(sklearn.__file__).parent / "datasets" / "images"


def room(width: int, height: int, seed: int = 0) -> Image.Image:
    """A drawn room: no face anywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.linspace(0, 1, height)[:, None, None], np.linspace(0, 1, width)[None, :, None]
    pixels = 90 + 80 * y + 40 * x * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 6, (height, width, 3))
    pixels[int(height * 0.7):] *= 0.6
    pixels[int(height * 0.1):int(height * 0.5), int(width * 0.05):int(width * 0.3)] = [200, 210, 230]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photos(folder: Path) -> dict[Path, int]:
    """The test photos in `folder`, with how many faces each shows."""
    folder.mkdir(parents=True, exist_ok=True)
    portrait = Image.open(PORTRAIT).convert("RGB")
    two = room(1400, 800)
    two.paste(portrait.resize((256, 300)), (150, 300))
    two.paste(portrait.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((220, 258)), (900, 120))
    off = room(1600, 1200, seed=1)
    off.paste(portrait.resize((300, 351)), (1200, 60))
    photos = {folder / "one_face.jpg": 1, folder / "two_faces.jpg": 2, folder / "off_centre.jpg": 1,
              folder / "no_face_room.jpg": 0, folder / "no_face_china.jpg": 0, folder / "no_face_flower.jpg": 0}
    portrait.save(folder / "one_face.jpg", quality=95)
    two.save(folder / "two_faces.jpg", quality=92)
    off.save(folder / "off_centre.jpg", quality=92)
    room(1000, 700, seed=2).save(folder / "no_face_room.jpg", quality=92)
    shutil.copyfile(SKLEARN_IMAGES / "china.jpg", folder / "no_face_china.jpg")
    shutil.copyfile(SKLEARN_IMAGES / "flower.jpg", folder / "no_face_flower.jpg")
    return photos
