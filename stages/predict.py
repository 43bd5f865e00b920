"""predict: P(each class) for image files or folders, from a trained model.

    facegender predict baseline photos/ extra.jpg --csv predictions.csv
    facegender predict improved group_photo.jpg --detect-faces --explain maps/

The images are loaded exactly as prepare loads them and scored as evaluate scores them, in batches
and in bounded memory (stages/modelkit/prediction.py, the core). This module is the command: its
settings from params.yaml (read once), the model and its classes, the table, the CSV, the exit status.
The rows go to the terminal as a table, or with --csv to the file, the terminal then getting only the
summary line (--table: both).

--detect-faces (for ordinary photos; default predict.detect_faces) finds each face (stages/images/faces.py),
crops it as the training images are cropped and classifies each: one row per face with its box and
confidence. A photo without a face gets a "no face found" row and is not classified; when no photo
has a face, predict exits with status 1. --explain DIR writes each classified image (or face) beside
a heat map of where the model looked (stages/analysis/heatmaps.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from stages.common import cli
from stages.common.atomic_files import atomic_file
from stages.common.config import MODELS_DIR, PARAMS_FILE
from stages.common.errors import UserError
from stages.common.progress import progress_bar
from stages.contracts.training import MODEL_FILE
from stages.images.reading import is_image_file
from stages.modelkit.prediction import (
    NO_FACE,
    ExplanationWriter,
    count_inputs,
    iter_inputs,
    predict_files,
    prediction_row,
)
from stages.modelkit.trained import find_trained, load_trained, read_classes, read_settings

# The params.yaml keys predict reads for its own work (beside evaluate.threshold, which --threshold
# replaces): a bad one stops it, rather than a default standing in unannounced.
OWN_KEYS = ("predict.", "prepare.max_pixels", "evaluate.explain")


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
                                      f"<seed>/{MODEL_FILE}), a .keras file, a folder holding {MODEL_FILE}, or an "
                                      f"export (exports/<name>/: a .tflite file or the saved_model folder)")
    parser.add_argument("paths", nargs="+", type=Path, metavar="path",
                        help="image files, or folders searched recursively for image files")
    parser.add_argument("--csv", type=Path, help="write the predictions to this CSV file (then the terminal gets the "
                                                  "summary line, not every row: see --table)")
    parser.add_argument("--table", action=argparse.BooleanOptionalAction, default=None,
                        help="print every row to the terminal (default: only when there is no --csv)")
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
    settings = read_settings()
    if settings.problem_key and settings.problem_key.startswith(OWN_KEYS):
        raise UserError(settings.problem)     # a setting of predict's own: no flag stands in for it
    model_path = find_trained(args.model, settings.model_names, settings.seed)
    read_classes(model_path, settings)   # before TensorFlow starts: a model without class names fails at once
    threshold = args.threshold if args.threshold is not None else settings.threshold
    if threshold is None:
        raise UserError(f"{settings.problem}; or give --threshold")
    detect = args.detect_faces if args.detect_faces is not None else settings.detect_faces
    faces = settings.faces if detect else None

    cli.quiet_tensorflow()
    from stages.common.distribute import cpu_share

    trained = load_trained(model_path, settings, cpu_share())
    classes, runner = trained.classes, trained.runner
    explain_to = None
    if args.explain is not None and trained.model is None:
        raise UserError(f"--explain: {model_path} is an export, which has no gradients to explain; give the .keras "
                        "model for heat maps")
    if args.explain is not None:
        explain_to = ExplanationWriter(trained.model, args.explain, settings.explain_method, threshold,
                                       f"evaluate.explain.method in {PARAMS_FILE}")

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
        bar = stack.enter_context(progress_bar(count_inputs(args.paths), "predict", stream=sys.stderr))
        seen = 0

        def files():
            nonlocal seen
            for path in iter_inputs(args.paths):
                seen += 1
                bar.update(1)
                yield path

        # The table goes to the terminal unless the rows go to a CSV (--table brings it back there).
        show_table = args.table if args.table is not None else args.csv is None
        for rows in predict_files(runner, files(), classes, threshold, args.batch_size, warn, faces, explain_to,
                                  settings.max_pixels):
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
            raise UserError(f"no image file found in {given}" if seen == 0
                            else f"none of the {seen} files could be read as an image (see the warnings above)")
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
