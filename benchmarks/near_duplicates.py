"""prepare's near-duplicate check, measured: which copies of a face it finds, how many pairs of distinct
faces it takes for copies, and what it costs prepare.

    python -m benchmarks.near_duplicates [--scale 1.0] [--workdir /tmp/facegender-near-duplicates]

1. Faces: the offline sample generator (stages/images/offline_sample.py) writes a corpus the shape of
   the real data times --scale (benchmarks/bench.py's corpus_params: scale 1 is 39,583 images, the test
   photos 250-640 px) into --workdir. Every face in it is drawn on its own, so no two are copies.
   Each is loaded as prepare loads it (reading.load_rgb) and hashed (near_duplicates.image_hashes).
2. False pairs: every pair of distinct faces within the distance, compared whole (not through the
   search prepare uses, which the counts check): plainly, and one's mirror image against the other.
3. Recall: --copies faces, evenly over the corpus, each copied every way below, written as a file and
   loaded as prepare loads it. Recall: the share of copies within the distance of their original
   (a mirrored copy through its mirror hash, as prepare checks a training image).
4. Candidates: ImageHash's other hashes on --candidates faces and their copies, each at the largest
   distance that takes no pair of those faces: why phash of 16x16 bits.
5. Cost: prepare() on the corpus without the check (near_duplicate_distance 0) and with it, alternated
   --repeats times; the share is the difference over prepare's own time. Its parts: the hashes in the
   workers (per image, beside the rest of converting it) and the search in the main process.

Writes benchmarks/near_duplicates.json, with the machine (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np
from PIL import Image

from benchmarks.bench import corpus_params
from benchmarks.machine import machine
from stages import prepare
from stages.common.config import SampleParams, load_params
from stages.common.distribute import cpu_share
from stages.images import near_duplicates
from stages.images.catalogue import Catalogue
from stages.images.near_duplicates import HASH_BYTES, as_words, image_hashes
from stages.images.offline_sample import generate
from stages.images.reading import DEFAULT_MAX_PIXELS, UnreadableImage, is_image_file, load_rgb, open_rgb

RESULTS = Path(__file__).resolve().parent / "near_duplicates.json"
# The distances the tables go through, with the chosen one (params.yaml's prepare.near_duplicate_distance).
DISTANCES = list(range(0, 33, 2))
# What the results file's figures mean, written into it beside them.
NOTES = [
    "recall: the share of copies of each kind within `distance` bits of their original, each copy written as a "
    "file and loaded as prepare loads it (100x100). Mirrored copies count as copies (the models train on random "
    "flips): they are matched through the mirror image's hash, as prepare matches them; 'mirrored, without the "
    "mirror hash' shows that the plain hash alone never finds them.",
    "false_pairs: pairs of distinct faces of the corpus (every face is drawn on its own) within each distance, all "
    "of them compared: 'plain', hash against hash; 'mirrored', a face's mirror hash against another's hash. The "
    "sample's faces are drawn from one template and differ most in colour, which the grey hash does not see: "
    "distinct photographs are likely further apart.",
    "candidates: each hash at the largest distance at which none of the --candidates faces pair up, with its recall "
    "per kind there; microseconds_per_image one image after another in a loop, apart from prepare.",
    "cost.prepare: prepare() on the whole corpus without the check (near_duplicate_distance 0) and with it, "
    "alternated, medians of the repeats; the share is the difference over the time without. Measured at this "
    "scale, not extrapolated. cost.parts: a worker's time per image without hashes and with them (the fastest of "
    "three passes over the same faces), the same with ImageHash's phash called on each image and its mirror "
    "image instead, and the main process's catalogue (on arrival) and tally (at the end) over every face.",
]


def _crop(image: Image.Image, share: float) -> Image.Image:
    """`share` of the width and of the height off each border."""
    dx, dy = round(image.width * share), round(image.height * share)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)


# How a copy is made from the decoded original, and how it is saved: PNG keeps only the change named,
# JPEG at the quality named. A mirrored copy is matched through its mirror hash.
COPIES: dict[str, tuple[Callable[[Image.Image], Image.Image], int | None]] = {
    "resized 0.5x": (lambda image: _scaled(image, 0.5), None),
    "resized 0.75x": (lambda image: _scaled(image, 0.75), None),
    "resized 1.5x": (lambda image: _scaled(image, 1.5), None),
    "resized 2x": (lambda image: _scaled(image, 2.0), None),
    "JPEG quality 90": (lambda image: image, 90),
    "JPEG quality 70": (lambda image: image, 70),
    "JPEG quality 50": (lambda image: image, 50),
    "JPEG quality 30": (lambda image: image, 30),
    "resized 0.5x, JPEG quality 70": (lambda image: _scaled(image, 0.5), 70),
    "cropped 2%": (lambda image: _crop(image, 0.02), None),
    "cropped 5%": (lambda image: _crop(image, 0.05), None),
    "cropped 10%": (lambda image: _crop(image, 0.10), None),
    "mirrored": (lambda image: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), None),
}
MIRRORED = "mirrored"

# ImageHash's hashes to compare, each on the 100x100 RGB pixels prepare keeps. The chosen one is
# ImageHash's phash of the bilinear-reduced grey image, as near_duplicates.image_hashes computes it.
CHOSEN = "phash 16x16 of the bilinear-reduced image (chosen)"
CANDIDATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    CHOSEN: lambda pixels: np.unpackbits(np.frombuffer(image_hashes([pixels])[0][:HASH_BYTES], np.uint8)),
    "phash 16x16 (its own Lanczos reduction)": lambda pixels: imagehash.phash(Image.fromarray(pixels), 16).hash.ravel(),
    "phash 16x16 of the box-reduced image": lambda pixels: imagehash.phash(
        Image.fromarray(pixels).convert("L").resize((64, 64), Image.Resampling.BOX), 16).hash.ravel(),
    "phash 8x8": lambda pixels: imagehash.phash(Image.fromarray(pixels), 8).hash.ravel(),
    "dhash 16x16": lambda pixels: imagehash.dhash(Image.fromarray(pixels), 16).hash.ravel(),
    "dhash 8x8": lambda pixels: imagehash.dhash(Image.fromarray(pixels), 8).hash.ravel(),
    "average hash 16x16": lambda pixels: imagehash.average_hash(Image.fromarray(pixels), 16).hash.ravel(),
    "wavelet hash 16x16": lambda pixels: imagehash.whash(Image.fromarray(pixels), 16).hash.ravel(),
}


def write_corpus(root: Path, scale: float) -> SampleParams:
    """The offline sample at `scale` of the real data under root/raw (trainval, test), unless already there."""
    sample = load_params().download.sample.model_copy(update=corpus_params(scale))
    stamp = root / "corpus.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == sample.model_dump():
        return sample
    shutil.rmtree(root / "raw", ignore_errors=True)
    for name in ("trainval", "test"):
        generate(name, root / "raw" / name, sample)
    stamp.write_text(json.dumps(sample.model_dump()))
    return sample


def face_files(raw: Path) -> list[Path]:
    """Every face prepare would read: the class folders' image files (not trainval's unlabelled Validation)."""
    return sorted(path for path in raw.rglob("*") if path.is_file() and is_image_file(path)
                  and "Validation" not in path.parts)


def _load_and_hash(path: Path) -> tuple[np.ndarray, bytes] | None:
    try:
        pixels = load_rgb(path, 100)
    except UnreadableImage:
        return None
    return pixels, image_hashes([pixels])[0]


def hash_faces(files: list[Path]) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The readable faces, their hashes and their mirror images' hashes ([n, words] each)."""
    with multiprocessing.get_context("fork").Pool(cpu_share()) as pool:
        results = pool.map(_load_and_hash, files, chunksize=64)
    kept = [(path, found[1]) for path, found in zip(files, results) if found is not None]
    plain = b"".join(hashes[:HASH_BYTES] for _, hashes in kept)
    mirrored = b"".join(hashes[HASH_BYTES:] for _, hashes in kept)
    return [path for path, _ in kept], as_words(plain), as_words(mirrored)


def pair_histogram(first: np.ndarray, second: np.ndarray | None, block: int = 256) -> np.ndarray:
    """How many pairs lie at each distance 0..bits, compared whole (i < j within `first` when `second` is
    None; a face's mirror hash and its own hash left out when `second` is the same faces' hashes)."""
    same = second is None
    second = first if same else second
    histogram = np.zeros(first.shape[1] * 64 + 1, np.int64)
    for start in range(0, len(first), block):
        rows = first[start:start + block]
        apart = np.zeros((len(rows), len(second)), np.uint16)
        for word in range(first.shape[1]):
            apart += np.bitwise_count(rows[:, word, None] ^ second[None, :, word])
        index = np.arange(start, start + len(rows))[:, None]
        columns = np.arange(len(second))[None, :]
        keep = columns > index if same else columns != index
        histogram += np.bincount(apart[keep], minlength=len(histogram))
    return histogram


def false_pairs(plain: np.ndarray, mirrored: np.ndarray, distances: list[int]) -> dict:
    """Pairs of distinct faces within each distance: plainly, and a face's mirror image against another."""
    as_is = np.cumsum(pair_histogram(plain, None))
    through_mirror = np.cumsum(pair_histogram(mirrored, plain))
    return {"faces": len(plain), "pairs": len(plain) * (len(plain) - 1) // 2,
            "closest_plain": int(np.argmax(as_is > 0)), "closest_mirrored": int(np.argmax(through_mirror > 0)),
            "within": {str(d): {"plain": int(as_is[d]), "mirrored": int(through_mirror[d])} for d in distances}}


def copy_pixels(original: Image.Image, kind: str, folder: Path) -> np.ndarray:
    """The copy of `original` of this kind, written as a file and loaded as prepare loads it."""
    change, quality = COPIES[kind]
    copied = change(original)
    path = folder / ("copy.png" if quality is None else "copy.jpg")
    copied.save(path, **({"format": "PNG"} if quality is None else {"format": "JPEG", "quality": quality}))
    return load_rgb(path, 100)


def copies_of(files: list[Path], folder: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per kind of copy: (the original's pixels, the copy's pixels) for each file."""
    pairs: dict[str, list] = {kind: [] for kind in COPIES}
    for path in files:
        original = open_rgb(path)
        pixels = load_rgb(path, 100)
        for kind in COPIES:
            pairs[kind].append((pixels, copy_pixels(original, kind, folder)))
    return pairs


def _flipped(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, ::-1])


def copy_distances(pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]], hasher: Callable[[np.ndarray], np.ndarray],
                   mirror_hasher: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per kind, each copy's distance from its original. A mirrored copy: its mirror image's hash (as
    prepare checks it; mirror_hasher, else the hash of the copy flipped back), and, apart, its own."""
    mirror_hasher = mirror_hasher or (lambda pixels: hasher(_flipped(pixels)))
    originals = [hasher(original) for original, _ in next(iter(pairs.values()))]
    found = {}
    for kind, items in pairs.items():
        turn = mirror_hasher if kind == MIRRORED else hasher
        found[kind] = np.array([np.count_nonzero(hashed != turn(copy)) for hashed, (_, copy) in zip(originals, items)])
    found[f"{MIRRORED}, without the mirror hash"] = np.array(
        [np.count_nonzero(hashed != hasher(copy)) for hashed, (_, copy) in zip(originals, pairs[MIRRORED])])
    return found


def recall(distances: dict[str, np.ndarray], within: int) -> dict[str, float]:
    return {kind: round(float((found <= within).mean()), 3) for kind, found in distances.items()}


def candidates(faces: list[Path], pairs: dict[str, list], count: int) -> dict:
    """Each candidate hash: its closest pair of `count` distinct faces, and recall per kind one bit below it."""
    chosen = faces[:: max(1, len(faces) // count)][:count]
    pixels = [found[0] for found in map(_load_and_hash, chosen) if found is not None]
    results = {}
    for name, hasher in CANDIDATES.items():
        started = time.perf_counter()
        bits = np.array([hasher(face) for face in pixels])
        per_image_us = (time.perf_counter() - started) / len(pixels) * 1e6
        packed = np.packbits(bits, axis=1)
        packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
        histogram = pair_histogram(packed.view(np.uint64), None)
        closest = int(np.argmax(histogram > 0))
        within = max(0, closest - 1)
        results[name] = {"bits": int(bits.shape[1]), "microseconds_per_image": round(per_image_us),
                         "closest_distinct_pair": closest, "largest_distance_with_no_false_pair": within,
                         "recall_there": recall(copy_distances(pairs, hasher), within)}
    return {"faces": len(pixels), "hashes": results}


def cpu_seconds() -> float:
    """This process and its waited-for children (prepare's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_prepare(raw: Path, within: int, repeats: int) -> dict:
    """prepare() on the corpus without the check and with it at `within`, alternated: wall and CPU each."""
    params = load_params().prepare
    runs: dict[int, list[tuple[float, float]]] = {0: [], within: []}
    summary = None
    for _ in range(repeats):
        for distance in (0, within):
            with tempfile.TemporaryDirectory() as out:
                wall, cpu = time.perf_counter(), cpu_seconds()
                summary = prepare.prepare(raw, Path(out), params.model_copy(update={"near_duplicate_distance": distance}))
                runs[distance].append((time.perf_counter() - wall, cpu_seconds() - cpu))
    without = statistics.median(wall for wall, _ in runs[0])
    with_check = statistics.median(wall for wall, _ in runs[within])
    cpu_without = statistics.median(cpu for _, cpu in runs[0])
    cpu_with = statistics.median(cpu for _, cpu in runs[within])
    return {"repeats": repeats, "workers": cpu_share(),
            "without_check": {"wall_s": round(without, 2), "cpu_s": round(cpu_without, 2)},
            "with_check": {"wall_s": round(with_check, 2), "cpu_s": round(cpu_with, 2)},
            "share_of_prepare_wall_pct": round(100 * (with_check - without) / without, 1),
            "share_of_prepare_cpu_pct": round(100 * (cpu_with - cpu_without) / cpu_without, 1),
            "pairs_found_in_the_corpus": {key: value.exact + value.near for key, value in summary.duplicates.items()}}


def _one_by_one_with_imagehash(sources: list[Path]) -> None:
    """Converting images with ImageHash's own phash called on each (and on its mirror image), for comparison."""
    for source in sources:
        _, pixels = prepare._convert_pixels(source, 100, DEFAULT_MAX_PIXELS)
        if pixels is not None:
            imagehash.phash(Image.fromarray(pixels), 16)
            imagehash.phash(Image.fromarray(_flipped(pixels)), 16)


def time_parts(faces: list[Path], plain: np.ndarray, mirrored: np.ndarray, within: int, sample: int) -> dict:
    """The check's parts. In a worker: converting batches of images without hashes, with them, and with
    ImageHash called on each image instead, on `sample` faces. In the main process: the
    catalogue (each image on arrival, training images against the held-out ones) and its tally."""
    chosen = faces[:: max(1, len(faces) // sample)][:sample]
    ways = {"without": lambda batch: prepare.convert_batch((batch, 100, DEFAULT_MAX_PIXELS, False)),
            "with": lambda batch: prepare.convert_batch((batch, 100, DEFAULT_MAX_PIXELS, True)),
            "imagehash": _one_by_one_with_imagehash}
    # Each way over all the faces, in turn, three times; its fastest pass (the least disturbed by others).
    passes: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(3):
        for way, run in ways.items():
            started = time.perf_counter()
            for start in range(0, len(chosen), prepare.BATCH):
                run(chosen[start:start + prepare.BATCH])
            passes[way].append(time.perf_counter() - started)
    spent = {way: min(seconds) for way, seconds in passes.items()}
    catalogue = Catalogue(within)
    splits = ["train" if "Train" in path.parts else "val" if "Test" in path.parts else "test" for path in faces]
    order = sorted(range(len(faces)), key=lambda row: prepare.CONVERSION_ORDER.index(splits[row]))
    started = time.perf_counter()
    for row in order:
        catalogue.add(splits[row], str(faces[row]), str(row), plain[row].tobytes() + mirrored[row].tobytes())
    arrived = time.perf_counter() - started
    started = time.perf_counter()
    catalogue.tally()
    tallied = time.perf_counter() - started
    per_image = {way: seconds / len(chosen) * 1e3 for way, seconds in spent.items()}
    return {"images_timed": len(chosen), "convert_ms_per_image": round(per_image["without"], 3),
            "hashes_ms_per_image": round(per_image["with"] - per_image["without"], 3),
            "imagehash_one_by_one_ms_per_image": round(per_image["imagehash"] - per_image["without"], 3),
            "images": len(faces), "catalogue_on_arrival_s": round(arrived, 2), "tally_s": round(tallied, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="the corpus's size over the real data's")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/facegender-near-duplicates"))
    parser.add_argument("--copies", type=int, default=300, help="faces copied every way, for recall")
    parser.add_argument("--candidates", type=int, default=2000, help="faces the other hashes are compared on")
    parser.add_argument("--repeats", type=int, default=2, help="prepare runs with and without the check, each")
    args = parser.parse_args()
    within = load_params().prepare.near_duplicate_distance
    print(f"near duplicates: corpus at scale {args.scale} in {args.workdir}", flush=True)
    write_corpus(args.workdir, args.scale)
    raw = args.workdir / "raw"
    faces, plain, mirrored = hash_faces(face_files(raw))
    print(f"near duplicates: {len(faces)} faces hashed; false pairs", flush=True)
    distinct = false_pairs(plain, mirrored, sorted({*DISTANCES, within}))
    print("near duplicates: copies", flush=True)
    copied = faces[:: max(1, len(faces) // args.copies)][:args.copies]
    with tempfile.TemporaryDirectory() as folder:
        pairs = copies_of(copied, Path(folder))
    distances = copy_distances(pairs, CANDIDATES[CHOSEN], lambda pixels: np.unpackbits(
        np.frombuffer(image_hashes([pixels])[0][HASH_BYTES:], np.uint8)))
    print("near duplicates: the other hashes", flush=True)
    compared = candidates(faces, pairs, args.candidates)
    print("near duplicates: cost", flush=True)
    parts = time_parts(faces, plain, mirrored, within, sample=min(1000, len(faces)))
    cost = time_prepare(raw, within, args.repeats)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "scale": args.scale, "hash": f"ImageHash {imagehash.__version__}'s phash, {near_duplicates.HASH_SIZE}x"
                                     f"{near_duplicates.HASH_SIZE} bits, of the grey image reduced bilinearly "
                                     "(stages/images/near_duplicates.py)",
        "images": len(faces), "pairs_of_images": len(faces) * (len(faces) - 1) // 2,
        "distance": within,
        "notes": NOTES,
        "recall": recall(distances, within),
        "copies_per_kind": len(copied),
        "copy_distance_percentiles": {kind: {p: int(np.percentile(found, int(p[1:]))) for p in ("p50", "p90", "p100")}
                                      for kind, found in distances.items()},
        "recall_by_distance": {str(d): recall(distances, d) for d in sorted({*DISTANCES, within})},
        "false_pairs": distinct,
        "candidates": compared,
        "cost": {"prepare": cost, "parts": parts},
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("recall", "distance")}, indent=1))
    print(f"near duplicates: false pairs at {within}: {distinct['within'].get(str(within))}; "
          f"cost {cost['share_of_prepare_wall_pct']}% of prepare's wall time; {RESULTS}")


if __name__ == "__main__":
    main()
