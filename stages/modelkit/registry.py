"""The models by name: stages/models/<name>.py for each train.<name> in params.yaml.

`table(params)` is the one lookup the stages use and `load_model` the one way to load a saved model.
A model module's `Params` checks its section and its `Family` builds, fits, scores and describes the
model (stages/modelkit/family.py).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import zipfile
from pathlib import Path
from types import ModuleType

from stages.common.config import Params, validate_section
from stages.common.errors import UserError
from stages.modelkit.family import ModelFamily

MODELS_PACKAGE = "stages.models"


def module_of(name: str) -> ModuleType:
    """The module of model `name`: stages/models/<name>.py, which must define Params and Family."""
    try:
        module = importlib.import_module(f"{MODELS_PACKAGE}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{MODELS_PACKAGE}.{name}":
            raise
        raise UserError(f"train.{name}: no module stages/models/{name}.py; every model in params.yaml's train "
                        "section needs one (docs/models.md, Adding a model)") from None
    family = getattr(module, "Family", None)
    if not (isinstance(family, type) and issubclass(family, ModelFamily)):
        raise UserError(f"stages/models/{name}.py defines no Family (a ModelFamily); it is not a model module")
    return module


def family_class(name: str) -> type[ModelFamily]:
    """Model `name`'s Family, for what needs no params: scoring a saved model."""
    return module_of(name).Family


def family(name: str, params: Params, seed: int | None = None) -> ModelFamily:
    """Model `name` trained with `seed` (params.yaml's first seed if not given), its train.<name> section
    checked against its Params (one line naming a bad key)."""
    if name not in params.train:
        raise UserError(f"train.{name}: no such section in {params.source}; models: {', '.join(params.train)}")
    if "seed" in params.train[name]:
        raise UserError(f"{params.source}: train.{name}.seed: the training seeds are the top-level list `seeds` "
                        f"(every model trains once per seed); remove train.{name}.seed")
    cls = family_class(name)
    section = {**params.train[name], "seed": params.seeds[0] if seed is None else seed}
    return cls(name, validate_section(cls.Params, section, f"train.{name}", params.source))


def table(params: Params) -> dict[str, ModelFamily]:
    """Every model of params.yaml's train section, in its order."""
    return {name: family(name, params) for name in params.model_names}


def load_model(path: Path | str, name: str | None = None):
    """Load a saved .keras model. Its model's module registers the custom layers it needs; with no
    name (a model file from anywhere), every model module is imported."""
    import keras

    package = importlib.import_module(MODELS_PACKAGE)
    names = [name] if name else [module.name for module in pkgutil.iter_modules(package.__path__)]
    for each in names:
        importlib.import_module(f"{MODELS_PACKAGE}.{each}")
    if not zipfile.is_zipfile(path):
        # Keras would say "File not found" for a file that is there but damaged.
        raise UserError(f"{path}: not a .keras model (not a zip archive: damaged or another kind of file); "
                        "retrain it (dvc repro -f train@<model>-<seed>) or give another file")
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a bad file; all mean "cannot load".
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot load the model ({reason})") from None
    refuse_if_capped(model, path)
    return model


def refuse_if_capped(model, path: Path | str) -> None:
    """A one-line error, not oneDNN's "could not create a primitive descriptor" on the first batch, for a
    model with layers in a 16-bit precision that ONEDNN_MAX_CPU_ISA keeps oneDNN from running (a model
    trained in bfloat16 on a CPU that has it, then used with the cap that emulates an AVX2-only CPU)."""
    import tensorflow as tf

    from stages.common.machine import ONEDNN_CAP_VARIABLE, onednn_allows

    precisions = {layer.dtype_policy.compute_dtype for layer in model._flatten_layers(include_self=True)}
    blocked = sorted(precision for precision in precisions if not onednn_allows(precision))
    if blocked and not tf.config.list_physical_devices("GPU"):
        raise UserError(f"{path}: its layers compute in {blocked[0]}, which oneDNN cannot run under "
                        f"{ONEDNN_CAP_VARIABLE}={os.environ[ONEDNN_CAP_VARIABLE]}; unset {ONEDNN_CAP_VARIABLE}, "
                        "or retrain the model with it set (train.transfer.precision auto then resolves to float32)")
