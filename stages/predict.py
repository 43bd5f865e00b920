"""predict: P(each class) for image files or folders, from a trained model.

    python -m stages.predict baseline photos/ extra.jpg --csv predictions.csv
    python -m stages.predict improved group_photo.jpg --detect-faces --explain maps/

Each image is loaded and resized by the same loader as the prepare stage and fed as 0-255 pixels,
as the evaluate stage feeds them, so a prediction here is the one evaluate would make. Files are
read lazily and predicted in batches: folders of any size run in bounded memory.

--detect-faces (for ordinary photos; default predict.detect_faces) finds each face (stages/faces.py),
crops it as the training images are cropped and classifies each: one row per face with its box and
confidence. A photo without a face gets a "no face found" row and is not classified; when no photo
has a face, predict exits with status 1. --explain DIR writes each classified image (or face) beside
a heat map of where the model looked (stages/explain.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from stages import cli
from stages.config import MODEL_NAME, MODELS_DIR, PARAMS_FILE, load_params
from stages.contracts import MODEL_FILE, ModelDir
from stages.errors import UserError
from stages.fsutil import atomic_file
from stages.faces import DETECT_MAX_SIDE, Face, crop_face, detect_faces
from stages.images import (DEFAULT_MAX_PIXELS, UnreadableImage, is_image_file, iter_image_files, load_rgb, open_rgb,
                           square_pixels)

# --- the core: files in, rows out -------------------------------------------------------------

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


def pixel_budget() -> int:
    """params.yaml's prepare.max_pixels, so predict refuses what prepare skips; without one, the loader's default."""
    try:
        return load_params().prepare.max_pixels
    except UserError:
        return DEFAULT_MAX_PIXELS


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
               on_unreadable: Callable[[Path, str], None] | None = None) -> Iterator[Item]:
    """Each readable file as an Item (uint8 [size, size, 3] pixels, loaded as prepare loads images);
    with `faces`, one Item per face found, or one without pixels when none is. Unreadable files go
    to on_unreadable(path, reason)."""
    max_pixels = pixel_budget()
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
                  explain_to: Callable[[list[Item], np.ndarray], None] | None = None) -> Iterator[list[dict]]:
    """Predict every readable file (with `faces`: every face in it); yield one list of prediction_row
    dicts per batch, in input order. explain_to(items, pixels), if given, gets each batch's
    classified items and their pixels."""
    size = model_image_size(model)
    for batch in batched(load_items(files, size, faces, on_unreadable), batch_size):
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


class ExplanationWriter:
    """--explain DIR: each classified image (or face) beside its heat map, DIR/<name>[_face<k>].png;
    a name already written in this run gets _2, _3, ..."""

    def __init__(self, model, folder: Path, method: str):
        from stages import explain

        self.folder, self.explain = folder, explain
        try:
            self.explainer = explain.Explainer(model, model_image_size(model), method)
        except ValueError as error:   # evaluate.explain.method gradcam for a model it does not apply to
            raise UserError(f"--explain: {error} (evaluate.explain.method in {PARAMS_FILE})") from None
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
            self.explain.write_explanation(self.folder / name, image, heat)


def model_image_size(model) -> int:
    """The square image size the model takes (its input is [batch, size, size, 3])."""
    shape = model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3
            and isinstance(shape[1], int) and shape[1] == shape[2]):
        raise UserError(f"the model takes input of shape {shape}; expected (None, size, size, 3)")
    if model.output_shape[-1] != 1:
        raise UserError(f"the model outputs shape {model.output_shape}; expected one sigmoid probability")
    return shape[1]


# --- the shell: model, classes and threshold, table and CSV -----------------------------------

def model_names() -> list[str]:
    """The models params.yaml names (train.<name>), or none when it cannot be read."""
    try:
        return load_params().model_names
    except UserError:
        return []


def resolve_model(spec: str) -> Path:
    """The model file for a name (models/<name>/model.keras), a .keras file, or a folder holding one."""
    names = model_names()
    # A name from params.yaml, or (params.yaml aside) a bare name that is no file or folder here.
    if spec in names or (re.fullmatch(MODEL_NAME, spec) and not Path(spec).exists()):
        path = ModelDir.of(spec).model
        if not path.is_file():
            raise UserError(f"{path}: not found; train it first (dvc repro train@{spec}) "
                            "or give the path of a .keras file")
        return path
    path = Path(spec)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        given = f"a model name ({', '.join(names)}), " if names else "a model name from params.yaml's train section, "
        raise UserError(f"{path}: not found; give {given}a .keras file or a folder holding {MODEL_FILE}")
    return path


def read_classes(model_path: Path) -> list[str]:
    """The class names the model was trained on: training.json beside it, else params.yaml's prepare.classes."""
    training = ModelDir(model_path.parent).training
    if training.is_file():
        try:
            classes = json.loads(training.read_text()).get("classes")
        except (ValueError, AttributeError):
            raise UserError(f"{training}: not a JSON object; retrain the model or remove the file") from None
        if classes is not None:
            if not (isinstance(classes, list) and len(classes) == 2 and all(isinstance(c, str) for c in classes)):
                raise UserError(f"{training}: \"classes\" should be two class names, got {classes!r}")
            return classes
        missing = f"{training} has no \"classes\""
    else:
        missing = f"{training} is missing"
    # Guessing the names would silently swap labels for a model trained with other classes.
    try:
        return list(load_params().prepare.classes)
    except UserError as error:
        raise UserError(f"cannot tell the class names: {missing}, and {PARAMS_FILE} gave none ({error})") from None


def default_threshold() -> float:
    """params.yaml's evaluate.threshold, so predict labels images as evaluate scored them."""
    try:
        return load_params().evaluate.threshold
    except UserError as error:
        raise UserError(f"{error}; or give --threshold") from None


def table_lines(rows: list[dict], classes: Sequence[str], header: bool = False) -> list[str]:
    """Rows as fixed-width table lines; the file comes last, since streaming cannot know the longest
    name. Rows of --detect-faces also show the face's number, box (left,top,width,height) and confidence."""
    width = max(len("predicted"), len(NO_FACE), *(len(name) for name in classes))
    titles = [f"P({name})" for name in classes]
    widths = [max(len(title), 6) for title in titles]
    faces = bool(rows) and "face" in rows[0]
    lines = []
    if header:
        face_titles = f"{'face':>4}  {'box':<19}  {'conf':>5}  " if faces else ""
        lines.append(f"{titles[0]:>{widths[0]}}  {titles[1]:>{widths[1]}}  {'predicted':<{width}}  {face_titles}file")
    for row in rows:
        p0, p1 = row[f"probability_{classes[0]}"], row[f"probability_{classes[1]}"]
        shown = (f"{p0:>{widths[0]}.4f}  {p1:>{widths[1]}.4f}" if p1 is not None
                 else f"{'-':>{widths[0]}}  {'-':>{widths[1]}}")
        face = ""
        if faces:
            box = (f"{row['left']},{row['top']},{row['width']},{row['height']}" if row["face"] else "-")
            confidence = f"{row['face_confidence']:.3f}" if row["face"] else "-"
            face = f"{row['face']:>4}  {box:<19}  {confidence:>5}  "
        lines.append(f"{shown}  {row['predicted']:<{width}}  {face}{row['file']}")
    return lines


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def check_csv_target(csv_path: Path | None, inputs: Sequence[Path]) -> None:
    """--csv must name a file that is not one of the inputs: predict never writes over an image."""
    if csv_path is None:
        return
    if csv_path.is_dir():
        raise UserError(f"--csv {csv_path}: is a folder; give a file name, e.g. {csv_path / 'predictions.csv'}")
    given = {path.resolve() for path in inputs if path.is_file()}
    if csv_path.resolve() in given or (csv_path.exists() and is_image_file(csv_path)):
        raise UserError(f"--csv {csv_path}: is an image file; predict does not write over its inputs, "
                        "give another file name")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with --help."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help=f"a model name from params.yaml's train section ({MODELS_DIR}/<name>/"
                                      f"{MODEL_FILE}), a .keras file, or a folder holding {MODEL_FILE}")
    parser.add_argument("paths", nargs="+", type=Path, metavar="path",
                        help="image files, or folders searched recursively for image files")
    parser.add_argument("--csv", type=Path, help="also write the predictions to this CSV file")
    parser.add_argument("--batch-size", type=_positive, default=64, help="images per model call (default 64)")
    parser.add_argument("--threshold", type=_probability,
                        help=f"predict the second class when its probability is at least this "
                             f"(default: evaluate.threshold in {PARAMS_FILE})")
    parser.add_argument("--detect-faces", action=argparse.BooleanOptionalAction, default=None,
                        help="find the faces in each photo (MTCNN) and classify each, cropped as the training "
                             "images are: one row per face with its box and confidence; a photo without a face "
                             f"gets a '{NO_FACE}' row (default: predict.detect_faces in {PARAMS_FILE})")
    parser.add_argument("--explain", type=Path, metavar="DIR",
                        help="write each classified image (or face) beside a heat map of where the model looked "
                             "into DIR as <name>.png (method: evaluate.explain.method)")
    return parser.parse_args(argv)


def predict_settings() -> tuple[FaceOptions, bool, str]:
    """params.yaml's predict section and evaluate.explain.method, or the shipped defaults without one."""
    try:
        params = load_params()
    except UserError:
        return FaceOptions(min_confidence=0.9, face_crop=1.8), False, "auto"
    section = params.predict
    return (FaceOptions(section.min_face_confidence, section.face_crop), section.detect_faces,
            params.evaluate.explain.method)


def check_explain_target(folder: Path | None, inputs: Sequence[Path]) -> None:
    """--explain must be a folder (made if missing) outside the input folders: its PNGs must not
    become inputs of the next run over the same folder."""
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--explain {folder}: is a file; give a folder (made if missing)")
    target = folder.resolve()
    for path in inputs:
        if path.is_dir() and (target == path.resolve() or path.resolve() in target.parents):
            raise UserError(f"--explain {folder}: is inside the input folder {path}; give a folder outside it")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Every cheap check before TensorFlow starts: a typo fails in a second, not after model loading.
    for path in args.paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    check_csv_target(args.csv, args.paths)
    check_explain_target(args.explain, args.paths)
    model_path = resolve_model(args.model)
    classes = read_classes(model_path)
    threshold = args.threshold if args.threshold is not None else default_threshold()
    face_options, detect_by_default, explain_method = predict_settings()
    faces = face_options if (args.detect_faces if args.detect_faces is not None else detect_by_default) else None

    cli.quiet_tensorflow()
    from stages.models import load_model

    model = load_model(model_path)
    model_image_size(model)
    explain_to = ExplanationWriter(model, args.explain, explain_method) if args.explain is not None else None

    unreadable = 0

    def warn(path: Path, reason: str) -> None:
        nonlocal unreadable
        unreadable += 1
        tqdm.write(f"warning: {path}: skipped, {reason}", file=sys.stderr)

    columns = list(prediction_row("", 0.0, classes, threshold, faces=faces is not None))
    rows_out = faceless = 0
    photos_with_faces: set[str] = set()
    with contextlib.ExitStack() as stack:
        writer = None
        if args.csv is not None:
            writer = csv.DictWriter(stack.enter_context(atomic_file(args.csv, "w")), fieldnames=columns)
            writer.writeheader()
        files = stack.enter_context(tqdm(iter_inputs(args.paths), total=count_inputs(args.paths),
                                         desc="predict", unit="img"))
        show_table = True
        for rows in predict_files(model, files, classes, threshold, args.batch_size, warn, faces, explain_to):
            if show_table:
                try:
                    # One write per batch: the table streams without redrawing the progress bar per row.
                    tqdm.write("\n".join(table_lines(rows, classes, header=rows_out == 0)), file=sys.stdout)
                    sys.stdout.flush()
                except BrokenPipeError:
                    # `predict ... | head` closed the table's reader; the CSV, if any, still gets every row.
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    if writer is None:
                        return
                    show_table = False
            if writer is not None:
                writer.writerows({key: round(value, 6) if isinstance(value, float) else value
                                  for key, value in row.items()} for row in rows)
            rows_out += len(rows)
            faceless += sum(row["predicted"] == NO_FACE for row in rows)
            photos_with_faces.update(row["file"] for row in rows if row["predicted"] != NO_FACE)
        classified = rows_out - faceless
        if rows_out == 0:
            # Raised inside the ExitStack, so a half-written CSV is removed, not renamed into place.
            given = " ".join(str(path) for path in args.paths)
            raise UserError(f"no image file found in {given}" if files.n == 0
                            else f"none of the {files.n} files could be read as an image (see the warnings above)")
        if classified == 0:
            # Every readable photo is faceless: nothing was classified, which is no success either.
            raise UserError(f"{NO_FACE} in {'the photo' if faceless == 1 else f'any of the {faceless} photos'}; "
                            "nothing classified (give photos with a visible face, or leave out --detect-faces)")
    if faces is None:
        done = f"predicted {classified} image{'s' if classified != 1 else ''}"
    else:
        done = (f"predicted {classified} face{'s' if classified != 1 else ''} in {len(photos_with_faces)} "
                f"photo{'s' if len(photos_with_faces) != 1 else ''}" + (f"; {NO_FACE} in {faceless}" if faceless else ""))
    note = f"; skipped {unreadable} unreadable" if unreadable else ""
    written = f"; wrote {args.csv}" if args.csv is not None else ""
    explained = f"; heat maps in {args.explain}" if args.explain is not None else ""
    print(f"{done}{note}{written}{explained}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, stage=False)
