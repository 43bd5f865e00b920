"""Faces in ordinary photos: find them, and crop each as the training images are cropped.

The detector is MTCNN (Zhang et al. 2016) from the PyPI package `mtcnn` (MIT licence), whose weights
ship inside the package and run on TensorFlow, offline. Chosen over OpenCV's Haar cascade by
measurement (benchmarks/face_detectors.md): both found every face in the test photos, but MTCNN
gives a confidence in 0..1 that separates faces (0.99+) from its false alarms (0.80), where Haar's
level weights are unbounded scores, and OpenCV 5 no longer ships the cascades; Haar is 3-10x faster,
which predict does not need.

Used by predict (--detect-faces); the model then sees each face as it saw its training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

# Detection runs on a copy no longer than this on its longer side (boxes are scaled back): MTCNN's
# image pyramid costs grow with the pixels, and a face under 1/80 of a photo's side is not one to classify.
DETECT_MAX_SIDE = 1600


@dataclass(frozen=True)
class Face:
    """One detected face: its box in the photo's pixels (left, top, width, height) and the detector's
    confidence (0..1)."""

    left: int
    top: int
    width: int
    height: int
    confidence: float


@lru_cache(maxsize=1)
def detector():
    """The MTCNN detector, built once per process (its three small networks load from the package)."""
    try:
        from mtcnn import MTCNN
    except ImportError:
        from stages.common.errors import UserError
        raise UserError("--detect-faces needs the mtcnn package; install requirements.txt (pip install mtcnn==1.0.0)") from None
    return MTCNN(device="CPU:0")


def detect_faces(rgb: Image.Image, min_confidence: float) -> list[Face]:
    """The faces MTCNN finds in an RGB image with at least min_confidence, left to right (then top to bottom)."""
    scale = min(1.0, DETECT_MAX_SIDE / max(rgb.size))
    size = (round(rgb.width * scale), round(rgb.height * scale))
    if min(size) < 12:   # below MTCNN's smallest window (a sliver of a photo, or one scaled to one): no face
        return []
    small = rgb if scale == 1.0 else rgb.resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.uint8)
    found = []
    for result in detector().detect_faces(pixels):
        if result["confidence"] < min_confidence:
            continue
        left, top, width, height = (value / scale for value in result["box"])
        found.append(Face(round(left), round(top), max(1, round(width)), max(1, round(height)),
                          round(float(result["confidence"]), 4)))
    return sorted(found, key=lambda face: (face.left, face.top))


def crop_box(face: Face, image_size: tuple[int, int], scale: float) -> tuple[int, int, int, int]:
    """The square around the face that a training image would show: side = scale x the box's longer
    side, centred on the box, moved inside the photo where it fits and cut at its edges where it does
    not. (left, top, right, bottom) for PIL's crop."""
    width, height = image_size
    side = min(round(scale * max(face.width, face.height)), max(width, height))
    centre_x, centre_y = face.left + face.width / 2, face.top + face.height / 2
    left = min(max(round(centre_x - side / 2), 0), max(width - side, 0))
    top = min(max(round(centre_y - side / 2), 0), max(height - side, 0))
    return left, top, min(left + side, width), min(top + side, height)


def crop_face(rgb: Image.Image, face: Face, scale: float) -> Image.Image:
    """The face's crop_box cut from the photo (resize it as every image is: images.square_pixels)."""
    return rgb.crop(crop_box(face, rgb.size, scale))
