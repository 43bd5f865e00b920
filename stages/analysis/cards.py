"""A model card per model (Mitchell et al., "Model Cards for Model Reporting", 2019), generated from
the run's own files: what the model is, what it learned from and the biases that data carries, its
metrics with intervals on both splits (and per group, where the data carry groups) and the drop from
one dataset to the other, what it is for, what it must not be used for, and its limits. stages/cards.py
writes each as models/<model>/MODEL_CARD.md; the report carries the same sections, and its section of
results per group from the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from stages.analysis.document import Bullets, Paragraph, Section, Table, fmt, percent, signed
from stages.common.config import Params
from stages.contracts.evaluation import NO_GROUP, GroupMetrics, ModelMetrics, SplitMetrics
from stages.contracts.prepared import PrepareSummary
from stages.contracts.provenance import Provenance
from stages.contracts.training import TrainMetrics

METRICS = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
           "sensitivity": "sensitivity", "specificity": "specificity", "f1": "F1"}
# The row beside accuracy that says what accuracy is worth on the split: always answering its larger class.
MAJORITY = "always the larger class"
SPLIT_NAMES = {"val": "validation", "test": "cross-dataset test"}
SYNTHETIC_GROUPS = ("The offline sample's groups are synthetic: a skin tone its generator drew for each face, not "
                    "a property of any person. They show that per-group results work; they say nothing about real "
                    "groups of people.")
# A gap in the two classes' error rates at least this large is named in the limits.
UNEVEN = 0.05
INTENDED = [
    "Teaching: the course assignment this project builds (a CNN from scratch, an improved one, transfer learning), "
    "and what its numbers do and do not show.",
    "Comparing methods on the same data and splits, with intervals and paired tests (the report).",
]
MUST_NOT = [
    "Inferring anyone's gender identity: the labels are annotators' reading of how a face presents, in two "
    "classes; gender is neither binary nor visible in a face, and non-binary and transgender people are "
    "misclassified by construction.",
    "Decisions about people: access, hiring, pricing, services, moderation, or anything else that affects them.",
    "Surveillance, tracking, profiling or targeted advertising, on photos or video of people who did not agree to it.",
    "Any use on people who have not consented to having their faces analysed.",
]


@dataclass
class CardInputs:
    """What one model's card is made from: its evaluate and train metrics per seed (the first seed's run
    first), the data's class counts and provenance, and the params."""

    name: str
    metrics: list[ModelMetrics]        # metrics/evaluate/<name>/<seed>.json, params.yaml's seeds in order
    training: list[TrainMetrics]       # metrics/train/<name>/<seed>.json, same order
    prepared: PrepareSummary
    provenance: Provenance
    params: Params


def interval(split: SplitMetrics | GroupMetrics, metric: str) -> str:
    """'0.912 (0.887-0.934)': the value and its bootstrap interval, where there is one."""
    value, bounds = getattr(split, metric), split.interval.get(metric)
    return fmt(value) + (f" ({fmt(bounds.low)}-{fmt(bounds.high)})" if value is not None and bounds else "")


def drop(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else second - first


def has_groups(metrics: ModelMetrics) -> bool:
    """Whether any evaluated split of this run carries per-group results."""
    return any(metrics.split(split).groups is not None for split in SPLIT_NAMES)


def group_titles(classes: list[str]) -> dict[str, str]:
    """Each per-group metric's title (stages/analysis/groups.py GROUP_METRICS): each class's error rate by its name."""
    return {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
            "false_negative_rate": f"{classes[1]} error rate", "false_positive_rate": f"{classes[0]} error rate",
            "roc_auc": "ROC AUC"}


def group_blocks(metrics: ModelMetrics, split: str, classes: list[str], title: str) -> list:
    """One split's results per group: each metric with its bootstrap interval (or why a group has none),
    then per metric the largest gap between two groups with its interval; [] where the split has no groups."""
    found = metrics.split(split).groups
    if found is None:
        return []
    titles = group_titles(classes)
    rows = [[name, " / ".join(str(entry.counts.get(label, 0)) for label in classes),
             *("n/a" if entry.too_small else interval(entry, metric) for metric in titles)]
            for name, entry in found.groups.items()]
    unnamed = f" {NO_GROUP}: its images without a group, left out of the gaps." if NO_GROUP in found.groups else ""
    blocks: list = [Table(["group", f"images ({' / '.join(classes)})", *titles.values()], rows,
                          f"{title}, per group (an error rate is the share of that class's images given the other "
                          f"label).{unnamed}")]
    small = [f"{name} ({entry.too_small})" for name, entry in found.groups.items() if entry.too_small]
    if small:
        blocks.append(Paragraph(f"No numbers for {'; '.join(small)}."))
    if found.gaps:
        gaps = [[titles[metric], fmt(gap.gap), f"{gap.highest} - {gap.lowest}",
                 f"{fmt(gap.interval.low)} to {fmt(gap.interval.high)} ({gap.level:.1%})" if gap.interval else "-"]
                for metric, gap in found.gaps.items()]
        pairs = max(gap.pairs for gap in found.gaps.values())
        widened = f", widened for picking the farthest of {pairs} pairs of groups" if pairs > 1 else ""
        blocks.append(Table(["metric", "largest gap", "groups (highest - lowest)", "interval of their difference"],
                            gaps, f"{title}: the largest gap between two groups per metric, and the bootstrap "
                            f"interval of those two groups' difference{widened}; an interval reaching below 0 means "
                            "the images cannot tell the two apart."))
    return blocks


def groups_section(runs: dict[str, ModelMetrics], classes: Sequence[str], source: str, seeds: Sequence[int]) -> Section:
    """The report's results per group: each model's (runs: its first seed's run) on every split that has
    groups, with the gaps; `source` (metrics/download.json's) "sample" says the groups are synthetic."""
    grouped = {name: metrics for name, metrics in runs.items() if has_groups(metrics)}
    if not grouped:
        return Section("groups", "Results per group", [Paragraph(
            "The data carry no groups (data/prepared/groups.csv gives no image one): no per-group results. A "
            "labels.csv with a group column (download.source: own) gives them.")])
    minimum = next(metrics.split(split).groups.min_per_class for metrics in grouped.values()
                   for split in SPLIT_NAMES if metrics.split(split).groups is not None)
    blocks: list = [Paragraph(SYNTHETIC_GROUPS)] if source == "sample" else []
    blocks.append(Paragraph(
        "Each group's accuracy, balanced accuracy, the two classes' error rates and ROC AUC"
        + (f" (each model's run with seed {seeds[0]})" if len(seeds) > 1 else "") + ", with the bootstrap interval "
        "in round brackets (each group resampled within each class). Under each table, per metric, the largest gap "
        "between two groups: the highest minus the lowest, with the interval of those two groups' difference, "
        "widened (Bonferroni) for having picked the farthest pair: chance alone spreads many small groups apart. A "
        f"group with fewer than {minimum} images of either class has no numbers (evaluate.group_min_per_class)."))
    for name, metrics in grouped.items():
        for split, title in SPLIT_NAMES.items():
            blocks += group_blocks(metrics, split, list(classes), f"{name}, {title} split")
    return Section("groups", "Results per group", blocks)


def data_blocks(inputs: CardInputs) -> list:
    """The training and test data: where from, how many of each class, and what they lack."""
    params, counts, classes = inputs.params, inputs.prepared.counts, inputs.params.prepare.classes
    rows = []
    for split in ("train", "val", "test"):
        own = inputs.provenance.source == "own"     # your folder: one dataset, its splits given or drawn
        source = "own" if own else params.prepare.splits[split].dataset
        total = counts.get(split, {}).get("total", 0)
        shares = ", ".join(f"{name} {counts[split].get(name, 0)} ({percent(counts[split].get(name, 0) / total)})"
                           for name in classes) if total else "none"
        described = inputs.provenance.describe(source)
        rows.append([split, described if inputs.provenance.source in ("sample", "own")
                     else f"{params.download.datasets[source].slug} ({described})", str(total), shares])
    blocks: list = [Table(["split", "source", "images", "per class"], rows,
                          f"After prepare (metrics/prepare.json): {inputs.prepared.image_size}x"
                          f"{inputs.prepared.image_size} RGB, duplicates and unreadable files left out.")]
    if inputs.provenance.source == "sample":
        blocks.append(Paragraph("**This run used the offline sample** (download.source: sample): drawn faces, not "
                                "photographs of people. Its numbers show that the pipeline works end to end; they "
                                "say nothing about real faces."))
    if has_groups(inputs.metrics[0]):
        groups = ("Per-group results are under Metrics, for the groups the data name (data/prepared/groups.csv)"
                  + ("; the offline sample's are a synthetic skin tone its generator drew" if inputs.provenance.source
                     == "sample" else "") + ". Groups the data do not name (age, ethnicity, image quality, ...) are "
                  "not measured: errors may fall unevenly on them.")
    else:
        groups = ("No age, skin-tone, ethnicity or image-quality labels: no subgroup results can be given, and none "
                  "are. Errors may fall unevenly on groups the data under-represents.")
    if inputs.provenance.source == "own":
        blocks.append(Bullets([
            "Your own data: who is shown, whether they agreed, and how the labels were given are yours to state here.",
            groups,
            "Train, validation and test come from one source unless your data gave a test split of its own: the "
            "test split then says how the model does on more photos like its training data, not on photos unlike "
            "them (another camera, population or framing).",
        ]))
        return blocks
    blocks.append(Bullets([
        "Both sources are faces scraped from the web and shared on Kaggle; who is shown, and whether they agreed, is "
        "not documented. Their licences and origins are only partly stated.",
        "The labels are two classes given by the datasets' authors (annotators' perception), not self-reported.",
        groups,
        "Train and validation come from one source, test from the other: the test split measures how the model "
        "carries over to photos unlike its training data.",
    ]))
    return blocks


def metric_blocks(inputs: CardInputs) -> list:
    """Each metric with its bootstrap interval on validation and on the cross-dataset test split, and the drop."""
    first = inputs.metrics[0]
    val, test = first.split("val"), first.split("test")
    rows = [[title, interval(val, metric), interval(test, metric), signed(drop(getattr(val, metric),
                                                                              getattr(test, metric)))]
            for metric, title in METRICS.items()]
    # Beside accuracy: what always answering the split's larger class scores (no interval: it is the data's).
    rows.insert(list(METRICS).index("balanced_accuracy") + 1,
                [MAJORITY, fmt(val.majority_rate), fmt(test.majority_rate),
                 signed(drop(val.majority_rate, test.majority_rate))])
    seed = inputs.params.seeds[0]
    level = (f"{first.bootstrap.level:.0%} bootstrap intervals ({first.bootstrap.resamples} resamples)"
             if first.bootstrap else "no intervals (evaluate.bootstrap.resamples is 0)")
    blocks: list = [Table(["metric", f"validation (n={val.n})", f"test (n={test.n})", "test - validation"], rows,
                          f"Seed {seed}'s run at threshold {inputs.params.evaluate.threshold} "
                          f"(P({inputs.params.prepare.classes[1]}) at or above it predicts "
                          f"{inputs.params.prepare.classes[1]}, the positive class); {level}. "
                          f"{MAJORITY.capitalize()}: the accuracy of answering the split's larger class every time.")]
    for split, name in SPLIT_NAMES.items():
        blocks += group_blocks(first, split, inputs.params.prepare.classes, f"Seed {seed}'s run, {name} split")
    if has_groups(first) and inputs.provenance.source == "sample":
        blocks.append(Paragraph(SYNTHETIC_GROUPS))
    if len(inputs.metrics) > 1:
        aucs = [each.split("test").roc_auc for each in inputs.metrics if each.split("test").roc_auc is not None]
        if aucs:
            blocks.append(Paragraph(f"Over the {len(inputs.metrics)} seeds ({', '.join(map(str, inputs.params.seeds))}), "
                                    f"test ROC AUC ranged {fmt(min(aucs))}-{fmt(max(aucs))}."))
    return blocks


def card_sections(inputs: CardInputs, level: int = 2) -> list[Section]:
    """The card's sections, headings at `level` (2 in the card's own file, 3 inside the report)."""
    first, trained = inputs.metrics[0], inputs.training[0]
    machine = f"; trained on {trained.trained_on.cpu}" if trained.trained_on else ""
    anchor = f"card-{inputs.name}"
    return [
        Section(f"{anchor}-what", "What it is", [Paragraph(
            f"**{inputs.name}**: {first.description}. A binary classifier of {inputs.params.prepare.image_size}x"
            f"{inputs.params.prepare.image_size} RGB face crops into {' or '.join(inputs.params.prepare.classes)}, "
            f"giving P({inputs.params.prepare.classes[1]}). Trained {trained.epochs_run} epochs (best at epoch "
            f"{trained.best_epoch}){machine}; its settings are params.yaml's train.{inputs.name}. It expects a face "
            "cropped as the training images are (predict --detect-faces and the page crop photos that way).")], level),
        Section(f"{anchor}-data", "Training and test data", data_blocks(inputs), level),
        Section(f"{anchor}-metrics", "Metrics", metric_blocks(inputs), level),
        Section(f"{anchor}-use", "Intended use", [Bullets(INTENDED)], level),
        Section(f"{anchor}-misuse", "Uses it must not serve", [Bullets(MUST_NOT)], level),
        Section(f"{anchor}-limits", "Limits", [Bullets(limits(inputs))], level),
    ]


def limits(inputs: CardInputs) -> list[str]:
    """What the numbers imply about where the model fails."""
    first = inputs.metrics[0]
    val, test = first.split("val"), first.split("test")
    classes = inputs.params.prepare.classes
    items = []
    auc_drop = drop(val.roc_auc, test.roc_auc)
    if auc_drop is not None:
        items.append(f"On photos from the other source its ROC AUC moves by {signed(auc_drop)} "
                     f"({fmt(val.roc_auc)} to {fmt(test.roc_auc)}): expect worse on photos unlike either.")
    if test.sensitivity is not None and test.specificity is not None:
        missed = {classes[1]: 1 - test.sensitivity, classes[0]: 1 - test.specificity}
        worse = max(missed, key=missed.get)
        uneven = (f": its errors fall more on {worse} faces" if abs(missed[classes[1]] - missed[classes[0]]) >= UNEVEN
                  else "")
        items.append(f"On the test split it misses {percent(missed[classes[1]])} of {classes[1]} faces and "
                     f"{percent(missed[classes[0]])} of {classes[0]} faces{uneven}.")
    gap = test.groups.gaps.get("balanced_accuracy") if test.groups is not None else None
    if gap is not None:
        sure = ("" if gap.interval is None else "; the images cannot tell the two apart" if gap.interval.low <= 0
                else f" ({fmt(gap.interval.low)} to {fmt(gap.interval.high)})")
        synthetic = " (synthetic groups)" if inputs.provenance.source == "sample" else ""
        items.append(f"Between the test split's groups{synthetic} its balanced accuracy differs by up to "
                     f"{fmt(gap.gap)}, {gap.highest} over {gap.lowest}{sure}.")
    calibration = first.calibration
    if calibration is not None and calibration.test is not None and calibration.test.ece is not None:
        items.append(f"Its probabilities are off by {fmt(calibration.test.ece)} on average on the test split "
                     "(expected calibration error): read P as a score, not a frequency.")
    items += [
        f"It sees {inputs.params.prepare.image_size}x{inputs.params.prepare.image_size} pixels: small, blurred, "
        "turned or partly hidden faces, and faces it was never shown (children, heavy make-up, masks), are guesses.",
        "It always answers one of two classes, with no way to say \"neither\" or \"not a face\".",
    ]
    return items


def card_title(name: str, description: str) -> str:
    return f"Model card: {name} ({description})"


def read_card_inputs(name: str, params: Params) -> CardInputs:
    """The files one model's card is made from (each missing one is one clear error naming its stage)."""
    return CardInputs(name, [ModelMetrics.read(ModelMetrics.path(name, seed)) for seed in params.seeds],
                      [TrainMetrics.read(TrainMetrics.path(name, seed)) for seed in params.seeds],
                      PrepareSummary.read(PrepareSummary.path), Provenance.read(Provenance.path), params)

