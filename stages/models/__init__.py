"""The models: one module per model, stages/models/<name>.py for each train.<name> in params.yaml.

`table(params)` is the one lookup the stages use; a module's `Params` checks its section and its
`Family` builds, fits, scores and describes the model (see stages/models/family.py).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from stages.config import Params, validate_section
from stages.errors import UserError
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


def load_model(path: Path | str):
    """Load a saved .keras model of any family: importing every model module registers its custom layers."""
    import keras

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return keras.models.load_model(path)
