"""Write-then-rename helpers: an interrupted stage never leaves half an output behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; on success it replaces `final` whole.

    On an exception the temporary folder is removed and `final` is left exactly as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
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


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write a file through a temporary sibling and one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write a text file atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, obj: object) -> None:
    """Write pretty, key-sorted JSON atomically (stable bytes for DVC and git diffs)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
