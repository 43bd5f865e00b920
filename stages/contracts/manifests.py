"""What tfrecords and features hand over besides their shards (each folder's manifest.json), and what
model learns from which folder (data/inputs/<model>.json, the inputs stage).

The shards' record schemas, writer and readers are in stages/contracts/tfrecord_io.py (TensorFlow);
this module stays free of TensorFlow, so a stage can check its input before TensorFlow starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from stages.common.config import FEATURES_DIR, INPUTS_DIR, TFRECORDS_DIR
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
    precision: str            # as resolved on the machine that ran the stage (params may say auto)
    weights_label: str
    dtype: str                # float32 | bfloat16 | float16
    engine: str = "keras"     # keras | litert: what ran the base (stages/modelkit/engines.py)
    machine: str = ""         # the CPU it ran on (stages/common/machine.py describe_cpu)
    splits: dict[str, FeatureShards]

    @classmethod
    def read_from(cls, root: Path | str = FEATURES_DIR) -> "FeaturesManifest":
        return cls.read(Path(root) / cls.name)


# --- inputs: data/inputs/<model>.json, what one model learns from ----------------------------------

class ModelInputs(JsonFile):
    """data/inputs/<model>.json: the folder a model learns from (dvc.yaml's models table), its files and
    bytes, and a digest of their names and contents: it changes exactly when the folder's content does."""

    written_by: ClassVar[str] = "inputs"

    model: str
    data: str                 # the folder, relative to the repository root
    files: int
    bytes: int
    sha256: str

    @staticmethod
    def path(model: str, root: Path = INPUTS_DIR) -> Path:
        return Path(root) / f"{model}.json"
