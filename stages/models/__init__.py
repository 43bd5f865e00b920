"""One module per model family; `build` picks one by its name in params.yaml's train section."""

from __future__ import annotations

from pathlib import Path

import keras

from stages.config import FitParams


def build(name: str, params: FitParams, input_shape: tuple[int, int, int]) -> keras.Model:
    """Build the untrained model called `name` (a key of train: in params.yaml)."""
    if name == "baseline":
        from stages.models import baseline

        return baseline.make_model(input_shape)
    if name == "improved":
        from stages.models import improved

        return improved.make_model(input_shape, params)
    if name == "transfer":
        from stages.models import transfer

        return transfer.make_model(input_shape, params)
    raise ValueError(f"unknown model '{name}'")


def load(path: Path | str) -> keras.Model:
    """Load a saved .keras model of any family (registers the project's custom layers first)."""
    from stages.models import transfer  # noqa: F401  (registers VGGPreprocess)

    return keras.models.load_model(path)
