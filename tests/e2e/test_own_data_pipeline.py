"""End to end: your own labelled faces through real `dvc repro` on a temporary copy of the repository, in each
layout; DVC reruns what a changed image changes, and nothing for a touched one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stages.contracts.prepared import read_groups
from tests.helpers import make_tiny_project, raw_repo_params, run, set_params, stages_run, write_own_faces

pytestmark = pytest.mark.e2e

MODELS = list(raw_repo_params()["train"])
SEED = raw_repo_params()["seeds"][0]
PER_CLASS = 40
TO_TFRECORDS = ["download", "prepare", "tfrecords"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_tiny_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The same faces in each layout, each in a folder outside the project."""
    root = tmp_path_factory.mktemp("own")
    return {layout: write_own_faces(root / layout, layout, per_class=PER_CLASS) for layout in ("classes", "splits", "csv")}


def counts(project: Path) -> dict[str, int]:
    found = json.loads((project / "metrics/prepare.json").read_text())["counts"]
    return {split: found[split]["total"] for split in ("train", "val", "test")}


@pytest.mark.parametrize("layout, expected", [
    ("classes", {"train": 56, "val": 12, "test": 12}),      # 0.15 of each class's 40 to val and to test
    ("splits", {"train": 48, "val": 24, "test": 8}),        # train/ 28 and val/ 12 per class; test from train
    ("csv", {"train": 68, "val": 6, "test": 6}),            # 20 rows per class name train; 3 of the 20 others each
])
def test_each_layout_runs_to_the_tfrecords_with_one_params_change(project, folders, layout, expected):
    set_params(project, {"download.source": "own", "download.own": str(folders[layout])})
    output = run(["dvc", "repro", "tfrecords"], project)
    assert stages_run(output) == TO_TFRECORDS
    assert counts(project) == expected
    assert sorted(path.name for path in (project / "data/raw").iterdir()) == ["own"]
    groups = read_groups(project / "data/prepared")
    assert len(groups) == (sum(expected.values()) if layout == "csv" else 0)


def test_a_touched_image_reruns_nothing_and_a_changed_one_reruns_from_the_download(project, folders):
    set_params(project, {"download.source": "own", "download.own": str(folders["csv"])})
    run(["dvc", "repro", "tfrecords"], project)
    image = folders["csv"] / "img" / "male_003.jpg"
    os.utime(image)
    assert stages_run(run(["dvc", "repro", "tfrecords"], project)) == []
    image.write_bytes((folders["csv"] / "img" / "male_004.jpg").read_bytes())
    assert stages_run(run(["dvc", "repro", "tfrecords"], project)) == TO_TFRECORDS


def test_your_faces_train_and_compare_all_three_models_with_groups(project, folders):
    # Up to compare: the cards, exports and report read the same files as on the sample (their own-data
    # wording is tested in tests/test_cards.py and tests/test_report.py).
    set_params(project, {"download.source": "own", "download.own": str(folders["csv"])})
    output = run(["dvc", "repro", "compare"], project)
    assert {f"{kind}@{model}-{SEED}" for kind in ("train", "evaluate") for model in MODELS} <= set(stages_run(output))
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert set(MODELS) <= set(json.dumps(comparison).split('"'))
    provenance = json.loads((project / "metrics/download.json").read_text())
    assert provenance["source"] == "own" and provenance["datasets"]["own"]["images"] == 2 * PER_CLASS
    for model in MODELS:
        groups = json.loads((project / f"metrics/evaluate/{model}/{SEED}.json").read_text())["test"]["groups"]
        assert groups["groups"] and set(groups["groups"]) <= {"lighter", "medium", "darker"}
