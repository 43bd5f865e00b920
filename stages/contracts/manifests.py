"""What tfrecords and features hand over besides their shards: each folder's manifest.json.

The shards' record schemas, writer and readers are in stages/contracts/tfrecord_io.py (TensorFlow);
this module stays free of TensorFlow, so a stage can check its input before TensorFlow starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from stages.common.config import FEATURES_DIR, TFRECORDS_DIR
from stages.contracts.jsonfile import JsonFile

# --- tfrecords: data/tfrecords/*.tfrecord and manifest.json (records: tfrecord_io.py) --

class SplitShards(BaseModel):
    count: int
    per_class: dict[str, int]
    shards: list[str]


class TfrecordsManifest(JsonFile):
    """data/tfrecords/manifest.json: image size, class names (label index = position), shards per split."""

    written_by: ClassVar[str] = "tfrecords"
    name: ClassVar[str] = "manifest.json"

    image_size: int
    classes: list[str]
    splits: dict[str, SplitShards]

    @classmethod
    def read_from(cls, root: Path | str = TFRECORDS_DIR) -> "TfrecordsManifest":
        return cls.read(Path(root) / cls.name)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)


# --- features: data/features/<split>-NNNNN-of-NNNNN.tfrecord and manifest.json (records: tfrecord_io.py) -

class FeatureShards(BaseModel):
    count: int
    shape: list[int]          # one image's base output
    shards: list[str]


class FeaturesManifest(JsonFile):
    """data/features/manifest.json: which frozen base made the features, in what precision, and each
    split's shards. The features are stored in the dtype the base computes in (exactly its output)."""

    written_by: ClassVar[str] = "features"
    name: ClassVar[str] = "manifest.json"

    weights: str
    feature_layer: str
    precision: str
    weights_label: str
    dtype: str                # float32 | bfloat16 | float16
    splits: dict[str, FeatureShards]

    @classmethod
    def read_from(cls, root: Path | str = FEATURES_DIR) -> "FeaturesManifest":
        return cls.read(Path(root) / cls.name)
