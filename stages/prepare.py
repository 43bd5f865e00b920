"""prepare: raw datasets -> data/prepared/{train,val,test}/{Female,Male}/*.png, RGB, image_size².

train <- the first dataset's Train, val <- its Test (its Validation has no labels), test <- the
second dataset with its class folders renamed by params (man -> Male, woman -> Female).
Unreadable files are skipped and listed with their reason in metrics/prepare.json.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from stages import cli
from stages.config import PREPARED_DIR, RAW_DIR, SPLITS, PrepareParams, load_params
from stages.contracts import PrepareSummary, SkippedFile, prepared_image
from stages.errors import UserError
from stages.fsutil import atomic_file, staged_dir
from stages.images import DEFAULT_MAX_PIXELS, UnreadableImage, find_split_folder, is_image_file, load_rgb


@dataclass(frozen=True)
class Task:
    """One source file and where its prepared copy goes (relative to the output root)."""

    split: str
    label: str
    source: Path
    target: Path


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


def plan(raw_root: Path, params: PrepareParams) -> tuple[list[Task], list[SkippedFile]]:
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
            tasks.extend(Task(split, label, path, prepared_image(split, label, name))
                         for (path, _), name in zip(images, names))
    return tasks, skipped


def convert(task: Task, out_root: Path, image_size: int,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str | None, str | None]:
    """Write one image as RGB PNG of image_size²; return (None, a digest of its pixels), or (the reason
    it was skipped, None)."""
    try:
        pixels = load_rgb(task.source, image_size, max_pixels)
    except UnreadableImage as error:
        return str(error), None
    # PNG: lossless and byte-identical on every rerun (no timestamps, fixed settings).
    Image.fromarray(pixels).save(out_root / task.target, format="PNG", compress_level=6)
    return None, hashlib.sha1(pixels.tobytes()).hexdigest()


def _convert_star(args: tuple[Task, Path, int, int]) -> tuple[str | None, str | None]:
    return convert(*args)


def cross_split_duplicates(tasks_by_digest: dict[str, list[Task]]) -> tuple[dict[str, int], list[tuple[Task, Task]]]:
    """Pictures found in two splits: counts per split pair, and (training copy, held-out copy) pairs."""
    pairs: dict[str, int] = {}
    leaked: list[tuple[Task, Task]] = []
    for tasks in tasks_by_digest.values():
        splits = sorted({task.split for task in tasks}, key=SPLITS.index)
        for i, first in enumerate(splits):
            for second in splits[i + 1:]:
                pairs[f"{first}-{second}"] = pairs.get(f"{first}-{second}", 0) + 1
        held_out = [task for task in tasks if task.split != "train"]
        if held_out:
            leaked += [(task, held_out[0]) for task in tasks if task.split == "train"]
    return pairs, leaked


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
    tasks_by_digest: dict[str, list[Task]] = {}
    # Streams: imap hands out chunks and yields short results; memory does not grow with the data.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.imap(_convert_star, jobs, chunksize=16)
        for task, (reason, digest) in tqdm(zip(tasks, results), total=len(tasks), desc="prepare", unit="img"):
            if reason is not None:
                failed.add(task.source)
                skipped.append(SkippedFile(split=task.split, file=str(task.source), reason=reason))
            else:
                tasks_by_digest.setdefault(digest, []).append(task)
    duplicates, leaked = cross_split_duplicates(tasks_by_digest)
    if params.drop_duplicates:
        for copy, kept in leaked:
            (out_root / copy.target).unlink()
            failed.add(copy.source)
            skipped.append(SkippedFile(split=copy.split, file=str(copy.source),
                                       reason=f"same pixels as {kept.split} image {kept.source} (prepare.drop_duplicates)"))
    counts = count_images(tasks, failed, params.classes)
    empty = [f"{split}/{label}" for split in SPLITS for label in params.classes if counts[split][label] == 0]
    if empty:
        raise UserError(
            f"no readable images for {', '.join(empty)} under {raw_root}; check the downloaded data "
            "and prepare.splits in params.yaml"
        )
    skipped.sort(key=lambda item: (SPLITS.index(item.split), item.file))
    return PrepareSummary(image_size=params.image_size, counts=counts, skipped_count=len(skipped), skipped=skipped,
                          duplicates=duplicates, duplicates_dropped=len(leaked) if params.drop_duplicates else 0)


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
