"""DVC stage `download`: fill data/raw/<name>/ for each dataset in params.yaml download.datasets.

`download.source: kaggle` fetches each dataset with the official kaggle client; `sample` writes the
seeded offline stand-in (stages/images/offline_sample.py). Every dataset is written into a temporary folder beside
its final place and checked against prepare.splits; only when all of them are complete do they
replace data/raw/<name>/, so a failed or interrupted run leaves the previous data exactly as it was.

The kaggle client is used through stages/images/kaggle_client.py, kaggle_login.py (the login: a token, a
key, `kaggle auth login`, or anonymous for public datasets, from $KAGGLE_CONFIG_DIR when it is set) and
kaggle_datasets.py, which keep credentials out of every message and log. An interrupted download is resumed by the next run, a finished archive is kept so
that a rerun does not download it again (DOWNLOADS_DIR), and an archive is checked whole (every
member's CRC) before anything is unpacked.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

from stages.common import cli
from stages.common.atomic_files import staged_dir
from stages.common.config import PARAMS_FILE, RAW_DIR, DatasetSource, Params, PrepareParams, load_params
from stages.common.errors import UserError
from stages.contracts.provenance import DatasetProvenance, Provenance
from stages.images.kaggle_client import client_output
from stages.images.kaggle_login import ANONYMOUS, auth_of, kaggle_login, secrets_of
from stages.images.kaggle_datasets import dataset_info, describe, iso_utc, kaggle_errors, kaggle_ref
from stages.images.own_data import list_own_data
from stages.images.reading import find_class_folders, iter_image_files

# The archives the kaggle client downloads, one folder per dataset and version. An interrupted download
# stays here with the client's .kaggle-partial marker (the server's ETag and size), and the next run
# resumes it with a Range request; a finished one is checked and unpacked into the staging folder,
# and kept: a rerun (a code or params change upstream of download) finds it complete and unpacks it
# again instead of downloading gigabytes. A newer version's success removes the older archive.
# Not a DVC output (DVC tracks data/raw), and gitignored with the rest of data/; rm -rf frees it.
DOWNLOADS_DIR = Path("data/.downloads")

# ---------------------------------------------------------------------------------------------
# Layout check (pure: raises UserError, touches nothing)


def check_layout(name: str, root: Path, prepare: PrepareParams, slug: str | None = None) -> int:
    """Check that dataset `name`, unpacked at `root`, has what prepare.splits expects of it.

    For every split reading this dataset, its class folders must be found (inside the split's
    `folder`) and each must hold at least one image. Returns the number of image files under root.
    """
    label = f"dataset '{name}'" + (f" ({slug})" if slug else "")
    for split_name, split in prepare.splits.items():
        if split.dataset != name:
            continue
        where = f"prepare.splits.{split_name}"
        fix = f"check {where}.folder and {where}.classes in params.yaml"
        if slug:
            fix += f" (and download.datasets.{name}.slug)"
        try:
            folders = find_class_folders(root, list(split.classes), within=split.folder)
        except FileNotFoundError as error:
            detail = _relative_to(str(error), root)
            raise UserError(f"{label} lacks what split '{split_name}' needs: {detail}; {fix}") from None
        for class_name, folder in folders.items():
            if next(iter_image_files(folder), None) is None:
                shown = folder.relative_to(root).as_posix()
                raise UserError(
                    f"{label}: class folder '{shown}' of split '{split_name}' holds no images; {fix}"
                )
    return sum(1 for _ in iter_image_files(root))


def _relative_to(message: str, root: Path) -> str:
    """Show paths in `message` relative to the (temporary) dataset root."""
    message = message.replace(f" under {root}", "")
    return message.replace(f"{root}{os.sep}", "").replace(str(root), ".")


# ---------------------------------------------------------------------------------------------
# Download (the kaggle client: stages/images/kaggle_client.py, kaggle_datasets.py)


def download_kaggle(api, name: str, source: DatasetSource, root: Path, quiet: bool = False) -> DatasetProvenance:
    """Download dataset `name` with the kaggle client and unpack it into the empty folder `root`;
    returns what Kaggle said about it (dataset_info) and when it was downloaded."""
    info = dataset_info(api, name, source, metadata_optional=True)
    download_dir = archive_folder(name, info.version)
    # The pinned version, or the very version dataset_info saw as current (a version published in
    # between would otherwise arrive under the older number).
    ref = kaggle_ref(source.model_copy(update={"version": info.version}))
    archive = download_dir / f"{source.slug.split('/', 1)[1]}.zip"
    started = datetime.datetime.now(datetime.timezone.utc)
    kept = _file_signature(archive)
    for attempt in (1, 2):
        with kaggle_errors(name, source, "downloading", auth_of(api) == ANONYMOUS), client_output(secrets_of(api)):
            # force=False: the client resumes a partial archive it left here (its .kaggle-partial
            # marker proves the bytes belong to the same remote file) or keeps a finished one.
            # The second attempt starts over, after a finished archive failed its check.
            api.dataset_download_files(ref, path=str(download_dir), force=attempt == 2, quiet=quiet, unzip=False)
        problem = check_archive(archive)
        if problem is None:
            break
        archive.unlink()
        if attempt == 2:
            raise UserError(f"the download of dataset {describe(source)} is damaged ({problem}) twice in a row; "
                            "it was removed: run the stage again later")
    unpack(archive, root, f"dataset {describe(source)}")
    # When the archive was fetched: now, or, for a kept one the client did not fetch again, then.
    stamp = download_dir / "downloaded_at"
    if _file_signature(archive) != kept or not stamp.is_file():
        stamp.write_text(iso_utc(started) + "\n")
    for older in DOWNLOADS_DIR.glob(f"{name}-v*"):
        if older != download_dir:
            shutil.rmtree(older, ignore_errors=True)
    return info.model_copy(update={"downloaded_at": stamp.read_text().strip()})


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None if absent: a download replaces or extends the file."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def archive_folder(name: str, version: int | None) -> Path:
    """Where dataset `name`'s archive of `version` is downloaded (and resumed) before unpacking."""
    return DOWNLOADS_DIR / f"{name}-v{version if version is not None else 'latest'}"


def check_archive(archive: Path) -> str | None:
    """Why the downloaded archive cannot be used (missing, not a zip, a member failing its CRC), or
    None when every member reads back intact. The client has already checked its size."""
    if not archive.is_file():
        return "no archive arrived"
    try:
        with zipfile.ZipFile(archive) as handle:
            bad = handle.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as error:
        return f"not a valid zip archive: {type(error).__name__}"
    return None if bad is None else f"{bad} fails its CRC check"


def unpack(archive: Path, root: Path, what: str) -> None:
    """Extract a zip archive into root; a damaged archive is one UserError."""
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(root)  # drops absolute paths and '..' from member names
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):
        raise UserError(
            f"the download of {what} is not a valid zip archive (damaged or truncated); "
            "run the stage again"
        ) from None


# ---------------------------------------------------------------------------------------------
# Stage


# ---------------------------------------------------------------------------------------------
# Your own data (download.source: own; stages/images/own_data.py)

OWN_DATASET = "own"


def copy_own(params: Params, root: Path) -> DatasetProvenance:
    """Copy the folder download.own names into the empty folder `root` (links stay links: prepare never
    follows them) and check its layout and labels; a wrong one stops here, before data/raw changes."""
    folder = Path(params.download.own).expanduser()
    if not folder.is_dir():
        raise UserError(f"download.own: '{params.download.own}' is not a folder; set download.own in "
                        f"{params.source} to the folder of your labelled faces (docs/data.md#your-own-data)")
    if folder.resolve().is_relative_to(RAW_DIR.parent.resolve()):
        raise UserError(f"download.own: '{params.download.own}' is inside {RAW_DIR.parent}/, which the pipeline "
                        f"rewrites; keep your faces elsewhere (faces/, say) and set download.own in {params.source}")
    shutil.copytree(folder, root, symlinks=True, dirs_exist_ok=True)
    images, _ = list_own_data(root, params.prepare.own)
    return DatasetProvenance(slug=params.download.own, images=len(images))


def fill_dataset(params: Params, name: str, root: Path, api=None, quiet: bool = False) -> DatasetProvenance:
    """Write dataset `name` into the empty folder `root` and check it; returns where it came from."""
    source = params.download.datasets[name]
    if params.download.source == "sample":
        from stages.images import offline_sample

        offline_sample.generate(name, root, params.download.sample)
        return DatasetProvenance(slug=source.slug, images=check_layout(name, root, params.prepare))
    info = download_kaggle(api, name, source, root, quiet=quiet)
    return info.model_copy(update={"images": check_layout(name, root, params.prepare, slug=source.slug)})


def download_all(params: Params, quiet: bool = False) -> Provenance:
    """Fill every data/raw/<name>/ and write metrics/download.json; all are replaced together, and
    only when all succeeded."""
    api = kaggle_login() if params.download.source == "kaggle" else None
    datasets = {}
    with contextlib.ExitStack() as stack:
        if params.download.source == "own":
            datasets[OWN_DATASET] = copy_own(params, stack.enter_context(staged_dir(RAW_DIR / OWN_DATASET)))
        for name in params.download.datasets if params.download.source != "own" else ():
            root = stack.enter_context(staged_dir(RAW_DIR / name))
            datasets[name] = fill_dataset(params, name, root, api=api, quiet=quiet)
        sample_settings = params.download.sample.model_dump() if api is None else None
        provenance = Provenance(source=params.download.source, datasets=datasets, sample=sample_settings,
                                auth=auth_of(api) if api is not None else None)
        # Last inside the stack: the record is written just before the data it describes is renamed in.
        provenance.write(Provenance.path)
    # data/raw holds the current source's data alone: what another source left there is not an input.
    for left in RAW_DIR.iterdir():
        if left.is_dir() and not left.name.startswith(".") and left.name not in datasets:
            shutil.rmtree(left)
    for name, found in datasets.items():
        print(f"{name}: {found.images} image files from {_origin(provenance, name)} -> {(RAW_DIR / name).as_posix()}")
    return provenance


def _origin(provenance: Provenance, name: str) -> str:
    if provenance.source == "sample":
        return "offline sample"
    if provenance.source == "own":
        return f"your folder '{provenance.datasets[name].slug}'"
    return f"kaggle '{provenance.datasets[name].slug}' ({provenance.describe(name)})"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Fill data/raw/<name>/ for each dataset in params.yaml download.datasets, from Kaggle "
            "(download.source: kaggle; with a Kaggle login, or anonymously where Kaggle allows it) or the "
            "offline sample (download.source: sample)."
        ),
    )
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    download_all(load_params(args.params), quiet=args.quiet)


if __name__ == "__main__":
    cli.run(main)
