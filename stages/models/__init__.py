"""One module per model family; `build` picks one by its name in params.yaml's train section."""

from __future__ import annotations

import keras

from stages.config import FitParams


def build(name: str, params: FitParams, input_shape: tuple[int, int, int]) -> keras.Model:
    """Build the untrained model called `name` (a key of train: in params.yaml)."""
    if name == "baseline":
        from stages.models import baseline

        return baseline.make_model(input_shape)
    raise ValueError(f"unknown model '{name}'")
