"""The report's data section: where the data came from (metrics/download.json), images per split and class,
the same picture twice (metrics/prepare.json's duplicates: pairs by kind and splits, what prepare dropped, example
pairs with prepare's figure of them) and every file prepare skipped."""

from __future__ import annotations

from pathlib import Path

from stages.analysis.document import Figure, Paragraph, Section, Table, fmt, percent
from stages.analysis.figures import SPLIT_TITLES
from stages.common.config import SPLITS, Params
from stages.contracts.prepared import PrepareSummary, duplicate_title
from stages.contracts.provenance import Provenance


def data_section(params: Params, prepare_summary: PrepareSummary, provenance: Provenance,
                 duplicates: Path | None = None) -> Section:
    """Where the data came from (download's record), images per split and class, duplicates, skipped files."""
    blocks: list = []
    if provenance.source == "sample":
        settings = "; ".join(f"{key} {value}" for key, value in (provenance.sample or {}).items())
        blocks.append(Paragraph("Source: the offline sample generator (download.source: sample), which lays out "
                                f"files exactly like the two Kaggle datasets below. Its settings: {settings}."))
        blocks.append(Table(["dataset", "imitates (Kaggle slug)", "image files"], [
            [name, found.slug, str(found.images)] for name, found in provenance.datasets.items()]))
    elif provenance.source == "own":
        blocks.append(Paragraph(f"Source: {provenance.describe('own')}, {provenance.datasets['own'].images} image files "
                                "(download.source: own); missing splits drawn by prepare.own.split. Unless your data "
                                "named a test split, read cross-dataset test below as held-out test: it cannot tell how "
                                "the models do on photos unlike yours."))
    else:
        blocks.append(Paragraph("Source: Kaggle, downloaded with the official kaggle client; versions and dates "
                                "as Kaggle reported them at download time (metrics/download.json)."))
        blocks.append(Table(["dataset", "Kaggle slug", "version", "licence", "image files"], [
            [name, found.slug, provenance.describe(name), found.license or "not stated", str(found.images)]
            for name, found in provenance.datasets.items()]))
    classes, rows = params.prepare.classes, []
    for split in SPLITS:
        found, total = prepare_summary.counts[split], max(prepare_summary.counts[split]["total"], 1)
        dataset = "own" if provenance.source == "own" else params.prepare.splits[split].dataset
        rows.append([SPLIT_TITLES[split], dataset, *(
            f"{found[label]} ({percent(found[label] / total)})" for label in classes), str(found["total"]),
            fmt(max(found[label] for label in classes) / total)])
    blocks.append(Table(["split", "dataset", *classes, "total", "always the larger class"], rows,
                        f"Images per split and class after prepare ({params.prepare.image_size}x"
                        f"{params.prepare.image_size} RGB), each class's share, and the accuracy of answering the "
                        "split's larger class every time"))
    blocks += duplicates_blocks(prepare_summary, duplicates)
    skipped = prepare_summary.skipped
    if skipped:
        blocks.append(Table(["split", "file", "why skipped"], [[s.split, s.file, s.reason] for s in skipped],
                            f"{len(skipped)} files skipped by prepare"))
    else:
        blocks.append(Paragraph("Prepare skipped no files."))
    return Section("data", "Data", blocks)


def duplicates_blocks(prepare_summary: PrepareSummary, figure: Path | None) -> list:
    """The same picture twice, within a split or across two: pairs by kind, how many training copies were
    dropped, and the example pairs (their figure, from data/prepared, where there is one)."""
    within = prepare_summary.near_duplicate_distance
    kinds = ("identical pixels after prepare, or perceptual hashes at most "
             f"{within} bits apart: resized, re-encoded or mirrored copies (prepare.near_duplicate_distance)"
             if within else "identical pixels after prepare (prepare.near_duplicate_distance: 0)")
    found = {key: pairs for key, pairs in prepare_summary.duplicates.items() if pairs.exact or pairs.near}
    if not found:
        return [Paragraph(f"No picture appears twice, within a split or across two ({kinds}).")]
    leaks = sum(found[key].exact + found[key].near for key in ("train-val", "train-test") if key in found)
    if prepare_summary.duplicates_dropped:
        dropped = (f" {prepare_summary.duplicates_dropped} training images that copy a validation or test image "
                   "were dropped (prepare.drop_duplicates), as they would leak its answer into training.")
    elif leaks:
        dropped = " The training copies of validation and test images were kept (prepare.drop_duplicates: false)."
    else:
        dropped = " No training image copies a validation or test image."
    blocks: list = [
        Paragraph(f"The same picture twice ({kinds}).{dropped}"),
        Table(["splits", "exact pairs", "near pairs"],
              [[duplicate_title(key), str(pairs.exact), str(pairs.near)] for key, pairs in found.items()],
              "Pairs of the same picture, by the splits of its two images")]
    if figure is not None:
        blocks.append(Figure(figure, "Example pairs, per pair of splits: those farthest apart that still count"))
    blocks.append(Table(["splits", "first", "second", "bits apart"],
                        [[duplicate_title(key), pair.first, pair.second,
                          f"{pair.distance}" + (", mirrored" if pair.mirrored else "")]
                         for key, pairs in found.items() for pair in pairs.examples],
                        "Example pairs (their source files)"))
    return blocks
