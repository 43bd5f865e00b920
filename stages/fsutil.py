"""Write-then-rename helpers: an interrupted stage never leaves half an output behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final` whole.

    On an exception the temporary folder is removed and `final` is left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    # mkdtemp makes the folder private (0700); an output folder gets the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, final)


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
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


def write_json_atomic(path: Path | str, obj: object) -> None:
    """Write pretty, key-sorted JSON atomically (stable bytes for DVC and git diffs)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
