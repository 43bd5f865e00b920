"""Your own labelled faces (download.source: own): which layout a folder has, and every file in it with its
label, split and group, or why it is left out.

Three layouts, found in this order:
- a labels.csv at the top: columns path (relative to the folder), label, and optionally split, group;
- train/, val/ (or validation/) and test/ folders, each holding a folder per label;
- a folder per label.
Labels map to prepare.classes through prepare.own.classes, matched case-insensitively; an unknown label stops
the download stage in one line (a third class cannot be trained on). Images whose split the data do not give
are drawn per class by a hash of the seed and their path (assign_splits), so adding an image moves no other.
Any folder layout, the offline sample's included, may carry a groups.csv at its top (path, group).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from stages.common.config import SPLITS, OwnDataParams, OwnSplitParams
from stages.common.errors import UserError
from stages.images.reading import is_image_file

LABELS_FILE = "labels.csv"
GROUPS_FILE = "groups.csv"
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
LABELS_COLUMNS = ("path", "label", "split", "group")
CLASSES_KEY = "prepare.own.classes"


@dataclass(frozen=True)
class OwnImage:
    """One file of your data: where it is, under the folder and on disk, and what it is labelled."""

    relative: str           # its path under the folder, with /
    label: str              # one of prepare.classes
    split: str | None       # train, val or test; None: drawn by assign_splits
    group: str | None
    inside_label: str       # its path under its label's folder (the prepared PNG's name comes from it)


@dataclass(frozen=True)
class LeftOut:
    """A file under the folder that is not one of the images, and why."""

    relative: str
    split: str | None
    reason: str


def _visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """The folder's sub-folders and files, hidden ones (.git, .DS_Store) left out, sorted."""
    children = sorted(child for child in folder.iterdir() if not child.name.startswith("."))
    return ([child for child in children if child.is_dir() and not child.is_symlink()],
            [child for child in children if not (child.is_dir() and not child.is_symlink())])


def _walk(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file and link under `folder`, never following a link: (path, None) to consider, or (path,
    why it is left out); hidden files and folders are left out silently, as the Kaggle layout's are."""
    folders, files = _visible_children(folder)
    for path in files:
        if path.is_symlink():
            yield path, "a symbolic link (never followed)"
        elif not path.is_file():
            yield path, "not a regular file"
        else:
            yield path, None
    for sub in folders:
        yield from _walk(sub)


def _label_of(name: str, classes: dict[str, str], where: str) -> str:
    """The class a label (folder name or CSV value) maps to, or a one-line refusal naming `where`."""
    found = {key.lower(): value for key, value in classes.items()}.get(name.strip().lower())
    if found is None:
        raise UserError(f"{where}: label '{name}' is not in {CLASSES_KEY} ({', '.join(classes)}); "
                        f"map it there (e.g. {name.strip().lower()}: {next(iter(classes.values()))}) "
                        "or move its images out")
    return found


def layout_of(root: Path, classes: dict[str, str]) -> str:
    """'csv', 'splits' or 'classes': how the folder is laid out, or one line naming what was found and
    what is expected."""
    if (root / LABELS_FILE).is_file():
        return "csv"
    folders, _ = _visible_children(root)
    names = [folder.name for folder in folders]
    splits = [name for name in names if name.lower() in SPLIT_FOLDERS]
    if names and len(splits) == len(names):
        return "splits"
    if splits:
        raise UserError(f"{root}: found split folders ({', '.join(splits)}) beside other folders "
                        f"({', '.join(name for name in names if name not in splits)}); expected either train/val/test "
                        "folders, each holding a folder per label, or a folder per label, not both")
    known = {key.lower() for key in classes}
    if names and any(name.lower() in known for name in names):
        for name in names:
            _label_of(name, classes, f"{root}/{name}")
        return "classes"
    found = f"folders {', '.join(names)}" if names else "no folders"
    raise UserError(f"{root}: found {found} and no {LABELS_FILE}; expected a folder per label "
                    f"({', '.join(classes)}: {CLASSES_KEY}), train/val/test folders holding them, "
                    f"or a {LABELS_FILE} (columns path, label, and optionally split, group)")


def read_groups_file(root: Path) -> dict[str, str]:
    """{path under root: group} from the optional groups.csv at the top of a folder layout."""
    path = root / GROUPS_FILE
    if not path.is_file():
        return {}
    rows = _read_csv(path, required=("path", "group"))
    return {row["path"].strip().lstrip("./"): row["group"].strip() for _, row in rows if row["group"].strip()}


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV with lower-cased column names, each with its line number; a missing column is
    one line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip().lower() for name in reader.fieldnames or []]
            missing = [name for name in required if name not in columns]
            if missing:
                raise UserError(f"{path}: no column {', '.join(missing)} (found: {', '.join(columns) or 'none'}); "
                                f"expected columns {', '.join(LABELS_COLUMNS)} (split and group optional)")
            return [(reader.line_num, {key.strip().lower(): (value or "") for key, value in row.items() if key})
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a readable UTF-8 CSV ({error}); save it as CSV, UTF-8") from None


def _folder_images(root: Path, classes: dict[str, str], split: str | None,
                   groups: dict[str, str]) -> Iterator[OwnImage | LeftOut]:
    """The images of a folder per label (`root`), in `split` if known."""
    folders, files = _visible_children(root)
    for path in files:
        yield LeftOut(path.name if split is None else f"{path.parent.name}/{path.name}", split,
                      "not inside a label folder")
    for folder in folders:
        label = _label_of(folder.name, classes, str(folder))
        for path, reason in _walk(folder):
            relative = path.relative_to(root.parent if split else root).as_posix()
            if reason is None and not is_image_file(path):
                reason = "not an image file (name or extension)"
            if reason is not None:
                yield LeftOut(relative, split, reason)
            else:
                yield OwnImage(relative, label, split, groups.get(relative), path.relative_to(folder).as_posix())


def _csv_images(root: Path, classes: dict[str, str]) -> Iterator[OwnImage | LeftOut]:
    """The images labels.csv lists, then every other file under root as not listed."""
    labels = root / LABELS_FILE
    listed: dict[str, int] = {}
    for line, row in _read_csv(labels, required=("path", "label")):
        where = f"{labels} line {line}"
        relative = row["path"].strip().replace("\\", "/")
        while relative.startswith("./"):
            relative = relative[2:]
        if not relative or relative.startswith("/") or ".." in relative.split("/"):
            raise UserError(f"{where}: path '{row['path']}' must be relative and inside {root}; "
                            "give it relative to the CSV's folder")
        if relative in listed:
            raise UserError(f"{where}: '{relative}' is listed already on line {listed[relative]}; "
                            "list each image once")
        listed[relative] = line
        label = _label_of(row["label"], classes, where)
        split = row.get("split", "").strip().lower() or None
        if split is not None and split not in SPLIT_FOLDERS:
            raise UserError(f"{where}: split '{row['split']}' is not train, val or test; "
                            "correct it or leave it empty to have it drawn")
        path = root / relative
        if path.is_symlink():
            yield LeftOut(relative, split and SPLIT_FOLDERS[split], "a symbolic link (never followed)")
        elif not path.is_file():
            yield LeftOut(relative, split and SPLIT_FOLDERS[split], f"listed in {LABELS_FILE} but not found")
        elif not is_image_file(path):
            yield LeftOut(relative, split and SPLIT_FOLDERS[split], "not an image file (name or extension)")
        else:
            yield OwnImage(relative, label, split and SPLIT_FOLDERS[split], row.get("group", "").strip() or None,
                           relative)
    for path, reason in _walk(root):
        relative = path.relative_to(root).as_posix()
        if relative not in listed and relative not in (LABELS_FILE, GROUPS_FILE):
            yield LeftOut(relative, None, reason or f"not listed in {LABELS_FILE}")


def list_own_data(root: Path, own: OwnDataParams) -> tuple[list[OwnImage], list[LeftOut]]:
    """Every image of your folder with its label, split (None where it is to be drawn) and group, and
    every other file with why it is left out; a wrong layout or an unknown label is one UserError."""
    layout = layout_of(root, own.classes)
    groups = read_groups_file(root)
    if layout == "csv":
        found: Iterable[OwnImage | LeftOut] = _csv_images(root, own.classes)
    elif layout == "classes":
        found = _folder_images(root, own.classes, None, groups)
    else:
        found = (item for folder in _visible_children(root)[0]
                 for item in _folder_images(folder, own.classes, SPLIT_FOLDERS[folder.name.lower()], groups))
    items = list(found)
    images = [item for item in items if isinstance(item, OwnImage)]
    if not images:
        raise UserError(f"{root}: no image files found ({layout} layout); put your labelled images there "
                        "(docs/data.md#your-own-data)")
    return images, [item for item in items if isinstance(item, LeftOut)]


def _rank(seed: int, image: OwnImage) -> str:
    return hashlib.sha1(f"{seed}:{image.relative}".encode("utf-8")).hexdigest()


def _draw(images: list[OwnImage], shares: dict[str, float], seed: int, rest: str) -> list[OwnImage]:
    """Per class, in the order of a hash of seed and path: round(share x count) to each split of
    `shares`, in order, and the rest to `rest`."""
    drawn = []
    for label in sorted({image.label for image in images}):
        ranked = sorted((image for image in images if image.label == label), key=lambda image: _rank(seed, image))
        start = 0
        for split, share in shares.items():
            count = round(share * len(ranked))
            drawn += [replace(image, split=split) for image in ranked[start:start + count]]
            start += count
        drawn += [replace(image, split=rest) for image in ranked[start:]]
    return drawn


def assign_splits(images: list[OwnImage], shares: OwnSplitParams) -> list[OwnImage]:
    """Every image with a split: those without one drawn per class (shares.val to val, shares.test to
    test, the rest to train); then a split the data name no image of (val or test) is drawn from train."""
    given = [image for image in images if image.split is not None]
    result = given + _draw([image for image in images if image.split is None],
                           {"val": shares.val, "test": shares.test}, shares.seed, "train")
    for split in ("val", "test"):
        if not any(image.split == split for image in result):
            train = [image for image in result if image.split == "train"]
            kept = [image for image in result if image.split != "train"]
            result = kept + _draw(train, {split: getattr(shares, split)}, shares.seed, "train")
    return sorted(result, key=lambda image: (SPLITS.index(image.split), image.relative))
