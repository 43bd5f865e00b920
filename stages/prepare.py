"""prepare: raw datasets -> data/prepared/{train,val,test}.zip of {Female,Male}/*.png, RGB, image_size².

train <- the first dataset's Train, val <- its Test (its Validation has no labels), test <- the
second dataset with its class folders renamed by params (man -> Male, woman -> Female).
Unreadable files are skipped and listed with their reason in metrics/prepare.json. Each split is one
uncompressed zip of PNGs (contracts.PreparedWriter): a folder of images to look at, three files for DVC.
The same picture twice, exactly or nearly (stages/images/catalogue.py), is counted; a training copy
of a val or test image is dropped (prepare.drop_duplicates).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from stages.common import cli
from stages.common.atomic_files import atomic_file, staged_dir
from stages.common.config import PREPARED_DIR, RAW_DIR, SPLITS, PrepareParams, load_params
from stages.common.distribute import cpu_share
from stages.common.errors import UserError
from stages.common.progress import progress_bar
from stages.contracts.prepared import PreparedWriter, PrepareSummary, SkippedFile, duplicates_figure, write_groups
from stages.images.own_data import OwnImage, assign_splits, list_own_data, read_groups_file
from stages.images.catalogue import Catalogue, examples_figure
from stages.images.near_duplicates import image_hashes
from stages.images.reading import DEFAULT_MAX_PIXELS, UnreadableImage, find_split_folder, is_image_file, load_rgb


@dataclass(frozen=True)
class Task:
    """One source file and where its prepared copy goes (relative to the output root)."""

    split: str
    label: str
    source: Path
    name: str          # the PNG's name in the split's <label>/ folder
    group: str | None = None   # where the data say (groups.csv, labels.csv's group column)

    @property
    def file(self) -> str:
        """The prepared image as later stages name it: <split>/<Class>/<name>.png."""
        return f"{self.split}/{self.label}/{self.name}"


# How the prepared PNGs are compressed (pixels are the same whatever this says; only size and time
# change). zlib's run-length strategy, which its manual suggests for PNG image data: for 100x100
# faces, files as small as Pillow's default (level 6) for a fraction of its encoding time (benchmarks/history.md).
PNG_SETTINGS = {"compress_level": 1, "compress_type": zlib.Z_RLE}

# A file system's limit for one name, in bytes; flattened names past it are shortened with a hash.
MAX_NAME_BYTES = 255


def flat_stem(relative: Path) -> str:
    """sub/a.jpg -> sub__a; a name too long for the file system keeps its start and a hash of the whole."""
    stem = "__".join(relative.with_suffix("").parts)
    if len(stem.encode("utf-8")) <= MAX_NAME_BYTES - 20:   # room for __N and .png
        return stem
    digest = hashlib.sha1(stem.encode("utf-8")).hexdigest()[:12]
    return stem.encode("utf-8")[:180].decode("utf-8", "ignore") + "__" + digest


def target_names(relative_paths: Sequence[Path]) -> list[str]:
    """Flat, collision-free PNG names for files found under one class folder (sub/a.jpg -> sub__a.png).

    Names that would clash (a.jpg beside a.png, or on a case-insensitive disk) get __2, __3, ...
    in the order given, which is sorted, so reruns name every file the same.
    """
    used: set[str] = set()
    names = []
    for path in relative_paths:
        stem = flat_stem(path)
        candidate, number = stem, 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{stem}__{number}"
        used.add(candidate.lower())
        names.append(f"{candidate}.png")
    return names


def walk_files(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file and link under `folder`, never following a link: (path, None) for a regular file to
    consider, (path, why it is left out) for the rest, sorted."""
    for current, folders, files in os.walk(folder, followlinks=False):
        current_path = Path(current)
        hidden = any(part.startswith(".") for part in current_path.relative_to(folder).parts)
        for name in sorted(files) + sorted(name for name in folders if (current_path / name).is_symlink()):
            path = current_path / name
            if path.is_symlink():
                yield path, "a symbolic link (never followed)"
            elif hidden:
                yield path, "inside a hidden folder (ignored)"
            elif path.is_file():
                yield path, None
            else:
                yield path, "not a regular file"
        folders[:] = sorted(name for name in folders if not (current_path / name).is_symlink())


def account_for_files(raw_root: Path, params: PrepareParams) -> tuple[list[Task], list[SkippedFile]]:
    """List every file to convert, and every other file under the split folders with why it is left
    out: nothing under a split folder goes unaccounted for."""
    tasks: list[Task] = []
    skipped: list[SkippedFile] = []
    for split in SPLITS:
        source = params.splits[split]
        dataset_root = raw_root / source.dataset
        if not dataset_root.is_dir():
            raise UserError(
                f"{dataset_root}: not found; run the download stage first (dvc repro download)"
            )
        try:
            split_folder = find_split_folder(dataset_root, list(source.classes), within=source.folder)
        except FileNotFoundError as error:
            raise UserError(
                f"{error}; set prepare.splits.{split}.folder / .classes in params.yaml to match"
            ) from None
        wanted = {name.lower(): name for name in source.classes}
        groups = read_groups_file(dataset_root)
        images_by_label: dict[str, list[tuple[Path, Path]]] = {}
        for path, reason in walk_files(split_folder):
            relative = path.relative_to(split_folder)
            top = relative.parts[0]
            if reason is None and len(relative.parts) == 1:
                reason = "not inside a class folder"
            elif reason is None and top.lower() not in wanted:
                reason = (f"in folder '{top}', not a class of prepare.splits.{split}.classes "
                          f"({', '.join(source.classes)})")
            elif reason is None and not is_image_file(path):
                reason = "not an image file (name or extension)"
            if reason is not None:
                skipped.append(SkippedFile(split=split, file=str(path), reason=reason))
                continue
            # Class folders that differ only in case (Train/female beside Train/Female) are merged.
            label = source.classes[wanted[top.lower()]]
            images_by_label.setdefault(label, []).append((path, Path(*relative.parts[1:])))
        for label, images in sorted(images_by_label.items()):
            names = target_names([inside for _, inside in images])
            tasks.extend(Task(split, label, path, name, groups.get(path.relative_to(dataset_root).as_posix()))
                         for (path, _), name in zip(images, names))
    return tasks, skipped


def account_for_own_files(own_root: Path, params: PrepareParams) -> tuple[list[Task], list[SkippedFile]]:
    """The same for your own data (download.source: own) in data/raw/own: labels, splits and groups as
    stages/images/own_data.py reads them, the missing splits drawn by prepare.own.split."""
    if not own_root.is_dir():
        raise UserError(f"{own_root}: not found; run the download stage first (dvc repro download)")
    images, left_out = list_own_data(own_root, params.own)
    images = assign_splits(images, params.own.split)
    skipped = [SkippedFile(split=item.split or "none", file=str(own_root / item.relative), reason=item.reason)
               for item in left_out]
    tasks: list[Task] = []
    for split in SPLITS:
        for label in params.classes:
            chosen: list[OwnImage] = [image for image in images if image.split == split and image.label == label]
            names = target_names([Path(image.inside_label) for image in chosen])
            tasks.extend(Task(split, label, own_root / image.relative, name, image.group)
                         for image, name in zip(chosen, names))
    return tasks, skipped


class Converted(NamedTuple):
    """What a worker returns for one image: PNG bytes, a digest of its pixels and their perceptual hashes
    (near_duplicates.image_hashes, when asked for), or why it was skipped."""

    png: bytes | None
    digest: str | None
    hashes: bytes | None
    reason: str | None


def _convert_pixels(source: Path, image_size: int, max_pixels: int) -> tuple[Converted, np.ndarray | None]:
    try:
        pixels = load_rgb(source, image_size, max_pixels)
    except UnreadableImage as error:
        return Converted(None, None, None, str(error)), None
    # PNG: lossless and byte-identical on every rerun (no timestamps, fixed settings).
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG", **PNG_SETTINGS)
    return Converted(png.getvalue(), hashlib.sha1(pixels.tobytes()).hexdigest(), None, None), pixels


def convert(source: Path, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Converted:
    """One image as an RGB PNG of image_size²."""
    return _convert_pixels(source, image_size, max_pixels)[0]


# Images a worker converts per call: their hashes are then computed together, from the pixels it already
# holds (no second decode), for a fraction of their cost one by one (stages/images/near_duplicates.py).
BATCH = 16


def convert_batch(job: tuple[Sequence[Path], int, int, bool]) -> list[Converted]:
    """A worker's call: (sources, image_size, max_pixels, hashed) -> each source converted, with its
    perceptual hashes if `hashed`."""
    sources, image_size, max_pixels, hashed = job
    converted = [_convert_pixels(source, image_size, max_pixels) for source in sources]
    if not hashed:
        return [result for result, _ in converted]
    readable = [pixels for _, pixels in converted if pixels is not None]
    hashes = iter(image_hashes(readable))
    return [result if pixels is None else result._replace(hashes=next(hashes)) for result, pixels in converted]


def count_images(tasks: Iterable[Task], failed: set[Path], classes: list[str]) -> dict:
    """Images written per split and class, with totals."""
    counts = {split: {label: 0 for label in classes} for split in SPLITS}
    for task in tasks:
        if task.source not in failed:
            counts[task.split][task.label] += 1
    for split in SPLITS:
        counts[split]["total"] = sum(counts[split][label] for label in classes)
    return counts


# The held-out splits are converted first: a training image is then known to copy one when it arrives.
CONVERSION_ORDER = ("val", "test", "train")


def prepare(raw_root: Path, out_root: Path, params: PrepareParams, workers: int | None = None,
            own: bool = False) -> PrepareSummary:
    """Convert both datasets (or, with `own`, your data in raw_root/own) into out_root's split archives
    and groups.csv (out_root must exist); return the summary."""
    tasks, skipped = account_for_own_files(raw_root / "own", params) if own else account_for_files(raw_root, params)
    tasks.sort(key=lambda task: CONVERSION_ORDER.index(task.split))     # stable: plan's order within a split
    workers = workers or cpu_share()   # every core, or its share when experiments run side by side
    hashed = params.near_duplicate_distance > 0       # 0: identical pixels only, no hashes
    jobs = (([task.source for task in tasks[start:start + BATCH]], params.image_size, params.max_pixels, hashed)
            for start in range(0, len(tasks), BATCH))
    failed: set[Path] = set()
    catalogue, catalogued = Catalogue(params.near_duplicate_distance), []
    dropped = 0
    # Streams: imap hands out batches and yields results in order; memory does not grow with the data.
    with (multiprocessing.get_context("fork").Pool(workers) as pool, PreparedWriter(out_root, params.classes) as out,
          progress_bar(len(tasks), "prepare") as bar):
        results = (result for batch in pool.imap(convert_batch, jobs) for result in batch)
        for task, result in zip(tasks, results):
            bar.update()
            if result.reason is not None:
                failed.add(task.source)
                skipped.append(SkippedFile(split=task.split, file=str(task.source), reason=result.reason))
                continue
            match = catalogue.add(task.split, str(task.source), result.digest, result.hashes)
            catalogued.append(task)
            if match is not None and params.drop_duplicates:
                dropped += 1
                failed.add(task.source)
                held_out = catalogued[match.row]
                skipped.append(SkippedFile(split=task.split, file=str(task.source), reason=match.reason(
                    held_out.split, str(held_out.source), params.near_duplicate_distance)))
                continue
            out.add(task.split, task.label, task.name, result.png)
    duplicates = catalogue.tally()
    figure = examples_figure(duplicates, params.image_size, params.max_pixels)
    if figure is not None:
        figure.save(duplicates_figure(out_root), format="PNG", **PNG_SETTINGS)
    counts = count_images(tasks, failed, params.classes)
    write_groups(out_root, {task.file: task.group for task in tasks if task.group and task.source not in failed})
    empty = [f"{split}/{label}" for split in SPLITS for label in params.classes if counts[split][label] == 0]
    if empty:
        raise UserError(
            f"no readable images for {', '.join(empty)} under {raw_root}; check the downloaded data "
            f"and {'prepare.own' if own else 'prepare.splits'} in params.yaml"
        )
    skipped.sort(key=lambda item: (SPLITS.index(item.split) if item.split in SPLITS else -1, item.file))
    return PrepareSummary(image_size=params.image_size, counts=counts, skipped_count=len(skipped), skipped=skipped,
                          duplicates=duplicates, duplicates_dropped=dropped,
                          near_duplicate_distance=params.near_duplicate_distance)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    # The data and its metrics change together: the metrics file is opened first, so a read-only or
    # full metrics/ stops the stage before anything is replaced.
    with staged_dir(PREPARED_DIR) as staging, atomic_file(PrepareSummary.path, "w") as metrics_file:
        summary = prepare(RAW_DIR, staging, params.prepare, own=params.download.source == "own")
        metrics_file.write(summary.text())
    counts = summary.counts
    print(
        "prepared " + ", ".join(f"{split} {counts[split]['total']}" for split in SPLITS)
        + f" images; skipped {summary.skipped_count} (see {PrepareSummary.path})"
    )


if __name__ == "__main__":
    cli.run(main)
