"""inputs: a model's data folder as one small file whose bytes change exactly when the folder's do."""

from __future__ import annotations

import json

import pytest
import yaml

from stages import inputs
from stages.common.errors import UserError
from stages.contracts.manifests import ModelInputs


def test_the_digest_follows_content_names_and_nothing_else(tmp_path):
    folder = tmp_path / "data" / "features"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.tfrecord").write_bytes(b"x" * 3_000_000)            # more than one read chunk
    (folder / "sub" / "manifest.json").write_text("{}")
    first = inputs.describe_folder("transfer", folder)
    assert (first.files, first.bytes, first.data) == (2, 3_000_002, folder.as_posix())
    assert inputs.describe_folder("transfer", folder) == first                         # stable
    (folder / "sub" / "manifest.json").touch()                                         # a new mtime only
    assert inputs.describe_folder("transfer", folder).sha256 == first.sha256
    (folder / "a.tfrecord").write_bytes(b"x" * 2_999_999 + b"y")                      # one byte differs
    changed = inputs.describe_folder("transfer", folder)
    assert changed.sha256 != first.sha256 and changed.bytes == first.bytes
    (folder / "a.tfrecord").write_bytes(b"x" * 3_000_000)
    (folder / "a.tfrecord").rename(folder / "b.tfrecord")                             # same bytes, new name
    assert inputs.describe_folder("transfer", folder).sha256 != first.sha256


def test_the_stage_writes_data_inputs_and_names_a_missing_folder(tmp_path, monkeypatch, raw_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "tfrecords").mkdir(parents=True)
    (tmp_path / "data" / "tfrecords" / "manifest.json").write_text("{}")
    inputs.main(["baseline", "data/tfrecords"])
    written = ModelInputs.read(ModelInputs.path("baseline"))
    assert written.model == "baseline" and written.files == 1
    assert json.loads(ModelInputs.path("baseline").read_text())["data"] == "data/tfrecords"
    with pytest.raises(UserError, match=r"data/features: not found; model transfer learns from it"):
        inputs.main(["transfer", "data/features"])
    with pytest.raises(UserError, match="mine: not a model in params.yaml's train section"):
        inputs.main(["mine", "data/tfrecords"])
