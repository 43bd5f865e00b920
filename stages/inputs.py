"""inputs: what one model learns from, as one small file its training runs depend on.

`python -m stages.inputs <model> <folder>` writes data/inputs/<model>.json: the folder (dvc.yaml's
models table: data/tfrecords, or data/features for a model on the frozen base's features), how many
files and bytes it holds, and a SHA-256 digest of their names and contents. train@<model>-<seed> and
evaluate@<model>-<seed> depend on this file rather than on the folder: DVC's model x seed matrix
cannot look a per-model value up (${models.${item.model}.data} is not interpolated), and a digest
that changes exactly when the folder's content does reruns them exactly when it should.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Sequence

from stages.common import cli
from stages.common.atomic_files import write_text_atomic
from stages.common.config import load_params
from stages.common.errors import UserError
from stages.contracts.manifests import ModelInputs

CHUNK = 1 << 20


def describe_folder(model: str, folder: Path) -> ModelInputs:
    """The folder's files (every file under it, by relative path) and their digest: each file's path,
    size and bytes, in sorted order, through one SHA-256."""
    if not folder.is_dir():
        raise UserError(f"{folder}: not found; model {model} learns from it: run the stage that writes it "
                        f"(dvc repro {folder})")
    digest = hashlib.sha256()
    files = total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        digest.update(f"{relative}\0{size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        files, total = files + 1, total + size
    return ModelInputs(model=model, data=folder.as_posix(), files=files, bytes=total, sha256=digest.hexdigest())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model named in params.yaml's train section")
    parser.add_argument("folder", type=Path, help="the folder it learns from (dvc.yaml's models table)")
    arguments = parser.parse_args(argv)
    params = load_params()
    if arguments.model not in params.model_names:
        raise UserError(f"{arguments.model}: not a model in params.yaml's train section "
                        f"({', '.join(params.model_names)})")
    inputs = describe_folder(arguments.model, arguments.folder)
    write_text_atomic(ModelInputs.path(arguments.model), inputs.text())
    print(f"{arguments.model} learns from {inputs.data}: {inputs.files} files, {inputs.bytes / 1e6:.1f} MB, "
          f"sha256 {inputs.sha256[:12]}")


if __name__ == "__main__":
    cli.run(main)
