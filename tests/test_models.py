"""The models match what the assignment specifies."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from stages.models.baseline import make_model  # noqa: E402


def test_baseline_matches_figure_1():
    model = make_model((100, 100, 3))
    assert model.count_params() == 544_593
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == {
        "rescaling": (100, 100, 3),
        "conv2d": (98, 98, 16),
        "max_pooling2d": (49, 49, 16),
        "conv2d_1": (47, 47, 16),
        "max_pooling2d_1": (23, 23, 16),
        "flatten": (8464,),
        "dense": (64,),
        "dense_1": (1,),
    }
    params = {layer.name: layer.count_params() for layer in model.layers}
    assert params == {"rescaling": 0, "conv2d": 448, "max_pooling2d": 0, "conv2d_1": 2320,
                      "max_pooling2d_1": 0, "flatten": 0, "dense": 541_760, "dense_1": 65}


def test_baseline_takes_raw_pixels_and_outputs_probabilities():
    model = make_model((100, 100, 3))
    images = np.random.default_rng(0).integers(0, 256, size=(4, 100, 100, 3)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 1)
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert model.layers[-1].activation.__name__ == "sigmoid"
