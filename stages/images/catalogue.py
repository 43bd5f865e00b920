"""prepare's catalogue of the images it converts: whether a training image copies a held-out one, exactly
(identical pixels) or nearly (perceptual hashes within prepare.near_duplicate_distance,
stages/images/near_duplicates.py), and in the end every pair of the same picture, counted and shown."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from stages.common.config import SPLITS
from stages.contracts.prepared import DuplicatePair, Duplicates, duplicate_keys, duplicate_title
from stages.images.near_duplicates import HASH_BYTES, HashIndex, as_words, close_pairs
from stages.images.reading import load_rgb

# Example pairs metrics/prepare.json keeps per pair of splits: enough to judge the threshold by eye.
EXAMPLES = 5


class Match(NamedTuple):
    """The held-out image a training image copies: its place in the catalogue, and how closely."""

    row: int
    exact: bool           # identical pixels
    distance: int         # bits apart, their hashes
    mirrored: bool        # the training image's mirror image is the near one

    def reason(self, split: str, file: str, within: int) -> str:
        """Why the training image is dropped, naming the held-out image (its split and file) it copies."""
        if self.exact:
            return f"same pixels as {split} image {file} (prepare.drop_duplicates)"
        mirror = "the mirror image of " if self.mirrored else ""
        return (f"near duplicate: its hash {self.distance} bits from {mirror}{split} image {file}'s "
                f"(prepare.near_duplicate_distance {within}, prepare.drop_duplicates)")


class Catalogue:
    """The images prepare converts, as they arrive, held out (val, test) before train: their split, file,
    pixel digest and hashes, never their pixels. It says on arrival whether a training image copies a
    held-out one, and in the end counts every pair of the same picture."""

    def __init__(self, within: int):
        self.within = within              # prepare.near_duplicate_distance; 0: identical pixels only
        self.splits: list[int] = []       # each image's split, as its index in SPLITS
        self.files: list[str] = []
        self.groups: list[int] = []       # each image's pixel group: images with identical pixels share one
        self.group_of_digest: dict[str, int] = {}
        self.held_out_of_group: dict[int, int] = {}   # a group's first val or test image
        self.plain = bytearray()          # every image's hash (when within > 0)
        self.mirrored = bytearray()       # and its mirror image's
        self.training = False             # a training image has come: no held-out image may follow
        self.index: HashIndex | None = None   # the held-out hashes, built when the first training image comes

    def add(self, split: str, file: str, digest: str, hashes: bytes | None) -> Match | None:
        """Catalogue one image (hashes: from image_hashes(); None when within is 0); for a training
        image, the held-out image it copies (identical pixels first, else the nearest within) or None."""
        row, training = len(self.files), split == "train"
        if self.training and not training:
            raise ValueError("prepare must convert the val and test images before the training ones")
        self.training = training
        group = self.group_of_digest.setdefault(digest, len(self.group_of_digest))
        self.splits.append(SPLITS.index(split))
        self.files.append(file)
        self.groups.append(group)
        if not training:
            self.held_out_of_group.setdefault(group, row)
        if self.within:
            self.plain += hashes[:HASH_BYTES]
            self.mirrored += hashes[HASH_BYTES:]
        if not training:
            return None
        if group in self.held_out_of_group:
            return Match(self.held_out_of_group[group], True, 0, False)
        if not self.within:
            return None
        if self.index is None:
            self.index = HashIndex(as_words(self.plain[:row * HASH_BYTES]), self.within)
        plain = self.index.nearest(as_words(hashes[:HASH_BYTES])[0])
        mirrored = self.index.nearest(as_words(hashes[HASH_BYTES:])[0])
        if mirrored is not None and (plain is None or mirrored[1] < plain[1]):
            return Match(mirrored[0], False, mirrored[1], True)
        return None if plain is None else Match(plain[0], False, plain[1], False)

    def tally(self) -> dict[str, Duplicates]:
        """Pairs of the same picture per pair of splits (duplicate_keys()): exact ones (identical pixels),
        near ones (hashes within the distance, plain or mirrored) and a few examples of each key."""
        splits, groups = np.array(self.splits, dtype=np.int64), np.array(self.groups, dtype=np.int64)
        count = len(self.group_of_digest)
        # Images per group and split; the first image of each group in each split (-1: none).
        per_split = np.zeros((count, len(SPLITS)), np.int64)
        np.add.at(per_split, (groups, splits), 1)
        first = np.full((count, len(SPLITS)), len(splits), np.int64)
        np.minimum.at(first, (groups, splits), np.arange(len(splits)))
        first[first == len(splits)] = -1
        keys = duplicate_keys()
        exact = {key: 0 for key in keys}
        near = {key: 0 for key in keys}
        examples: dict[str, list[DuplicatePair]] = {key: [] for key in keys}

        pairs = self._near_group_pairs(groups, count)
        # A pair of groups makes a pair of images for every image of the one times every one of the other.
        products = np.einsum("pi,pj->ij", per_split[pairs.first], per_split[pairs.second])
        for a, b, key in _split_pairs():
            near[key] = int(products[a, b] + (products[b, a] if a != b else 0))
        order = np.lexsort((pairs.second, pairs.first, -pairs.distance))   # farthest apart first
        for u, v, distance, mirrored in zip(pairs.first[order].tolist(), pairs.second[order].tolist(),
                                            pairs.distance[order].tolist(), pairs.mirrored[order].tolist()):
            for a, b, key in _split_pairs():
                if len(examples[key]) >= EXAMPLES:
                    continue
                for x, y in ((u, v), (v, u)) if a != b else ((u, v),):
                    if first[x, a] >= 0 and first[y, b] >= 0 and len(examples[key]) < EXAMPLES:
                        examples[key].append(DuplicatePair(first=self.files[first[x, a]], second=self.files[first[y, b]],
                                                           distance=distance, mirrored=mirrored))
        # Identical pixels: every two images of one group.
        for a, b, key in _split_pairs():
            if a == b:
                exact[key] = int((per_split[:, a] * (per_split[:, a] - 1) // 2).sum())
            else:
                exact[key] = int((per_split[:, a] * per_split[:, b]).sum())
        shared = np.flatnonzero(per_split.sum(axis=1) > 1)
        if len(shared):
            members: dict[int, list[int]] = {}
            for row in np.flatnonzero(np.isin(groups, shared)).tolist():
                members.setdefault(self.groups[row], []).append(row)
            for group in sorted(members):
                rows = members[group]
                for a, b, key in _split_pairs():
                    in_a = [row for row in rows if self.splits[row] == a]
                    in_b = [row for row in rows if self.splits[row] == b]
                    pair = (in_a[:2] if a == b else in_a[:1] + in_b[:1])
                    if len(pair) == 2 and len(examples[key]) < EXAMPLES:
                        examples[key].append(DuplicatePair(first=self.files[pair[0]], second=self.files[pair[1]],
                                                           distance=0, mirrored=False))
        return {key: Duplicates(exact=exact[key], near=near[key], examples=examples[key]) for key in keys}

    def _near_group_pairs(self, groups: np.ndarray, count: int) -> "GroupPairs":
        """Pairs of pixel groups u < v whose hashes are within the distance, plainly or one's mirror image
        against the other: the smaller distance of the two, and whether it is the mirrored one."""
        if not self.within or not self.plain:
            empty = np.zeros(0, np.int64)
            return GroupPairs(empty, empty, empty, np.zeros(0, bool))
        # One image per group: identical pixels have identical hashes.
        representative = np.full(count, len(groups), np.int64)
        np.minimum.at(representative, groups, np.arange(len(groups)))
        hashes = as_words(self.plain)[representative]
        plain = close_pairs(hashes, None, self.within)
        mirrors = close_pairs(as_words(self.mirrored)[representative], hashes, self.within)
        other = mirrors.first != mirrors.second           # not a group's mirror image against itself
        low = np.concatenate([plain.first, np.minimum(mirrors.first, mirrors.second)[other]])
        high = np.concatenate([plain.second, np.maximum(mirrors.first, mirrors.second)[other]])
        distance = np.concatenate([plain.distance, mirrors.distance[other]])
        mirrored = np.concatenate([np.zeros(len(plain.first), bool), np.ones(int(other.sum()), bool)])
        # Each pair once, at its smaller distance (plain before mirrored on a tie).
        order = np.lexsort((mirrored, distance, high, low))
        low, high, distance, mirrored = low[order], high[order], distance[order], mirrored[order]
        _, once = np.unique(low * count + high, return_index=True)
        return GroupPairs(low[once], high[once], distance[once], mirrored[once])


class GroupPairs(NamedTuple):
    """Pairs of pixel groups (first < second) within the distance."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    mirrored: np.ndarray


def _split_pairs() -> list[tuple[int, int, str]]:
    """(index of the first split, index of the second, key) for every key of duplicate_keys()."""
    return [(a, b, f"{SPLITS[a]}-{SPLITS[b]}") for a in range(len(SPLITS)) for b in range(a, len(SPLITS))]


def pairs_figure(rows: list[tuple[str, list[tuple[np.ndarray, np.ndarray, str]]]]) -> Image.Image:
    """Example pairs side by side: one row per title, each pair (first, second, label) as two images with
    the label above them. Drawn with Pillow alone, so prepare needs no plotting library."""
    side = max((first.shape[0] for _, pairs in rows for first, _, _ in pairs), default=100)
    gap, apart, label, title = 4, 20, 14, 16      # within a pair, between pairs, text lines
    columns = max((len(pairs) for _, pairs in rows), default=1)
    cell = 2 * side + gap + apart
    figure = Image.new("RGB", (columns * cell + gap, len(rows) * (title + label + side + gap) + gap), "white")
    draw = ImageDraw.Draw(figure)
    top = gap
    for heading, pairs in rows:
        draw.text((gap, top), heading, fill="black")
        for column, (first, second, caption) in enumerate(pairs):
            left = gap + column * cell
            draw.text((left, top + title), caption, fill="dimgray")
            figure.paste(Image.fromarray(first), (left, top + title + label))
            figure.paste(Image.fromarray(second), (left + side + gap, top + title + label))
        top += title + label + side + gap
    return figure


def examples_figure(duplicates: dict[str, Duplicates], image_size: int, max_pixels: int) -> Image.Image | None:
    """The example pairs of tally() side by side, loaded again from their files as prepare loads them (a few
    dozen images at most); None when there is no pair."""
    rows = []
    for key, found in duplicates.items():
        pairs = [(load_rgb(Path(pair.first), image_size, max_pixels), load_rgb(Path(pair.second), image_size, max_pixels),
                  "same pixels" if pair.distance == 0 and not pair.mirrored
                  else f"{pair.distance} bits" + (", mirrored" if pair.mirrored else ""))
                 for pair in found.examples]
        if pairs:
            rows.append((f"{duplicate_title(key)}: {found.exact} exact, {found.near} near", pairs))
    return pairs_figure(rows) if rows else None
