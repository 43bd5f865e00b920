"""evaluate: the transfer head on cached features gives the full model's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import features
from stages.evaluate import predict_features, predict_split, uses_cached_features
from test_records import make_project, run_stage

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_head_on_cached_features_equals_full_model(tmp_path):
    """Same files, labels and probabilities (float32 features: only summation order differs)."""
    import keras

    from stages.config import load_params
    from stages.models import transfer
    folder = make_project(tmp_path / "project")
    raw = yaml.safe_load((folder / "params.yaml").read_text())
    raw["train"]["transfer"]["weights"] = "none"
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    records = run_stage(folder)
    params = load_params(folder / "params.yaml").train.transfer
    keras.utils.set_random_seed(7)
    extractor = features.feature_extractor(100, "none", params.feature_layer)
    cached = folder / "data" / "features"
    cached.mkdir(parents=True)
    for split in ("val", "test"):
        values, labels, files = features.extract(extractor, records, split, batch_size=4)
        np.savez(cached / f"{split}.npz", features=values, labels=labels, files=files)
    keras.utils.set_random_seed(8)
    base = extractor.get_layer("vgg16")
    head = transfer.make_head(tuple(base.output.shape[1:]), params)
    model = transfer.make_model((100, 100, 3), params, base=base, head=head)
    for split in ("val", "test"):
        from_features = predict_features(head, cached, split, batch_size=3)
        from_images = predict_split(model, records, split, batch_size=3)
        assert list(from_features["file"]) == list(from_images["file"])
        assert list(from_features["label"]) == list(from_images["label"])
        assert np.ptp(from_images["probability"]) > 1e-6, "the check needs outputs that differ per image"
        np.testing.assert_allclose(from_features["probability"], from_images["probability"], rtol=1e-5, atol=1e-7)


HED4 = {"model": "transfer", "weights": "hed", "feature_layer": "block4_pool", "fine_tuned": False}


@pytest.mark.parametrize("training, in_features, expected", [
    (HED4, ("hed", "block4_pool"), True),
    (HED4 | {"fine_tuned": True}, ("hed", "block4_pool"), False),   # fine-tuning changed the base
    (HED4, ("none", "block4_pool"), False),                         # other weights
    (HED4, ("hed", "block5_pool"), False),                          # cut elsewhere
    (HED4, None, False),                                            # no features
    ({"model": "baseline"}, ("hed", "block4_pool"), False),
])
def test_cached_features_only_when_they_match_the_model(tmp_path, training, in_features, expected):
    if in_features is not None:
        weights, layer = in_features
        (tmp_path / "manifest.json").write_text(json.dumps({"weights": weights, "feature_layer": layer, "splits": {}}))
    assert uses_cached_features(training, tmp_path) is expected
