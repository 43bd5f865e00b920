"""Plain helpers shared by the test modules: `from tests.helpers import hashes, png_bytes, run_cli`.

Fixtures live in tests/conftest.py; pytest finds those by itself and they are never imported.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
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


# --- the code each pipeline stage runs, from its imports ----------------------------------------------

# Argument parsing and error display: they cannot change an output, so no stage lists them.
PLUMBING = {"stages", "stages.cli", "stages.errors"}


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def module_file(name: str, root: Path = ROOT) -> Path:
    path = root / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_project_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every stages.* module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            # `from stages import report` imports the module stages.report
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_file(f"{node.module}.{alias.name}", root).is_file()}
    return found


def import_closure(modules: set[str], root: Path = ROOT) -> set[str]:
    """Every project module the given ones import, transitively (packages' __init__ included)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or not module_file(name, root).is_file():
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]   # importing a.b.c runs a and a.b
        todo += sorted(imported_project_modules(module_file(name, root), root))
    return seen


def pipeline_code(root: Path) -> dict[str, tuple[set[str], set[str]]]:
    """Per DVC stage of the project at root: (the modules its command runs, the modules dvc.yaml lists).

    A command `python -m stages.<module> [<model>]` runs its module and, for train@<model> and
    evaluate@<model>, the model's module, which stages.models imports by name.
    """
    from dvc.repo import Repo

    code = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            found = re.search(r"python -m (stages\.\w+)(?: (\w+))?", stage.cmd)
            modules = {found.group(1)} | ({f"stages.models.{found.group(2)}"} if found.group(2) else set())
            declared = {module_name(root / dep.def_path, root) for dep in stage.deps if dep.def_path.endswith(".py")}
            code[stage.name] = (import_closure(modules, root), declared)
    return code
