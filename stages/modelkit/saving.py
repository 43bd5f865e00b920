"""Saving a model so that the same model gives the same bytes: DVC sees no change where nothing changed."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

from stages.common.atomic_files import write_zip


def save_model(model, path: Path | str) -> None:
    """Save `model` as a .keras file (atomically) whose bytes depend only on its config and weights
    (and optimizer state, if compiled), so that DVC sees no change when nothing changed.

    Keras's own save varies from save to save in three places, all normalised here:
    - metadata.json holds "date_saved" (the wall-clock second): dropped (Keras never reads it back);
    - config.json gives each shared object (the layers' common dtype policy) a "shared_object_id"
      that is its Python id(), a memory address: renumbered 1, 2, ... in order of first appearance;
    - the zip entries carry the current time: rewritten by atomic_files.write_zip (fixed time and mode,
      sorted entries, stored uncompressed as Keras stores them).
    model.weights.h5 is kept as written: h5py creates datasets without timestamps and Keras's
    default (earliest) HDF5 format keeps none in group headers either, so its bytes are already a
    function of the weights (tests/test_models.py checks this across processes).
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a saved model's file name must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.tmp-", dir=path.parent) as scratch:
        saved = Path(scratch) / "model.keras"
        model.save(saved)
        with zipfile.ZipFile(saved) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["metadata.json"] = normalise_metadata(members["metadata.json"])
    members["config.json"] = normalise_config(members["config.json"])
    write_zip(path, members)


def normalise_metadata(metadata: bytes) -> bytes:
    """metadata.json without its save time (Keras writes it and never reads it)."""
    fields = json.loads(metadata)
    fields.pop("date_saved", None)
    return json.dumps(fields).encode("utf-8")


def normalise_config(config: bytes) -> bytes:
    """config.json with shared-object ids (memory addresses) renumbered 1, 2, ... in order of first
    appearance. Loading only matches equal ids to one another, so the model loads exactly as before."""
    numbers: dict[object, int] = {}

    def renumber(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "shared_object_id" and isinstance(value, int) and not isinstance(value, bool):
                    node[key] = numbers.setdefault(value, len(numbers) + 1)
                else:
                    renumber(value)
        elif isinstance(node, list):
            for item in node:
                renumber(item)

    tree = json.loads(config)
    renumber(tree)
    return json.dumps(tree).encode("utf-8")
