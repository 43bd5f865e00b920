"""Face detectors for predict --detect-faces: MTCNN (PyPI mtcnn) against OpenCV's Haar cascade, and
the crop scale (predict.face_crop) measured on training images.

    python -m benchmarks.face_detectors                  # both detectors on the test photos
    python -m benchmarks.face_detectors --crops data/raw/trainval/Train

The photos are the ones tests/test_faces.py uses (tests/photos.py: Grace Hopper from matplotlib's
sample data, public domain; sklearn's two sample photos, no faces; a drawn room). OpenCV is not a
project requirement: `pip install opencv-python-headless==4.14.0.94` for the comparison (OpenCV 5 no
longer has CascadeClassifier). Results: benchmarks/face_detectors.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def haar(pixels: np.ndarray) -> list[tuple[list[int], float]]:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    boxes, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40),
                                                  outputRejectLevels=True)
    return [(list(map(int, box)), float(weight)) for box, weight in zip(boxes, np.ravel(weights))]


def mtcnn(pixels: np.ndarray) -> list[tuple[list[int], float]]:
    from stages.images.faces import detector

    return [(list(map(int, found["box"])), float(found["confidence"])) for found in detector().detect_faces(pixels)]


def compare_detectors(folder: Path) -> None:
    from PIL import Image

    from tests.photos import write_photos

    photos = write_photos(folder)
    detectors = {"mtcnn": mtcnn}
    try:
        import cv2  # noqa: F401
        detectors["haar"] = haar
    except ImportError:
        print("OpenCV not installed: MTCNN only")
    for name, detect in detectors.items():
        detect(np.zeros((64, 64, 3), np.uint8))  # load and warm up
        for photo, faces in photos.items():
            pixels = np.asarray(Image.open(photo).convert("RGB"))
            start = time.perf_counter()
            found = detect(pixels)
            seconds = time.perf_counter() - start
            scores = ", ".join(f"{score:.2f}" for _, score in found)
            print(f"| {name} | {photo.name} | {faces} | {len(found)} | {scores} | {seconds:.2f} |")


def measure_crops(folder: Path, limit: int) -> None:
    """The training crops' side over the MTCNN box's longer side: what predict.face_crop should be."""
    from stages.images.faces import detect_faces
    from stages.images.reading import UnreadableImage, iter_image_files, open_rgb

    ratios = []
    files = list(iter_image_files(folder))[:: max(1, len(list(iter_image_files(folder))) // limit)][:limit]
    for path in files:
        try:
            rgb = open_rgb(path)
        except UnreadableImage:
            continue
        faces = detect_faces(rgb, 0.9)
        if len(faces) == 1:
            ratios.append(max(rgb.size) / max(faces[0].width, faces[0].height))
    if not ratios:
        print(f"{folder}: no single face found in {len(files)} images")
        return
    print(f"{folder}: one face in {len(ratios)} of {len(files)} images; image side / box's longer side: "
          f"median {np.median(ratios):.2f} (quartiles {np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, help="measure the crop scale on this folder of training images")
    parser.add_argument("--limit", type=int, default=200, help="images to look at with --crops")
    parser.add_argument("--photos", type=Path, default=Path("/tmp/facegender-photos"))
    args = parser.parse_args()
    if args.crops:
        measure_crops(args.crops, args.limit)
    else:
        compare_detectors(args.photos)


if __name__ == "__main__":
    main()
