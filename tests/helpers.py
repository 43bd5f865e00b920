"""Plain helpers shared by the test modules: `from tests.helpers import hashes, png_bytes, run_cli`.

Fixtures live in tests/conftest.py; pytest finds those by itself and they are never imported.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import cli

ROOT = Path(__file__).resolve().parents[1]  # the repository: params.yaml, dvc.yaml, stages/


def raw_repo_params() -> dict:
    """The repository's params.yaml as a plain dict, a fresh copy each call (safe to edit)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (recursively), keyed by its path relative to root in posix form.

    Folders are not listed (a flat folder gives {file name: digest}). Compare two trees with ==.
    """
    root = Path(root)
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def png_bytes(image: Image.Image, **options) -> bytes:
    """The image encoded as PNG (lossless), as it would be stored in a file.

    options go to PIL's Image.save, e.g. transparency=1 for a palette image.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] = ()) -> int:
    """A stage's command line in this process, as `python -m stages.<stage>` runs it; the exit code.

    Goes through stages.cli.run, so a UserError becomes "error: ..." on stderr and exit code 1,
    as for a user; read the output with capsys.
    """
    try:
        cli.run(main, list(argv))
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1  # sys.exit("message") exits with 1
    return 0


# --- a tiny prepared tree and its TFRecords, as the tfrecords stage reads and writes them --------------

SIZE = 100
CLASSES = ["Female", "Male"]
RECORD_COUNTS = {"train": {"Female": 7, "Male": 6}, "val": {"Female": 3, "Male": 2}, "test": {"Female": 2, "Male": 4}}
SHARD_SIZE = 4
RECORD_SEED = 2021


def face_png(split: str, label: int, index: int) -> bytes:
    """A PNG whose pixels say where it came from: R = 200*label + index, G = split, B a gradient."""
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[..., 0] = 200 * label + index
    pixels[..., 1] = {"train": 10, "val": 20, "test": 30}[split]
    pixels[..., 2] = np.arange(SIZE, dtype=np.uint8)[None, :] * 2
    return png_bytes(Image.fromarray(pixels))


def make_prepared(root: Path) -> None:
    """data/prepared/<split>/<Class>/imgNNN.png with RECORD_COUNTS images."""
    for split, per_class in RECORD_COUNTS.items():
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class[name]):
                (folder / f"img{index:03d}.png").write_bytes(face_png(split, label, index))


def make_tfrecords_project(folder: Path, shard_size: int = SHARD_SIZE) -> Path:
    """A working directory with params.yaml (small shards) and data/prepared, as the tfrecords stage expects."""
    raw = raw_repo_params()
    raw["tfrecords"]["shard_size"] = shard_size
    raw["tfrecords"]["seed"] = RECORD_SEED
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    make_prepared(folder / "data" / "prepared")
    return folder


def run_tfrecords(folder: Path) -> Path:
    """The tfrecords stage in `folder`; its output folder."""
    from stages import tfrecords

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        tfrecords.main([])
    return folder / "data" / "tfrecords"
