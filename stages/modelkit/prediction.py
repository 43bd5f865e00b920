"""Predicting image files with a saved model, the core of the predict command: files in, rows out.

Each image is loaded and resized by the same loader as the prepare stage and fed as 0-255 pixels,
as the evaluate stage feeds them, so a prediction here is the one evaluate would make. Files are
read lazily and predicted in batches: folders of any size run in bounded memory. With face
detection, each face is cropped as the training images are cropped and classified on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from stages.common.errors import UserError
from stages.images.faces import DETECT_MAX_SIDE, Face, crop_face, detect_faces
from stages.images.reading import (DEFAULT_MAX_PIXELS, UnreadableImage, iter_image_files, load_rgb, open_rgb,
                                   square_pixels)

NO_FACE = "no face found"


def iter_inputs(paths: Iterable[Path]) -> Iterator[Path]:
    """The files to predict, lazily: a file as given, a folder's image files recursively, sorted."""
    for path in paths:
        if path.is_dir():
            yield from iter_image_files(path)
        else:
            yield path


def count_inputs(paths: Iterable[Path], budget_seconds: float = 1.0) -> int | None:
    """How many files iter_inputs will give, for the progress bar's total; None when the folders take
    longer than budget_seconds to list (a slow network share: the bar then just counts)."""
    deadline = time.monotonic() + budget_seconds
    count = 0
    for count, _ in enumerate(iter_inputs(paths), start=1):
        if count % 256 == 0 and time.monotonic() > deadline:
            return None
    return count


@dataclass(frozen=True)
class FaceOptions:
    """--detect-faces: classify each face with at least min_confidence, cropped face_crop x its box."""

    min_confidence: float
    face_crop: float


@dataclass
class Item:
    """One thing to classify: a whole image, or one face of it (face None: the whole image); pixels
    None: an image in which no face was found."""

    path: Path
    pixels: np.ndarray | None
    face: Face | None = None
    number: int = 0          # the face's number in its image, from 1 (left to right)


def load_items(files: Iterable[Path], size: int, faces: FaceOptions | None = None,
               on_unreadable: Callable[[Path, str], None] | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Item]:
    """Each readable file as an Item (uint8 [size, size, 3] pixels, loaded as prepare loads images,
    refused over max_pixels as prepare refuses them); with `faces`, one Item per face found, or one
    without pixels when none is. Unreadable files go to on_unreadable(path, reason)."""
    for path in files:
        try:
            if faces is None:
                yield Item(path, load_rgb(path, size, max_pixels))
                continue
            # Detection wants the photo, not a 100 px thumbnail: a big JPEG still decodes scaled down.
            photo = open_rgb(path, max_pixels, draft=DETECT_MAX_SIDE)
        except UnreadableImage as error:
            if on_unreadable is not None:
                on_unreadable(path, str(error))
            continue
        found = detect_faces(photo, faces.min_confidence)
        if not found:
            yield Item(path, None)
        for number, face in enumerate(found, start=1):
            yield Item(path, square_pixels(crop_face(photo, face, faces.face_crop), size), face, number)


def batched(items: Iterable[Item], batch_size: int) -> Iterator[list[Item]]:
    """Items in lists of batch_size that hold pixels (faceless items ride along, uncounted)."""
    batch: list[Item] = []
    filled = 0
    for item in items:
        batch.append(item)
        filled += item.pixels is not None
        if filled == batch_size:
            yield batch
            batch, filled = [], 0
    if batch:
        yield batch


def prediction_row(file: str, probability: float | None, classes: Sequence[str], threshold: float,
                   item: Item | None = None, faces: bool = False) -> dict:
    """One output row: the file, (with faces: the face's number, box and confidence,) P(each class)
    and the predicted class; `probability` is P(classes[1]), None for an image without a face."""
    row: dict = {"file": file}
    if faces:
        face = item.face if item is not None else None
        row |= {"face": item.number if item is not None else 0,
                "left": face.left if face else None, "top": face.top if face else None,
                "width": face.width if face else None, "height": face.height if face else None,
                "face_confidence": face.confidence if face else None}
    if probability is None:
        return row | {f"probability_{classes[0]}": None, f"probability_{classes[1]}": None, "predicted": NO_FACE}
    return row | {
        f"probability_{classes[0]}": 1.0 - probability,
        f"probability_{classes[1]}": probability,
        "predicted": classes[1] if probability >= threshold else classes[0],
    }


def predict_files(model, files: Iterable[Path], classes: Sequence[str], threshold: float, batch_size: int,
                  on_unreadable: Callable[[Path, str], None] | None = None, faces: FaceOptions | None = None,
                  explain_to: Callable[[list[Item], np.ndarray], None] | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[list[dict]]:
    """Predict every readable file (with `faces`: every face in it); yield one list of prediction_row
    dicts per batch, in input order. explain_to(items, pixels), if given, gets each batch's
    classified items and their pixels."""
    size = model_image_size(model)
    for batch in batched(load_items(files, size, faces, on_unreadable, max_pixels), batch_size):
        classified = [item for item in batch if item.pixels is not None]
        probabilities: dict[int, float] = {}
        if classified:
            pixels = np.stack([item.pixels for item in classified]).astype(np.float32)
            # The sigmoid output is P(class index 1), exactly as evaluate scores it.
            found = np.asarray(model.predict_on_batch(pixels)).reshape(-1)
            probabilities = {id(item): float(p) for item, p in zip(classified, found)}
            if explain_to is not None:
                explain_to(classified, pixels)
        yield [prediction_row(str(item.path), probabilities.get(id(item)), classes, threshold, item, faces is not None)
               for item in batch]


def model_image_size(model) -> int:
    """The square image size the model takes (its input is [batch, size, size, 3])."""
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3
            and isinstance(shape[1], int) and shape[1] == shape[2]):
        raise UserError(f"the model takes input of shape {shape}; expected (None, size, size, 3)")
    if model.output_shape[-1] != 1:
        raise UserError(f"the model outputs shape {model.output_shape}; expected one sigmoid probability")
    return shape[1]


class ExplanationWriter:
    """--explain DIR: each classified image (or face) beside its heat map for the class `threshold` predicts
    (as its row says), DIR/<name>[_face<k>].png; a name already written in this run gets _2, _3, ..."""

    def __init__(self, model, folder: Path, method: str, threshold: float, method_key: str = "method"):
        from stages.analysis import heatmaps

        self.folder, self.heatmaps = folder, heatmaps
        try:
            self.explainer = heatmaps.Explainer(model, model_image_size(model), method, threshold=threshold)
        except ValueError as error:   # method gradcam for a model it does not apply to: `method_key` says where it came from
            raise UserError(f"--explain: {error} ({method_key})") from None
        self.written: set[str] = set()

    def __call__(self, items: list[Item], pixels: np.ndarray) -> None:
        maps = self.explainer(pixels)
        for item, image, heat in zip(items, pixels, maps):
            stem = item.path.stem + (f"_face{item.number}" if item.face else "")
            name, copy = f"{stem}.png", 1
            while name in self.written:
                copy += 1
                name = f"{stem}_{copy}.png"
            self.written.add(name)
            self.heatmaps.write_explanation(self.folder / name, image, heat)
