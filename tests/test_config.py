"""params.yaml: the real file loads; every mistake is one UserError line that names the key and file.

The loader checks every section but the models' (train.<name>), which each model's module checks
when a stage asks for the model (stages.modelkit.family): `problem` does both, as a stage would.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from stages.common.config import Params, load_params, parse_params
from stages.common.errors import UserError
from stages.modelkit import registry

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def problem(raw: dict, source: str = "params.yaml") -> str:
    """The UserError message parse_params gives for `raw` (fails the test when none is raised)."""
    with pytest.raises(UserError) as caught:
        registry.table(parse_params(raw, source))
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert message.strip() == message and message
    return message


def test_real_params_yaml_loads(raw):
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    assert set(params.download.datasets) == {"trainval", "test"}
    assert set(params.prepare.splits) == {"train", "val", "test"}
    for split in params.prepare.splits.values():
        assert set(split.classes.values()) == set(params.prepare.classes)
    # Every model section has its module, and its params pass that module's checks.
    assert params.model_names == list(raw["train"])
    table = registry.table(params)
    assert list(table) == params.model_names
    assert all(family.params.epochs >= 1 for family in table.values())
    assert params.compare.reference in table


def test_parse_params_matches_load_params(raw):
    assert parse_params(raw, str(PARAMS)) == load_params(PARAMS)


def test_params_are_frozen():
    params = load_params(PARAMS)
    threshold = params.evaluate.threshold
    with pytest.raises(ValidationError, match="frozen"):
        params.evaluate.threshold = 0.9  # type: ignore[misc]
    assert params.evaluate.threshold == threshold


def test_bad_value_names_key_and_file(raw):
    raw["train"]["baseline"]["epochs"] = 0
    message = problem(raw, "my/params.yaml")
    assert "train.baseline.epochs" in message
    assert "my/params.yaml" in message
    assert "got 0" in message


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("train", "baseline", "optimizer"), "adamw", "train.baseline.optimizer"),
        (("train", "baseline", "learning_rate"), 0, "train.baseline.learning_rate"),
        (("train", "baseline", "batch_size"), "ten", "train.baseline.batch_size"),
        (("evaluate", "threshold"), 1.0, "evaluate.threshold"),
        (("prepare", "image_size"), 8, "prepare.image_size"),
        (("download", "source"), "http", "download.source"),
        (("download", "sample", "test_male_fraction"), 1.5, "download.sample.test_male_fraction"),
        (("download", "datasets", "trainval", "slug"), "no-slash", "download.datasets.trainval.slug"),
        (("download", "datasets", "test", "version"), 0, "download.datasets.test.version"),
        (("tfrecords", "shard_size"), 0, "tfrecords.shard_size"),
    ],
)
def test_each_bad_value_names_its_key(raw, path, value, key):
    section = raw
    for part in path[:-1]:
        section = section[part]
    section[path[-1]] = value
    message = problem(raw)
    assert message.startswith("params.yaml: ")
    assert f"{key}:" in message
    assert repr(value) in message


def test_unknown_key_is_a_typo(raw):
    raw["train"]["baseline"]["epoch"] = 3  # typo of epochs
    message = problem(raw)
    assert "train.baseline.epoch:" in message
    assert "unknown key" in message
    assert "params.yaml" in message


def test_unknown_section_is_a_typo(raw):
    raw["trian"] = {"baseline": {}}
    message = problem(raw)
    assert "trian: unknown key" in message


def test_missing_section(raw):
    del raw["evaluate"]
    message = problem(raw)
    assert "evaluate: missing" in message
    assert "params.yaml" in message


def test_missing_key_inside_section(raw):
    del raw["tfrecords"]["seed"]
    message = problem(raw)
    assert "tfrecords.seed: missing" in message


def test_several_problems_are_counted(raw):
    raw["features"]["batch_size"] = 0
    raw["evaluate"]["batch_size"] = 0
    raw["tfrecords"]["shard_size"] = 0
    message = problem(raw)
    assert "(and 2 more problems)" in message


def test_several_problems_in_one_model_are_counted(raw):
    raw["train"]["baseline"]["epochs"] = 0
    raw["train"]["baseline"]["batch_size"] = 0
    message = problem(raw)
    assert "train.baseline.epochs" in message and "(and 1 more problem)" in message


def test_model_without_a_module(raw):
    raw["train"]["mystery"] = dict(raw["train"]["baseline"])
    message = problem(raw)
    assert "train.mystery" in message and "stages/models/mystery.py" in message


def test_model_name_must_be_a_module_name(raw):
    raw["train"]["my-model"] = dict(raw["train"]["baseline"])
    message = problem(raw)
    assert "train.my-model" in message


def test_compare_reference_must_be_a_model(raw):
    raw["compare"]["reference"] = "nope"
    message = problem(raw)
    assert "compare.reference" in message and "'nope'" in message and "baseline" in message


def test_a_module_that_is_no_model(raw, monkeypatch):
    notes = types.ModuleType("stages.models.notes")       # stages/models/notes.py, with no Family in it
    monkeypatch.setitem(sys.modules, "stages.models.notes", notes)
    raw["train"]["notes"] = dict(raw["train"]["baseline"])
    message = problem(raw)
    assert "stages/models/notes.py" in message and "not a model module" in message


def test_split_naming_unknown_dataset(raw):
    raw["prepare"]["splits"]["test"]["dataset"] = "testset"
    message = problem(raw)
    assert "prepare.splits.test.dataset" in message
    assert "'testset'" in message
    assert "trainval" in message  # says what would be valid


def test_split_mapping_to_unknown_class(raw):
    raw["prepare"]["splits"]["test"]["classes"] = {"man": "Man", "woman": "Female"}
    message = problem(raw)
    assert message.startswith("params.yaml: prepare")
    assert "splits.test.classes" in message
    assert "'Man'" in message


def test_section_level_error_does_not_dump_the_section(raw):
    raw["prepare"]["splits"]["test"]["classes"] = {"man": "Man", "woman": "Female"}
    message = problem(raw)
    assert "image_size" not in message
    assert len(message) < 250


def test_missing_split(raw):
    del raw["prepare"]["splits"]["val"]
    message = problem(raw)
    assert "prepare" in message and "splits needs entries ['val']" in message


def test_missing_dataset(raw):
    del raw["download"]["datasets"]["test"]
    message = problem(raw)
    assert "download" in message and "datasets needs entries ['test']" in message


def test_load_params_reads_a_file(tmp_path, raw):
    raw["train"]["baseline"]["epochs"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path).train["baseline"]["epochs"] == 3
    assert load_params(str(path)).train["baseline"]["epochs"] == 3


def load_error(path) -> str:
    """The UserError message load_params gives for `path`: one line that names the file."""
    with pytest.raises(UserError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_load_params_bad_value_names_the_file(tmp_path, raw):
    raw["evaluate"]["threshold"] = 0
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(raw))
    message = load_error(path)
    assert "evaluate.threshold" in message


def test_invalid_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    text = PARAMS.read_text().replace("  image_size: 100", "  image_size: [100", 1)
    assert text != PARAMS.read_text()
    path.write_text(text)
    message = load_error(path)
    assert "not valid YAML" in message
    assert " line " in message


def test_invalid_yaml_tab_indent(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n\tbaseline: {}\n")
    with pytest.raises(UserError) as caught:
        load_params(path)
    assert "\n" not in str(caught.value)
    assert "line 2" in str(caught.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "params.yaml"
    message = load_error(path)
    assert "not found" in message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_not_a_mapping(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    message = load_error(path)
    assert "mapping" in message


def test_null_section(raw):
    raw["train"] = None
    message = problem(raw)
    assert message.startswith("params.yaml: train:")


def test_raw_not_mutated(raw):
    before = copy.deepcopy(raw)
    parse_params(raw)
    assert raw == before


@pytest.mark.parametrize(("path", "value", "key", "got"), [
    (("train", "baseline", "epochs"), True, "train.baseline.epochs", "True"),
    (("train", "baseline", "epochs"), "3", "train.baseline.epochs", "'3'"),
    (("evaluate", "threshold"), True, "evaluate.threshold", "True"),
    (("train", "improved", "filters"), [0], "train.improved.filters.0", "0"),
    (("train", "improved", "filters"), [16, -8], "train.improved.filters.1", "-8"),
    (("train", "transfer", "head_units"), [-1], "train.transfer.head_units.0", "-1"),
])
def test_numbers_are_numbers_and_layers_have_a_size(raw, path, value, key, got):
    section = raw
    for part in path[:-1]:
        section = section[part]
    section[path[-1]] = value
    message = problem(raw)
    assert f"{key}:" in message and f"(got {got})" in message


def test_yaml_exponent_without_a_dot_is_a_number(raw):
    raw["train"]["baseline"]["learning_rate"] = "1e-4"   # what PyYAML makes of `learning_rate: 1e-4`
    assert registry.family("baseline", parse_params(raw)).params.learning_rate == 1e-4


def test_seeds_are_a_list_of_distinct_seeds_each_model_trains_with(raw):
    params = parse_params(raw)
    assert params.seeds == [2021] and registry.family("baseline", params).params.seed == 2021
    raw["seeds"] = [7, 2021]
    params = parse_params(raw)
    assert registry.family("baseline", params, 2021).params.seed == 2021
    assert registry.family("improved", params).params.seed == 7            # without a seed: the first
    raw["seeds"] = [1, 1]
    assert "seeds lists a seed twice" in problem(raw)
    raw["seeds"] = []
    assert "seeds:" in problem(raw)


def test_a_seed_in_a_model_section_says_where_seeds_are_now(raw):
    raw["train"]["baseline"]["seed"] = 2021          # where params.yaml had it before seeds were a list
    with pytest.raises(UserError, match=r"train.baseline.seed: the training seeds are the top-level list `seeds`"):
        registry.family("baseline", parse_params(raw))
