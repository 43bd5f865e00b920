"""Near-duplicate images: a perceptual hash of each prepared image, and the pairs of hashes within a
Hamming distance, found without comparing every pair with every other (prepare's catalogue of the
images it converts, stages/images/catalogue.py, uses both).

The hash, chosen by measurement (benchmarks/near_duplicates.py, results in benchmarks/near_duplicates.json):
ImageHash's phash with 16x16 bits of the grey image, reduced to 64x64 by a bilinear filter. Its 8x8 version
(64 bits) gives some distinct faces of the offline sample the same hash, and ImageHash's dhash, average
hash and wavelet hash keep distinct faces less apart or find resized and re-encoded copies less often.
A mirrored copy counts too (each image also has its mirror image's hash): the models train on random
horizontal flips (params.yaml train.<model>.augmentation.flip), so a mirrored held-out face is that face.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

HASH_SIZE = 16                          # phash's side: 16x16 low-frequency DCT coefficients, one bit each
HASH_BYTES = HASH_SIZE * HASH_SIZE // 8
HASH_WORDS = HASH_BYTES // 8            # a hash as uint64 words, for the distances
# phash reduces the image to HASH_SIZE x 4 pixels a side before its DCT (ImageHash's highfreq_factor).
# Bilinear: as good as phash's own Lanczos on the copies and faces measured, in half the time; a box
# filter is faster still, but Pillow's is not symmetric, and a mirrored copy then hashes apart from
# its original's mirror image.
REDUCED_SIDE = HASH_SIZE * 4
REDUCING_FILTER = Image.Resampling.BILINEAR

# ImageHash's phash (imagehash.phash(grey, HASH_SIZE)) is a DCT-II of the reduced grey image, of which it
# keeps the top-left HASH_SIZE² coefficients, a bit each: above their median or not. Here the same sums
# are two matrix products for a whole batch of images at once, bit for bit ImageHash's
# (tests/test_near_duplicates.py checks): called once per image, ImageHash would cost prepare several
# times as much (benchmarks/near_duplicates.json has both). Rows: scipy's unnormalised DCT-II.
_DCT_ROWS = 2 * np.cos(np.pi * np.arange(HASH_SIZE)[:, None] * (2 * np.arange(REDUCED_SIDE)[None, :] + 1)
                       / (2 * REDUCED_SIDE))
# The mirror image's coefficients are the same with every odd column's sign flipped.
_MIRROR_SIGNS = (-1.0) ** np.arange(HASH_SIZE)


def reduced_grey(pixels: np.ndarray) -> np.ndarray:
    """An RGB uint8 image as phash sees it: grey (Pillow's "L"), REDUCED_SIDE² by REDUCING_FILTER."""
    grey = Image.fromarray(pixels).convert("L").resize((REDUCED_SIDE, REDUCED_SIDE), REDUCING_FILTER)
    return np.asarray(grey)


def image_hashes(images: list[np.ndarray]) -> list[bytes]:
    """Each RGB uint8 image's phash, then its mirror image's: 2 x HASH_BYTES bytes per image."""
    if not images:
        return []
    greys = np.stack([reduced_grey(pixels) for pixels in images]).astype(np.float64)
    low = _DCT_ROWS @ greys @ _DCT_ROWS.T                 # [n, HASH_SIZE, HASH_SIZE]
    both = np.concatenate([low, low * _MIRROR_SIGNS], axis=1).reshape(len(images), 2, -1)
    bits = both > np.median(both, axis=2, keepdims=True)
    return [row.tobytes() for row in np.packbits(bits, axis=2).reshape(len(images), -1)]


def as_words(hashes: bytes | bytearray) -> np.ndarray:
    """Hashes laid end to end (HASH_BYTES each) as an array [n, HASH_WORDS] of uint64."""
    return np.frombuffer(bytes(hashes), dtype=np.uint64).reshape(-1, HASH_WORDS)


def distances(hashes: np.ndarray, one: np.ndarray) -> np.ndarray:
    """Hamming distances [n] between each of `hashes` [n, HASH_WORDS] and `one` [HASH_WORDS]."""
    return np.bitwise_count(hashes ^ one).sum(axis=1, dtype=np.int64)


def _order(chunks: int) -> np.ndarray:
    """The hash's bits dealt into `chunks` runs like cards, run r holding bits r, r + chunks, ...: each run
    then mixes low and high frequencies, and far fewer distinct faces share one than with runs of
    neighbouring bits (the lowest frequencies are much alike between faces)."""
    return np.concatenate([np.arange(run, HASH_BYTES * 8, chunks) for run in range(chunks)])


def _runs(chunks: int) -> list[tuple[int, int]]:
    """Each run's bits [start, stop) in _order(chunks)."""
    edges = np.cumsum([0] + [len(range(run, HASH_BYTES * 8, chunks)) for run in range(chunks)]).tolist()
    return list(zip(edges[:-1], edges[1:]))


def _chunk_keys(hashes: np.ndarray, chunks: int) -> list[np.ndarray]:
    """Each hash's runs of bits as uint64 keys, a run's first bit highest: a list of `chunks` arrays [n]."""
    bits = np.unpackbits(np.ascontiguousarray(hashes).view(np.uint8), axis=1)[:, _order(chunks)]
    keys = []
    for start, stop in _runs(chunks):
        weights = np.left_shift(np.uint64(1), np.arange(stop - start, dtype=np.uint64)[::-1])
        keys.append((bits[:, start:stop].astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64))
    return keys


def _chunks(within: int) -> int:
    """Runs enough that two hashes `within` bits apart agree on one (pigeonhole), and no run over 64 bits."""
    return max(within + 1, HASH_WORDS)


def _same_key_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with first[i] == second[j], by sorting `second` once."""
    order = np.argsort(second, kind="stable")
    ordered = second[order]
    start = np.searchsorted(ordered, first, side="left")
    count = np.searchsorted(ordered, first, side="right") - start
    rows = np.repeat(np.arange(len(first)), count)
    # The k-th match of row i sits at start[i] + k in `ordered`.
    within = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    return rows, order[np.repeat(start, count) + within]


class Pairs(NamedTuple):
    """Pairs (first[i], second[j]) and their Hamming distances, as three aligned arrays."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray


def close_pairs(first: np.ndarray, second: np.ndarray | None, within: int) -> Pairs:
    """Every pair of a hash of `first` and one of `second` at most `within` bits apart, sorted; with
    `second` None, the pairs i < j within `first`.

    Pigeonhole: cut into within + 1 runs of bits, two hashes within that distance agree on a whole
    run, so only the pairs that share a run are compared: a face's hash with the few that share one,
    not with all the others (tens of thousands at the real data's size).
    """
    same = second is None
    second = first if same else second
    found = []
    for keys_first, keys_second in zip(_chunk_keys(first, _chunks(within)), _chunk_keys(second, _chunks(within))):
        rows, columns = _same_key_pairs(keys_first, keys_second)
        if same:
            rows, columns = rows[rows < columns], columns[rows < columns]
        apart = np.bitwise_count(first[rows] ^ second[columns]).sum(axis=1, dtype=np.int64)
        close = apart <= within
        found.append(np.stack([rows[close], columns[close], apart[close]], axis=1))
    # A pair that agrees on several runs is found once per run: kept once.
    pairs = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 3), np.int64)
    return Pairs(pairs[:, 0], pairs[:, 1], pairs[:, 2])


class HashIndex:
    """Hashes to ask, one at a time, for the nearest within a distance (a training image against the
    held-out ones, as it arrives): the same runs of bits as close_pairs, each a dict from key to rows."""

    def __init__(self, hashes: np.ndarray, within: int):
        self.hashes, self.within = hashes, within
        self.order, self.runs = _order(_chunks(within)), _runs(_chunks(within))
        self.tables: list[dict[int, list[int]]] = []
        for keys in _chunk_keys(hashes, len(self.runs)):
            table: dict[int, list[int]] = {}
            for row, key in enumerate(keys.tolist()):
                table.setdefault(key, []).append(row)
            self.tables.append(table)

    def nearest(self, query: np.ndarray) -> tuple[int, int] | None:
        """(row, distance) of the nearest hash at most `within` bits from `query` (the first row on a tie),
        or None."""
        # One hash: its keys from a Python integer, the same as _chunk_keys's and many times faster for one.
        dealt = np.packbits(np.unpackbits(np.ascontiguousarray(query).view(np.uint8))[self.order])
        whole, bits = int.from_bytes(dealt.tobytes(), "big"), HASH_BYTES * 8
        keys = [(whole >> (bits - stop)) & ((1 << (stop - start)) - 1) for start, stop in self.runs]
        candidates = sorted({row for table, key in zip(self.tables, keys) for row in table.get(key, ())})
        if not candidates:
            return None
        apart = distances(self.hashes[candidates], query)
        best = int(np.argmin(apart))
        return (candidates[best], int(apart[best])) if apart[best] <= self.within else None
