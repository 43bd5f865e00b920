"""Write-then-rename helpers: an interrupted stage never leaves half an output behind.

The zip writer is also deterministic: the same contents give the same bytes, whenever and
wherever they are written, so DVC sees no change where nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping


@contextlib.contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final` whole.

    On an exception the temporary folder is removed and `final` is left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(final)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(final), dir=final.parent))
    # mkdtemp makes the folder private (0700); an output folder gets the usual umask permissions.
    with_umask(staging, 0o777)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, final)


def staging_prefix(final: Path) -> str:
    """The name start of a temporary sibling of `final`: .<name>.tmp-<pid>-, so that a later run can
    tell one whose writer has died (sweep_stale)."""
    return f".{final.name}.tmp-{os.getpid()}-"


def with_umask(path: Path | str, mode: int) -> None:
    """Give a file or folder made private by mkstemp/mkdtemp the permissions any new one gets (the umask's)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


STAGING_NAME = re.compile(r"^\..+\.tmp-(\d+)-")


def sweep_stale(roots: Iterable[Path | str], depth: int = 2) -> list[Path]:
    """Remove the temporary files and folders (.<name>.tmp-<pid>-...) that a killed run left in
    `roots` or their sub-folders down to `depth`, when their writing process is gone. A stage that
    DVC restores from its run-cache never runs, so every stage sweeps for all of them."""
    removed = []
    folders = [Path(root) for root in roots if Path(root).is_dir()]
    for _ in range(depth + 1):
        deeper = []
        for folder in folders:
            for entry in os.scandir(folder):
                match = STAGING_NAME.match(entry.name)
                if match and not process_alive(int(match.group(1))):
                    path = Path(entry.path)
                    shutil.rmtree(path, ignore_errors=True) if entry.is_dir(follow_symlinks=False) else path.unlink()
                    removed.append(path)
                elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    deeper.append(Path(entry.path))
        folders = deeper
    return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # another user's
    return True


def recover_interrupted(final: Path) -> None:
    """Clean up after a run killed mid-write: drop its staging folders, restore a swapped-out `final`.

    Left alone, a stale staging folder inside a DVC output (data/raw/.trainval.tmp-x) would be
    tracked as part of it.
    """
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    for old in final.parent.glob(f".{final.name}.old-*"):
        if not (final.exists() or final.is_symlink()):
            os.replace(old, final)  # killed between the two renames: the old copy is the good one
        elif old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def replace_dir(new: Path, final: Path) -> None:
    """Move folder `new` to `final`, swapping out any previous `final` with two renames."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing (streaming is fine); rename it over `path`
    only when the block succeeds, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=staging_prefix(path), dir=path.parent)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
        with_umask(tmp, 0o666)   # mkstemp's files are private (0600); an output gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write a file through a temporary sibling and one rename."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a text file atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj: object) -> str:
    """Pretty, key-sorted JSON: stable bytes for DVC and git diffs. NaN and infinity raise ValueError:
    JSON has neither, and json.dumps would write a bare NaN that strict readers refuse."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json_atomic(path: Path | str, obj: object) -> None:
    """Write pretty, key-sorted JSON atomically."""
    write_text_atomic(path, json_text(obj))


# --- deterministic zip ---------------------------------------------------------------------------

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
ZIP_FILE_MODE = 0o644
ZIP_DIR_MODE = 0o755
ZIP_DEFLATE_LEVEL = 6                  # zlib's default, named so it cannot drift with Python's default


def zip_entry(name: str, compression: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    """A zip entry header that depends only on `name` and `compression`: fixed time, Unix permissions
    0644 (0755 for a folder entry, a name ending in "/"), made on "Unix" whatever the platform."""
    if not name or name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise ValueError(f"zip member name {name!r}: give a relative posix path")
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.create_system = 3  # Unix, so external_attr holds the mode below
    if info.is_dir():
        info.external_attr = ((stat.S_IFDIR | ZIP_DIR_MODE) << 16) | 0x10  # 0x10: the MS-DOS folder flag
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (stat.S_IFREG | ZIP_FILE_MODE) << 16
        info.compress_type = compression
    return info


def write_zip(path: Path | str, members: Mapping[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    """Write a zip archive of `members` (member name -> contents) atomically, its bytes a function of
    `members` and `compression` alone: entries sorted by name, each dated 1980-01-01 00:00:00 with
    mode 0644, no archive comment.

    compression: zipfile.ZIP_STORED (the default: no dependence on the zlib version) or
    zipfile.ZIP_DEFLATED (level 6). A name ending in "/" is a folder entry and must have empty contents.
    """
    if compression not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"compression {compression!r}: use zipfile.ZIP_STORED or zipfile.ZIP_DEFLATED")
    entries = [(zip_entry(name, compression), members[name]) for name in sorted(members)]
    for info, data in entries:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"zip member {info.filename!r}: contents must be bytes, not {type(data).__name__}")
        if info.is_dir() and data:
            raise ValueError(f"zip member {info.filename!r} is a folder entry (it ends in /) but has contents")
    with atomic_file(path, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
        for info, data in entries:
            level = ZIP_DEFLATE_LEVEL if info.compress_type == zipfile.ZIP_DEFLATED else None
            archive.writestr(info, bytes(data), compresslevel=level)
