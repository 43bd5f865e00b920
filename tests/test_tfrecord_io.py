"""The TFRecord schema and the tfrecords stage on a tiny prepared tree (the only TensorFlow tests)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from stages import tfrecords  # noqa: E402
from stages.common.errors import UserError  # noqa: E402
from stages.contracts.manifests import TfrecordsManifest  # noqa: E402
from stages.contracts.prepared import PreparedSplit, read_prepared
from stages.contracts.tfrecord_io import decode_example, encode_example, load_split, shard_name, write_shards  # noqa: E402
from tests.helpers import (  # noqa: E402
    CLASSES,
    RECORD_COUNTS,
    RECORD_SEED,
    ROOT,
    SHARD_SIZE,
    SIZE,
    face_png,
    hashes,
    make_prepared,
    make_tfrecords_project,
    run_tfrecords,
)

MANIFEST_NAME = TfrecordsManifest.name


def read_manifest(root: Path) -> dict:
    """The manifest as the JSON it is on disk."""
    return json.loads((root / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def stage_output(tmp_path_factory) -> Path:
    return run_tfrecords(make_tfrecords_project(tmp_path_factory.mktemp("project")))


def collect(root: Path, split: str, batch_size: int = 5, **kwargs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels, files = [], [], []
    for batch_images, batch_labels, batch_files in load_split(root, split, batch_size, with_filenames=True, **kwargs):
        assert batch_images.dtype == tf.float32 and batch_labels.dtype == tf.float32
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        files.extend(f.decode("utf-8") for f in batch_files.numpy())
    return np.concatenate(images), np.concatenate(labels), files


# --- the schema -------------------------------------------------------------------------------

def test_encode_decode_round_trip():
    png = face_png("val", 1, 7)
    serialized = encode_example(png, 1, "val/Male/img007.png")
    assert isinstance(serialized, bytes)
    example = decode_example(tf.constant(serialized), SIZE)
    assert example["image"].dtype == tf.uint8
    assert example["image"].shape == (SIZE, SIZE, 3)
    assert np.array_equal(example["image"].numpy(), np.asarray(Image.open(io.BytesIO(png))))
    assert int(example["label"].numpy()) == 1
    assert example["filename"].numpy().decode("utf-8") == "val/Male/img007.png"
    parsed = tf.io.parse_single_example(serialized, {"image": tf.io.FixedLenFeature([], tf.string)})
    assert parsed["image"].numpy() == png  # the PNG bytes travel untouched


def test_round_trip_unicode_filename_and_label_zero():
    serialized = encode_example(face_png("test", 0, 1), 0, "test/Female/żółw é.png")
    example = decode_example(tf.constant(serialized), SIZE)
    assert int(example["label"].numpy()) == 0
    assert example["filename"].numpy().decode("utf-8") == "test/Female/żółw é.png"


def test_encoding_is_deterministic():
    """Features in key order, whatever order protobuf's map keeps in this process."""
    serialized = encode_example(b"png bytes", 1, "val/Male/img007.png")
    assert serialized.index(b"filename") < serialized.index(b"image") < serialized.index(b"label")
    assert encode_example(b"png bytes", 1, "val/Male/img007.png") == serialized


def test_decode_rejects_wrong_size():
    serialized = encode_example(face_png("train", 0, 0), 0, "x.png")
    with pytest.raises(tf.errors.InvalidArgumentError, match="64"):
        decode_example(tf.constant(serialized), 64)


def test_shard_names():
    assert shard_name("train", 0, 3) == "train-00000-of-00003.tfrecord"
    assert shard_name("test", 12, 100) == "test-00012-of-00100.tfrecord"


# --- the stage's pieces -----------------------------------------------------------------------

def test_list_examples_sorted_by_class_then_name(tmp_path):
    make_prepared(tmp_path)
    with PreparedSplit(tmp_path, "train") as prepared:
        examples = tfrecords.list_examples(prepared, CLASSES)
    counts = RECORD_COUNTS["train"]
    assert [label for _, label in examples] == [0] * counts["Female"] + [1] * counts["Male"]
    assert [file for file, _ in examples[:2]] == ["train/Female/img000.png", "train/Female/img001.png"]
    assert examples == sorted(examples, key=lambda e: (e[1], e[0]))


def test_missing_or_damaged_archive(tmp_path):
    make_prepared(tmp_path)
    (tmp_path / "val.zip").unlink()
    with pytest.raises(UserError) as caught:
        PreparedSplit(tmp_path, "val")
    assert str(tmp_path / "val.zip") in str(caught.value) and "dvc repro prepare" in str(caught.value)
    (tmp_path / "test.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="test.zip: not a zip archive"):
        PreparedSplit(tmp_path, "test")


def test_prepared_archives_hold_browsable_class_folders(tmp_path):
    """Each split is a zip any viewer opens: a folder per class (even an empty one), PNGs inside."""
    make_prepared(tmp_path)
    with zipfile.ZipFile(tmp_path / "val.zip") as archive:
        names = archive.namelist()
        assert names[:2] == ["Female/", "Male/"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        png = archive.read("Male/img000.png")
    assert Image.open(io.BytesIO(png)).size == (SIZE, SIZE)
    assert read_prepared(tmp_path, "val/Male/img000.png") == png


def test_order_examples():
    items = [(Path(f"{i}.png"), i // 10) for i in range(20)]
    train = tfrecords.order_examples(items, "train", 7)
    assert sorted(train, key=items.index) == items and train != items
    assert tfrecords.order_examples(items, "train", 7) == train
    assert tfrecords.order_examples(items, "train", 8) != train
    assert tfrecords.order_examples(items, "val", 7) == items
    assert tfrecords.order_examples(items, "test", 7) == items
    assert items == [(Path(f"{i}.png"), i // 10) for i in range(20)]  # input untouched


@pytest.mark.parametrize(("count", "size", "expected"), [
    (13, 4, [4, 4, 4, 1]), (8, 4, [4, 4]), (3, 4, [3]), (1, 1, [1]), (5, 1, [1] * 5), (0, 4, [0]),
])
def test_shard_sizes(tmp_path, count, size, expected):
    items = [f"example {i}".encode() for i in range(count)]
    names = write_shards(iter(items), count, "train", tmp_path, size)
    assert names == [shard_name("train", i, len(expected)) for i in range(len(expected))]
    shards = [[r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / name))] for name in names]
    assert [len(s) for s in shards] == expected
    assert [x for s in shards for x in s] == items


@pytest.mark.parametrize("given", [2, 4])
def test_write_shards_refuses_another_count(tmp_path, given):
    with pytest.raises(ValueError, match="expected 3"):
        write_shards(iter([b"x"] * given), 3, "val", tmp_path, 2)


def test_write_split(tmp_path):
    make_prepared(tmp_path / "prepared")
    out = tmp_path / "out"
    out.mkdir()
    with PreparedSplit(tmp_path / "prepared", "test") as prepared:
        examples = tfrecords.list_examples(prepared, CLASSES)
        names = tfrecords.write_split(examples, prepared, out, 4)
    assert names == ["test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord"]
    assert sorted(p.name for p in out.iterdir()) == names
    records = [r.numpy() for r in tf.data.TFRecordDataset([str(out / n) for n in names])]
    assert len(records) == 6
    decoded = [decode_example(tf.constant(r), SIZE) for r in records]
    assert [d["filename"].numpy().decode() for d in decoded] == [file for file, _ in examples]
    assert [int(d["label"].numpy()) for d in decoded] == [0, 0, 1, 1, 1, 1]


# --- the whole stage, then load_split ---------------------------------------------------------

def test_stage_writes_shards_and_manifest(stage_output):
    manifest = read_manifest(stage_output)
    assert manifest["image_size"] == SIZE
    assert manifest["classes"] == CLASSES
    for split, per_class in RECORD_COUNTS.items():
        entry = manifest["splits"][split]
        assert entry["count"] == sum(per_class.values())
        assert entry["per_class"] == per_class
        total = -(-entry["count"] // SHARD_SIZE)
        assert entry["shards"] == [shard_name(split, i, total) for i in range(total)]
    files = sorted(p.name for p in stage_output.iterdir())
    listed = sorted(n for s in manifest["splits"].values() for n in s["shards"]) + [MANIFEST_NAME]
    assert files == sorted(listed)
    assert not [p for p in stage_output.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_shard_sizes_on_disk(stage_output):
    manifest = read_manifest(stage_output)
    for split, entry in manifest["splits"].items():
        sizes = [sum(1 for _ in tf.data.TFRecordDataset(str(stage_output / n))) for n in entry["shards"]]
        assert all(size <= SHARD_SIZE for size in sizes), (split, sizes)
        assert all(size == SHARD_SIZE for size in sizes[:-1])
        assert sum(sizes) == entry["count"]
    assert len(manifest["splits"]["train"]["shards"]) == 4  # 13 examples, 4 a shard


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_load_split_counts_images_and_labels(stage_output, split):
    images, labels, files = collect(stage_output, split)
    total = sum(RECORD_COUNTS[split].values())
    assert images.shape == (total, SIZE, SIZE, 3)
    assert images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    assert images.max() > 1  # still 0-255, not rescaled
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert int(labels.sum()) == RECORD_COUNTS[split]["Male"]
    assert len(set(files)) == total
    for image, label, name in zip(images, labels, files):
        part_split, part_class, file = name.split("/")
        assert part_split == split
        assert label == CLASSES.index(part_class)
        index = int(file[3:6])
        # The pixels are those of that very file.
        assert np.array_equal(image, np.asarray(Image.open(io.BytesIO(face_png(split, int(label), index))), dtype=np.float32))


def test_load_split_without_filenames(stage_output):
    batches = list(load_split(stage_output, "val", 4))
    assert [len(batch) for batch in batches] == [2, 2]
    assert [batch[0].shape[0] for batch in batches] == [4, 1]
    assert batches[0][0].shape[1:] == (SIZE, SIZE, 3)


def test_train_order_is_shuffled_and_eval_order_sorted(stage_output):
    _, labels, files = collect(stage_output, "train")
    assert labels.tolist() != sorted(labels.tolist())  # not class-sorted
    assert files != sorted(files)
    for split in ("val", "test"):
        _, labels, files = collect(stage_output, split)
        assert files == sorted(files)
        assert labels.tolist() == sorted(labels.tolist())


def test_same_seed_same_bytes(stage_output, tmp_path):
    again = run_tfrecords(make_tfrecords_project(tmp_path / "again"))
    assert hashes(again) == hashes(stage_output)
    assert collect(again, "train")[2] == collect(stage_output, "train")[2]


def tfrecords_in_new_processes(projects: list[Path]) -> list[dict[str, str]]:
    """`python -m stages.tfrecords` in each project folder, each in its own fresh Python process (run
    side by side); the hashes of each output folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONHASHSEED", None)
    runs = [subprocess.Popen([sys.executable, "-m", "stages.tfrecords"], cwd=project, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for project in projects]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    return [hashes(project / "data" / "tfrecords") for project in projects]


@pytest.mark.e2e
def test_same_bytes_in_separate_processes(stage_output, tmp_path):
    """Same prepared tree and params, separate processes: byte-identical shards. Protobuf
    orders an Example's feature map differently from process to process unless told to be deterministic;
    three processes leave little chance of a lucky match when it is not."""
    projects = [make_tfrecords_project(tmp_path / f"process{index}") for index in range(3)]
    first, *others = tfrecords_in_new_processes(projects)
    assert len(first) == len(hashes(stage_output)) > 3
    for other in others:
        assert other == first
    assert first == hashes(stage_output)  # and the same as this process wrote


def test_other_seed_other_train_order(stage_output, tmp_path):
    project = make_tfrecords_project(tmp_path / "other")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tfrecords"]["seed"] = RECORD_SEED + 1
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    other = run_tfrecords(project)
    order = collect(other, "train")[2]
    assert order != collect(stage_output, "train")[2]
    assert sorted(order) == sorted(collect(stage_output, "train")[2])
    assert collect(other, "val")[2] == collect(stage_output, "val")[2]


def test_load_split_shuffle_seed_reorders_same_examples(stage_output):
    plain = collect(stage_output, "train")[2]
    shuffled = collect(stage_output, "train", shuffle=(3, 4096))[2]
    assert sorted(shuffled) == sorted(plain)
    assert shuffled != plain


def test_one_shard_when_shard_size_is_large(tmp_path):
    out = run_tfrecords(make_tfrecords_project(tmp_path / "big", shard_size=2000))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [len(manifest["splits"][s]["shards"]) for s in ("train", "val", "test")] == [1, 1, 1]
    assert manifest["splits"]["train"]["shards"] == ["train-00000-of-00001.tfrecord"]


def test_rerun_replaces_old_output(tmp_path):
    project = make_tfrecords_project(tmp_path / "p", shard_size=2)
    out = run_tfrecords(project)
    assert len(read_manifest(out)["splits"]["train"]["shards"]) == 7
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tfrecords"]["shard_size"] = 100
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    out = run_tfrecords(project)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST_NAME] + [shard_name(s, 0, 1) for s in ("train", "val", "test")])


def test_load_split_knows_its_length(stage_output):
    """Keras then knows an epoch's length: no "input ran out of data" warning after the first one."""
    batches = load_split(stage_output, "train", 5, shuffle=(1, 100))
    total = sum(RECORD_COUNTS["train"].values())
    assert int(tf.data.experimental.cardinality(batches)) == -(-total // 5)


def test_reading_runs_without_the_autotuning_thread(stage_output):
    """TensorFlow 2.21's autotuning thread made each pass's end wait, idle, for its sleep (up to a minute):
    every stage reads through load_split or load_features, and augmentation keeps their options."""
    from stages.modelkit.augmentation import AugmentationParams, augmented

    batches = load_split(stage_output, "train", 5)
    assert batches.options().autotune.enabled is False
    settings = AugmentationParams(flip=True, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0, brightness=0.0)
    assert augmented(batches, settings, seed=1).options().autotune.enabled is False
    assert sum(len(labels) for _, labels in batches) == sum(RECORD_COUNTS["train"].values())


@pytest.mark.parametrize("split", ["train", "val"])
def test_cached_split_is_whole_before_anything_reads_it(stage_output, tmp_path, split):
    """load_split(cache=True) returns with every example decoded in memory: later passes, from any
    iterator (Keras draws and drops part-read ones under a tf.distribute strategy), only read the
    cache, so none of them can leave it short. Here with the shards gone, they still see every image."""
    shuffle = (3, 4096) if split == "train" else None
    cached = load_split(stage_output, split, 4, shuffle=shuffle, with_filenames=True, cache=True)
    expected = sorted(collect(stage_output, split)[2])
    shards = TfrecordsManifest.read_from(stage_output).splits[split].shards
    for name in shards:
        (stage_output / name).rename(tmp_path / name)
    try:
        for _ in range(2):
            dropped = iter(cached)
            next(dropped)
            del dropped
            files = [name.decode("utf-8") for _, _, batch in cached for name in batch.numpy()]
            assert sorted(files) == expected
    finally:
        for name in shards:
            (tmp_path / name).rename(stage_output / name)
