"""What prepare hands over: data/prepared/<split>.zip (the images) and metrics/prepare.json (counts, skipped files)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from stages.common.atomic_files import zip_entry
from stages.common.config import METRICS_DIR, SPLITS
from stages.common.errors import UserError
from stages.contracts.jsonfile import JsonFile, missing

# data/prepared holds one uncompressed zip per split, its members <Class>/<name>.png: three files for
# DVC to hash and cache instead of one per image (benchmarks/history.md), and still a folder of PNGs to
# anyone who opens it (any zip viewer, `unzip`, Python's zipfile). An image's `file`, as later stages
# record it, is <split>/<Class>/<name>.png.

def prepared_archive(root: Path | str, split: str) -> Path:
    return Path(root) / f"{split}.zip"


class PreparedWriter:
    """Writes data/prepared's archives into `root` as images arrive: member order is arrival order, every
    entry dated 1980 (atomic_files.zip_entry), so the same images in the same order give the same bytes."""

    def __init__(self, root: Path | str, classes: list[str]):
        self.archives = {}
        for split in SPLITS:
            archive = zipfile.ZipFile(prepared_archive(root, split), "w", zipfile.ZIP_STORED)
            for label in classes:
                archive.writestr(zip_entry(f"{label}/"), b"")     # the class folders, even when empty
            self.archives[split] = archive

    def add(self, split: str, label: str, name: str, png: bytes) -> None:
        self.archives[split].writestr(zip_entry(f"{label}/{name}"), png)

    def close(self) -> None:
        for archive in self.archives.values():
            archive.close()

    def __enter__(self) -> "PreparedWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PreparedSplit:
    """One split of data/prepared, open for reading: its image files and their PNG bytes."""

    def __init__(self, root: Path | str, split: str):
        self.split, self.path = split, prepared_archive(root, split)
        if not self.path.is_file():
            raise missing(self.path, PrepareSummary.written_by)
        try:
            self.archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise UserError(f"{self.path}: not a zip archive (damaged); rerun the prepare stage "
                            "(dvc repro -f prepare)") from None

    def files(self, label: str | None = None) -> list[str]:
        """The split's image files (<split>/<Class>/<name>.png), sorted; only class `label`'s if given."""
        prefix = "" if label is None else f"{label}/"
        return [f"{self.split}/{name}" for name in sorted(self.archive.namelist())
                if not name.endswith("/") and name.startswith(prefix)]

    def read(self, file: str) -> bytes:
        return self.archive.read(file.split("/", 1)[1])

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> "PreparedSplit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_prepared(root: Path | str, file: str) -> bytes:
    """One prepared image's PNG bytes, by its `file` (<split>/<Class>/<name>.png)."""
    with PreparedSplit(root, file.split("/", 1)[0]) as split:
        return split.read(file)


class SkippedFile(BaseModel):
    split: str
    file: str
    reason: str


def duplicate_keys() -> list[str]:
    """metrics/prepare.json's duplicates keys: every pair of splits, a split with itself for the pairs
    within it ("train-train", "train-val", ..., "test-test")."""
    return [f"{first}-{second}" for index, first in enumerate(SPLITS) for second in SPLITS[index:]]


def duplicate_title(key: str) -> str:
    """A duplicates key in words: "train-val" -> "train and val", "train-train" -> "within train"."""
    first, second = key.split("-")
    return f"within {first}" if first == second else f"{first} and {second}"


class DuplicatePair(BaseModel):
    """Two source files that are the same picture; `first` from the split named first in its key."""

    first: str
    second: str
    distance: int         # bits apart, their perceptual hashes (0 for identical pixels)
    mirrored: bool        # one is the other's mirror image


class Duplicates(BaseModel):
    """Pairs of the same picture between two splits (or within one), by kind, with a few examples."""

    exact: int            # identical pixels after prepare
    near: int             # within prepare.near_duplicate_distance, pixels not identical (resized, re-encoded, mirrored)
    examples: list[DuplicatePair]   # the pairs farthest apart that still count (near before exact), a few


class PrepareSummary(JsonFile):
    """metrics/prepare.json: images per split and class (with a "total"), every skipped file and why."""

    written_by: ClassVar[str] = "prepare"
    path: ClassVar[Path] = METRICS_DIR / "prepare.json"

    image_size: int
    counts: dict[str, dict[str, int]]
    skipped_count: int
    skipped: list[SkippedFile]
    # Pairs of images that are the same picture, for every pair of splits and within each split
    # (duplicate_keys()), and how many training copies of a val or test image were dropped for it
    # (prepare.drop_duplicates).
    duplicates: dict[str, Duplicates]
    duplicates_dropped: int
    near_duplicate_distance: int       # prepare.near_duplicate_distance: 0, identical pixels only


# data/prepared/duplicates.png: the example pairs of metrics/prepare.json's duplicates side by side, one
# row per pair of splits; only when there is one. The report shows it.
DUPLICATES_FIGURE = "duplicates.png"


def duplicates_figure(root: Path | str) -> Path:
    return Path(root) / DUPLICATES_FIGURE


# data/prepared/groups.csv: the group each prepared image belongs to, where its source says (a CSV's
# `group` column, or the offline sample's synthetic skin tone): columns file (<split>/<Class>/<name>.png)
# and group. Header only when no image has a group; evaluate then reports no per-group results.
GROUPS_FILE = "groups.csv"


def write_groups(root: Path | str, groups: dict[str, str]) -> None:
    """data/prepared/groups.csv from {file: group}, sorted by file (the same groups give the same bytes)."""
    with (Path(root) / GROUPS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "group"])
        writer.writerows(sorted(groups.items()))


def read_groups(root: Path | str) -> dict[str, str]:
    """{file: group} from data/prepared/groups.csv; empty when the file is absent or lists no image."""
    path = Path(root) / GROUPS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["file"]: row["group"] for row in csv.DictReader(handle)}
