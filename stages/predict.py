"""predict: P(each class) for image files or folders, from a trained model.

    python -m stages.predict baseline photos/ extra.jpg --csv predictions.csv

Each image is loaded and resized by the same loader as the prepare stage and fed as 0-255 pixels,
as the evaluate stage feeds them, so a prediction here is the one evaluate would make. Files are
read lazily and predicted in batches: folders of any size run in bounded memory.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from stages import cli
from stages.config import MODEL_NAME, MODELS_DIR, PARAMS_FILE, load_params
from stages.contracts import MODEL_FILE, ModelDir
from stages.errors import UserError
from stages.fsutil import atomic_file
from stages.images import DEFAULT_MAX_PIXELS, UnreadableImage, is_image_file, iter_image_files, load_rgb

# --- the core: files in, rows out -------------------------------------------------------------

def iter_inputs(paths: Iterable[Path]) -> Iterator[Path]:
    """The files to predict, lazily: a file as given, a folder's image files recursively, sorted."""
    for path in paths:
        if path.is_dir():
            yield from iter_image_files(path)
        else:
            yield path


def pixel_budget() -> int:
    """params.yaml's prepare.max_pixels, so predict refuses what prepare skips; without one, the loader's default."""
    try:
        return load_params().prepare.max_pixels
    except UserError:
        return DEFAULT_MAX_PIXELS


def load_batches(files: Iterable[Path], size: int, batch_size: int,
                 on_unreadable: Callable[[Path, str], None] | None = None) -> Iterator[tuple[list[Path], np.ndarray]]:
    """(paths, float32 [n, size, size, 3] pixels 0-255) per batch of readable files, in input order.

    Unreadable files are passed to on_unreadable(path, reason) and left out.
    """
    paths: list[Path] = []
    images: list[np.ndarray] = []
    max_pixels = pixel_budget()
    for path in files:
        try:
            images.append(load_rgb(path, size, max_pixels))
        except UnreadableImage as error:
            if on_unreadable is not None:
                on_unreadable(path, str(error))
            continue
        paths.append(path)
        if len(paths) == batch_size:
            yield paths, np.stack(images).astype(np.float32)
            paths, images = [], []
    if paths:
        yield paths, np.stack(images).astype(np.float32)


def prediction_row(file: str, probability: float, classes: Sequence[str], threshold: float) -> dict:
    """One output row: the file, P(each class), and the predicted class; `probability` is P(classes[1])."""
    return {
        "file": file,
        f"probability_{classes[0]}": 1.0 - probability,
        f"probability_{classes[1]}": probability,
        "predicted": classes[1] if probability >= threshold else classes[0],
    }


def predict_files(model, files: Iterable[Path], classes: Sequence[str], threshold: float, batch_size: int,
                  on_unreadable: Callable[[Path, str], None] | None = None) -> Iterator[list[dict]]:
    """Predict every readable file; yield one list of prediction_row dicts per batch, in input order."""
    size = model_image_size(model)
    for paths, images in load_batches(files, size, batch_size, on_unreadable):
        # The sigmoid output is P(class index 1), exactly as evaluate scores it.
        probabilities = np.asarray(model.predict_on_batch(images)).reshape(-1)
        yield [prediction_row(str(path), float(p), classes, threshold) for path, p in zip(paths, probabilities)]


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
    """Rows as fixed-width table lines; the file comes last, since streaming cannot know the longest name."""
    width = max(len("predicted"), *(len(name) for name in classes))
    titles = [f"P({name})" for name in classes]
    widths = [max(len(title), 6) for title in titles]
    lines = []
    if header:
        lines.append(f"{titles[0]:>{widths[0]}}  {titles[1]:>{widths[1]}}  {'predicted':<{width}}  file")
    for row in rows:
        p0, p1 = row[f"probability_{classes[0]}"], row[f"probability_{classes[1]}"]
        lines.append(f"{p0:>{widths[0]}.4f}  {p1:>{widths[1]}.4f}  {row['predicted']:<{width}}  {row['file']}")
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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Every cheap check before TensorFlow starts: a typo fails in a second, not after model loading.
    for path in args.paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    check_csv_target(args.csv, args.paths)
    model_path = resolve_model(args.model)
    classes = read_classes(model_path)
    threshold = args.threshold if args.threshold is not None else default_threshold()

    cli.quiet_tensorflow()
    from stages.models import load_model

    model = load_model(model_path)
    model_image_size(model)

    def warn(path: Path, reason: str) -> None:
        tqdm.write(f"warning: {path}: skipped, {reason}", file=sys.stderr)

    columns = list(prediction_row("", 0.0, classes, threshold))
    predicted = 0
    with contextlib.ExitStack() as stack:
        writer = None
        if args.csv is not None:
            writer = csv.DictWriter(stack.enter_context(atomic_file(args.csv, "w")), fieldnames=columns)
            writer.writeheader()
        files = stack.enter_context(tqdm(iter_inputs(args.paths), desc="predict", unit="img"))
        show_table = True
        for rows in predict_files(model, files, classes, threshold, args.batch_size, warn):
            if show_table:
                try:
                    # One write per batch: the table streams without redrawing the progress bar per row.
                    tqdm.write("\n".join(table_lines(rows, classes, header=predicted == 0)), file=sys.stdout)
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
            predicted += len(rows)
        if predicted == 0:
            # Raised inside the ExitStack, so a half-written CSV is removed, not renamed into place.
            seen = files.n
            given = " ".join(str(path) for path in args.paths)
            raise UserError(f"no image file found in {given}" if seen == 0
                                else f"none of the {seen} files could be read as an image (see the warnings above)")
    skipped = files.n - predicted
    note = f"; skipped {skipped} unreadable" if skipped else ""
    written = f"; wrote {args.csv}" if args.csv is not None else ""
    print(f"predicted {predicted} image{'s' if predicted != 1 else ''}{note}{written}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, stage=False)
