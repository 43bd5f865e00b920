"""The models: one module per model, stages/models/<name>.py for each train.<name> in params.yaml.

`table(params)` is the one lookup the stages use; a module's `Params` checks its section and its
`Family` builds, fits, scores and describes the model (see stages/models/family.py).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

from stages.config import Params, validate_section
from stages.errors import UserError
from stages.fsutil import write_zip
from stages.models.family import ModelFamily


def module_of(name: str) -> ModuleType:
    """The module of model `name`: stages/models/<name>.py, which must define Params and Family."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise UserError(f"train.{name}: no module stages/models/{name}.py; every model in params.yaml's train "
                        "section needs one (README, Layout)") from None
    family = getattr(module, "Family", None)
    if not (isinstance(family, type) and issubclass(family, ModelFamily)):
        raise UserError(f"stages/models/{name}.py defines no Family (a ModelFamily); it is not a model module")
    return module


def family_class(name: str) -> type[ModelFamily]:
    """Model `name`'s Family, for what needs no params: scoring a saved model."""
    return module_of(name).Family


def family(name: str, params: Params) -> ModelFamily:
    """Model `name`, its train.<name> section checked against its Params (one line naming a bad key)."""
    if name not in params.train:
        raise UserError(f"train.{name}: no such section in {params.source}; models: {', '.join(params.train)}")
    cls = family_class(name)
    return cls(name, validate_section(cls.Params, params.train[name], f"train.{name}", params.source))


def table(params: Params) -> dict[str, ModelFamily]:
    """Every model of params.yaml's train section, in its order."""
    return {name: family(name, params) for name in params.model_names}


def load_model(path: Path | str, name: str | None = None):
    """Load a saved .keras model. Its model's module registers the custom layers it needs; with no
    name (a model file from anywhere), every model module is imported."""
    import keras

    names = [name] if name else [module.name for module in pkgutil.iter_modules(__path__)]
    for each in names:
        importlib.import_module(f"{__name__}.{each}")
    if not zipfile.is_zipfile(path):
        # Keras would say "File not found" for a file that is there but damaged.
        raise UserError(f"{path}: not a .keras model (not a zip archive: damaged or another kind of file); "
                        "retrain it (dvc repro -f train@<model>) or give another file")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a bad file; all mean "cannot load".
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot load the model ({reason})") from None


# --- saving: same weights and config, same bytes ------------------------------------------------

def save_model(model, path: Path | str) -> None:
    """Save `model` as a .keras file (atomically) whose bytes depend only on its config and weights
    (and optimizer state, if compiled), so that DVC sees no change when nothing changed.

    Keras's own save varies from save to save in three places, all normalised here:
    - metadata.json holds "date_saved" (the wall-clock second): dropped (Keras never reads it back);
    - config.json gives each shared object (the layers' common dtype policy) a "shared_object_id"
      that is its Python id(), a memory address: renumbered 1, 2, ... in order of first appearance;
    - the zip entries carry the current time: rewritten by fsutil.write_zip (fixed time and mode,
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
