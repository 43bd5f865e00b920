"""The near-duplicate check: the hash (ImageHash's phash, bit for bit), the search for close pairs, and
prepare dropping and counting a training image that copies a held-out one."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from stages import prepare
from stages.common.config import SampleParams
from stages.contracts.prepared import duplicate_keys, duplicates_figure
from stages.images import offline_sample
from stages.images.catalogue import Catalogue
from stages.images.near_duplicates import HASH_BYTES, HashIndex, as_words, close_pairs, image_hashes, reduced_grey
from stages.images.offline_sample import TRAINVAL_STUDIO, draw_face
from stages.images.reading import load_rgb

SAMPLE = SampleParams(seed=7, train_per_class=6, val_per_class=5, unlabeled=0,
                      test_images=10, test_male_fraction=0.5, test_sizes=[64, 200])


def faces(count: int, seed: int = 3) -> list[Image.Image]:
    """Distinct synthetic faces (100x100), as the offline sample draws them."""
    rng = np.random.default_rng(seed)
    return [draw_face(rng, ("Female", "Male")[index % 2], TRAINVAL_STUDIO) for index in range(count)]


def as_loaded(image: Image.Image, folder: Path, name: str, **save) -> np.ndarray:
    """The image saved as a file and loaded as prepare loads it."""
    path = folder / name
    image.save(path, **save)
    return load_rgb(path, 100)


def distance(first: bytes, second: bytes) -> int:
    return int(np.bitwise_count(as_words(first) ^ as_words(second)).sum())


@pytest.fixture(scope="module")
def within(repo_params) -> int:
    return repo_params.prepare.near_duplicate_distance


# --- the hash -----------------------------------------------------------------------------------

def test_the_hash_is_imagehash_phash_and_the_second_that_of_the_mirror_image():
    pixels = [np.asarray(face) for face in faces(12)]
    for image, hashes in zip(pixels, image_hashes(pixels)):
        grey = Image.fromarray(reduced_grey(image))
        plain = np.packbits(imagehash.phash(grey, 16).hash).tobytes()
        mirrored = np.packbits(imagehash.phash(grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 16).hash).tobytes()
        assert hashes == plain + mirrored


def test_resized_and_reencoded_copies_are_found_and_distinct_faces_left_alone(tmp_path, within):
    originals = faces(30)
    hashes = image_hashes([as_loaded(face, tmp_path, "original.png") for face in originals])
    half = image_hashes([as_loaded(face.resize((50, 50), Image.Resampling.LANCZOS), tmp_path, "half.png")
                         for face in originals])
    double = image_hashes([as_loaded(face.resize((200, 200), Image.Resampling.BICUBIC), tmp_path, "double.png")
                           for face in originals])
    reencoded = image_hashes([as_loaded(face, tmp_path, "q70.jpg", quality=70) for face in originals])
    for copies in (half, double, reencoded):    # benchmarks/near_duplicates.json has the recall of each kind
        found = [distance(h[:HASH_BYTES], c[:HASH_BYTES]) <= within for h, c in zip(hashes, copies)]
        assert np.mean(found) >= 0.9
    apart = [distance(first[:HASH_BYTES], second[:HASH_BYTES]) for index, first in enumerate(hashes)
             for second in hashes[index + 1:]]
    assert min(apart) > within


def test_a_mirrored_copy_is_found_through_its_mirror_hash(tmp_path, within):
    original, = image_hashes([as_loaded(faces(1)[0], tmp_path, "original.png")])
    flipped, = image_hashes([as_loaded(faces(1)[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path, "f.png")])
    assert distance(flipped[HASH_BYTES:], original[:HASH_BYTES]) <= within
    assert distance(flipped[:HASH_BYTES], original[:HASH_BYTES]) > within     # not plainly


# --- the search ---------------------------------------------------------------------------------

def planted(count: int, near: int, seed: int = 0) -> np.ndarray:
    """Random hashes, the last `near` of them copies of the first ones with a few bits changed."""
    rng = np.random.default_rng(seed)
    bits = rng.random((count, HASH_BYTES * 8)) < 0.5
    for index in range(near):
        bits[count - near + index] = bits[index]
        bits[count - near + index, rng.choice(HASH_BYTES * 8, index % 15, replace=False)] ^= True
    return as_words(np.packbits(bits, axis=1).tobytes())


def every_pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.bitwise_count(first[:, None, :] ^ second[None, :, :]).sum(axis=2)


@pytest.mark.parametrize("within", [0, 3, 12, 20])
def test_close_pairs_finds_what_comparing_every_pair_finds(within):
    hashes = planted(300, 40)
    found = close_pairs(hashes, None, within)
    apart = every_pair(hashes, hashes)
    rows, columns = np.nonzero(np.triu(apart <= within, 1))
    assert len(rows) > 0 or within == 0
    assert found.first.tolist() == rows.tolist() and found.second.tolist() == columns.tolist()
    assert found.distance.tolist() == apart[rows, columns].tolist()
    across = close_pairs(hashes[:150], hashes[150:], within)
    rows, columns = np.nonzero(every_pair(hashes[:150], hashes[150:]) <= within)
    assert across.first.tolist() == rows.tolist() and across.second.tolist() == columns.tolist()


def test_the_index_gives_the_nearest_within_the_distance_or_nothing():
    hashes = planted(300, 40)
    index = HashIndex(hashes[:260], 12)
    apart = every_pair(hashes[260:], hashes[:260])
    for query, row in zip(hashes[260:], apart):
        expected = (int(row.argmin()), int(row.min())) if row.min() <= 12 else None
        assert index.nearest(query) == expected


def test_the_catalogue_counts_pairs_by_kind_and_refuses_held_out_images_after_training_ones():
    far = bytes([0xF0] * HASH_BYTES)       # every mirror image's hash: far from every plain one
    hashes = [bytes(HASH_BYTES) + far, bytes([1]) + bytes(HASH_BYTES - 1) + far, bytes([255] * HASH_BYTES) + far]
    catalogue = Catalogue(4)
    assert catalogue.add("val", "v.jpg", "a", hashes[0]) is None
    assert catalogue.add("test", "t.jpg", "a", hashes[0]) is None           # same pixels as v.jpg
    exact = catalogue.add("train", "x.jpg", "a", hashes[0])
    near = catalogue.add("train", "y.jpg", "b", hashes[1])                  # one bit from v.jpg
    assert (exact.row, exact.exact) == (0, True) and (near.row, near.exact, near.distance) == (0, False, 1)
    assert catalogue.add("train", "z.jpg", "c", hashes[2]) is None
    with pytest.raises(ValueError, match="before the training ones"):
        catalogue.add("val", "late.jpg", "d", hashes[2])
    counted = catalogue.tally()
    assert list(counted) == duplicate_keys()
    assert {key: (found.exact, found.near) for key, found in counted.items() if found.exact or found.near} == {
        "train-train": (0, 1), "train-val": (1, 1), "train-test": (1, 1), "val-test": (1, 0)}
    assert [(pair.first, pair.second, pair.distance) for pair in counted["train-val"].examples] == [
        ("y.jpg", "v.jpg", 1), ("x.jpg", "v.jpg", 0)]


# --- prepare ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A small sample whose training set holds a resized, re-encoded copy of a validation image, and a
    mirrored copy of another: (raw, the validation image, its copy in train)."""
    raw = tmp_path_factory.mktemp("leaky")
    for name in ("trainval", "test"):
        offline_sample.generate(name, raw / name, SAMPLE)
    val = raw / "trainval/Test/Female/00001.jpg"
    copy = raw / "trainval/Train/Female/copied.jpg"
    Image.open(val).resize((80, 80), Image.Resampling.LANCZOS).save(copy, quality=70)
    mirrored = raw / "trainval/Train/Male/mirrored.png"
    Image.open(raw / "trainval/Test/Male/00002.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    return raw, val, copy


def test_a_near_copy_of_a_val_image_is_dropped_from_train_and_counted(leaky, repo_params, tmp_path):
    raw, val, copy = leaky
    summary = prepare.prepare(raw, tmp_path, repo_params.prepare, workers=1)
    assert summary.counts["train"]["total"] == 2 * SAMPLE.train_per_class
    assert summary.duplicates["train-val"].near == 2 and summary.duplicates["train-val"].exact == 0
    assert summary.duplicates_dropped == 2
    reasons = {item.file: item.reason for item in summary.skipped}
    assert f"from val image {val}'s" in reasons[str(copy)] and "bits" in reasons[str(copy)]
    assert "the mirror image of val image" in reasons[str(raw / "trainval/Train/Male/mirrored.png")]
    examples = summary.duplicates["train-val"].examples
    assert {(pair.first, pair.second) for pair in examples} >= {(str(copy), str(val))}
    assert [pair.mirrored for pair in examples].count(True) == 1
    assert sum(found.exact + found.near for key, found in summary.duplicates.items() if key != "train-val") == 0
    figure = Image.open(duplicates_figure(tmp_path))     # the examples side by side, for the report
    assert figure.width >= 4 * 100 and figure.height >= 100


def test_with_drop_duplicates_false_the_copy_is_kept_and_still_counted(leaky, repo_params, tmp_path):
    raw, _, copy = leaky
    params = repo_params.prepare.model_copy(update={"drop_duplicates": False})
    summary = prepare.prepare(raw, tmp_path, params, workers=1)
    assert summary.counts["train"]["total"] == 2 * SAMPLE.train_per_class + 2
    assert summary.duplicates["train-val"].near == 2 and summary.duplicates_dropped == 0
    assert str(copy) not in {item.file for item in summary.skipped}


def test_at_distance_0_only_identical_pixels_count(leaky, repo_params, tmp_path):
    raw, val, _ = leaky
    exact = raw.parent / "exact"
    shutil.copytree(raw, exact)
    shutil.copy(exact / "trainval/Test/Female/00001.jpg", exact / "trainval/Train/Female/same.jpg")
    params = repo_params.prepare.model_copy(update={"near_duplicate_distance": 0})
    summary = prepare.prepare(exact, tmp_path, params, workers=1)
    assert (summary.duplicates["train-val"].exact, summary.duplicates["train-val"].near) == (1, 0)
    assert summary.duplicates_dropped == 1 and summary.near_duplicate_distance == 0
    assert "mirror" not in " ".join(item.reason for item in summary.skipped)
    reasons = {Path(item.file).name: item.reason for item in summary.skipped}
    assert reasons["same.jpg"].startswith("same pixels as val image")


def test_batches_give_the_same_hashes_as_one_image_at_a_time(leaky):
    raw, _, _ = leaky
    sources = sorted((raw / "trainval/Train/Female").glob("*.*"))
    together = prepare.convert_batch((sources, 100, 25_000_000, True))
    alone = [prepare.convert_batch(([source], 100, 25_000_000, True))[0] for source in sources]
    assert together == alone and any(result.hashes for result in together)
    assert prepare.convert(sources[0], 100).png == together[0].png


def test_hashes_stay_out_of_prepare_when_the_distance_is_0(leaky):
    raw, _, _ = leaky
    sources = sorted((raw / "trainval/Train/Female").glob("*.jpg"))[:3]
    assert all(result.hashes is None for result in prepare.convert_batch((sources, 100, 25_000_000, False)))


def test_an_unreadable_image_in_a_batch_leaves_the_others_their_hashes(leaky, tmp_path):
    raw, _, _ = leaky
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    good = sorted((raw / "trainval/Train/Female").glob("*.jpg"))[:2]
    results = prepare.convert_batch(([good[0], broken, good[1]], 100, 25_000_000, True))
    assert [result.reason is None for result in results] == [True, False, True]
    assert results[0].hashes and results[2].hashes and results[1].hashes is None
    assert io.BytesIO(results[0].png).getbuffer().nbytes > 0
