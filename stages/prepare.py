"""prepare: raw datasets -> data/prepared/{train,val,test}/{Female,Male}/*.png, RGB, image_size².

train <- the first dataset's Train, val <- its Test (its Validation has no labels), test <- the
second dataset with its class folders renamed by params (man -> Male, woman -> Female).
Unreadable files are skipped and listed with their reason in metrics/prepare.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image
from tqdm import tqdm

from stages import cli
from stages.config import PREPARED_DIR, RAW_DIR, SPLITS, PrepareParams, load_params
from stages.contracts import PrepareSummary, SkippedFile, prepared_image
from stages.errors import UserError
from stages.fsutil import atomic_file, staged_dir
from stages.images import DEFAULT_MAX_PIXELS, UnreadableImage, find_class_folders, is_image_file, load_rgb


@dataclass(frozen=True)
class Task:
    """One source file and where its prepared copy goes (relative to the output root)."""

    split: str
    label: str
    source: Path
    target: Path


def target_names(relative_paths: Sequence[Path]) -> list[str]:
    """Flat, collision-free PNG names for files found under one class folder (sub/a.jpg -> sub__a.png).

    Names that would clash (a.jpg beside a.png, or on a case-insensitive disk) get __2, __3, ...
    in the order given, which is sorted, so reruns name every file the same.
    """
    used: set[str] = set()
    names = []
    for path in relative_paths:
        stem = "__".join(path.with_suffix("").parts)
        candidate, number = stem, 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{stem}__{number}"
        used.add(candidate.lower())
        names.append(f"{candidate}.png")
    return names


def plan(raw_root: Path, params: PrepareParams) -> tuple[list[Task], list[SkippedFile]]:
    """List every file to convert, and every file skipped before decoding (with why)."""
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
            class_folders = find_class_folders(dataset_root, list(source.classes), within=source.folder)
        except FileNotFoundError as error:
            raise UserError(
                f"{error}; set prepare.splits.{split}.folder / .classes in params.yaml to match"
            ) from None
        for source_class, folder in class_folders.items():
            label = source.classes[source_class]
            # Hidden folders (.ipynb_checkpoints, __MACOSX's dot-files) are not data: ignore them.
            files = sorted(
                path for path in folder.rglob("*")
                if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parent.parts)
            )
            images = [path for path in files if is_image_file(path)]
            image_set = set(images)
            for path in files:
                if path not in image_set:
                    skipped.append(SkippedFile(split=split, file=str(path), reason="not an image file (name or extension)"))
            names = target_names([path.relative_to(folder) for path in images])
            tasks.extend(Task(split, label, path, prepared_image(split, label, name)) for path, name in zip(images, names))
    return tasks, skipped


def convert(task: Task, out_root: Path, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Write one image as RGB PNG of image_size²; return None, or the reason it was skipped."""
    try:
        pixels = load_rgb(task.source, image_size, max_pixels)
    except UnreadableImage as error:
        return str(error)
    # PNG: lossless and byte-identical on every rerun (no timestamps, fixed settings).
    Image.fromarray(pixels).save(out_root / task.target, format="PNG", compress_level=6)
    return None


def _convert_star(args: tuple[Task, Path, int, int]) -> str | None:
    return convert(*args)


def count_images(tasks: Iterable[Task], failed: set[Path], classes: list[str]) -> dict:
    """Images written per split and class, with totals."""
    counts = {split: {label: 0 for label in classes} for split in SPLITS}
    for task in tasks:
        if task.source not in failed:
            counts[task.split][task.label] += 1
    for split in SPLITS:
        counts[split]["total"] = sum(counts[split][label] for label in classes)
    return counts


def prepare(raw_root: Path, out_root: Path, params: PrepareParams, workers: int | None = None) -> PrepareSummary:
    """Convert both datasets into out_root (which must exist); return the prepare summary."""
    tasks, skipped = plan(raw_root, params)
    for split in SPLITS:
        for label in params.classes:
            (out_root / split / label).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    jobs = ((task, out_root, params.image_size, params.max_pixels) for task in tasks)
    failed: set[Path] = set()
    # Streams: imap hands out chunks and yields short results; memory does not grow with the data.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.imap(_convert_star, jobs, chunksize=16)
        for task, reason in tqdm(zip(tasks, results), total=len(tasks), desc="prepare", unit="img"):
            if reason is not None:
                failed.add(task.source)
                skipped.append(SkippedFile(split=task.split, file=str(task.source), reason=reason))
    counts = count_images(tasks, failed, params.classes)
    empty = [f"{split}/{label}" for split in SPLITS for label in params.classes if counts[split][label] == 0]
    if empty:
        raise UserError(
            f"no readable images for {', '.join(empty)} under {raw_root}; check the downloaded data "
            "and prepare.splits in params.yaml"
        )
    skipped.sort(key=lambda item: (SPLITS.index(item.split), item.file))
    return PrepareSummary(image_size=params.image_size, counts=counts, skipped_count=len(skipped), skipped=skipped)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    # The data and its metrics change together: the metrics file is opened first, so a read-only or
    # full metrics/ stops the stage before anything is replaced.
    with staged_dir(PREPARED_DIR) as staging, atomic_file(PrepareSummary.path, "w") as metrics_file:
        summary = prepare(RAW_DIR, staging, params.prepare)
        metrics_file.write(summary.text())
    counts = summary.counts
    print(
        "prepared " + ", ".join(f"{split} {counts[split]['total']}" for split in SPLITS)
        + f" images; skipped {summary.skipped_count} (see {PrepareSummary.path})"
    )


if __name__ == "__main__":
    cli.run(main)
