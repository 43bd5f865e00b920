"""A model card per model (Mitchell et al., "Model Cards for Model Reporting", 2019), generated from
the run's own files: what the model is, what it learned from and the biases that data carries, its
metrics with intervals on both splits and the drop from one dataset to the other, what it is for,
what it must not be used for, and its limits. stages/cards.py writes each as
models/<model>/MODEL_CARD.md; the report carries the same sections.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.analysis.document import Bullets, Paragraph, Section, Table, fmt, percent, signed
from stages.common.config import Params
from stages.contracts.evaluation import ModelMetrics, SplitMetrics
from stages.contracts.prepared import PrepareSummary
from stages.contracts.provenance import Provenance
from stages.contracts.training import TrainMetrics

METRICS = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "sensitivity": "sensitivity",
           "specificity": "specificity", "f1": "F1"}
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


def interval(split: SplitMetrics, metric: str) -> str:
    """'0.912 (0.887-0.934)': the value and its bootstrap interval, where there is one."""
    value, bounds = getattr(split, metric), split.interval.get(metric)
    return fmt(value) + (f" ({fmt(bounds.low)}-{fmt(bounds.high)})" if value is not None and bounds else "")


def drop(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else second - first


def data_blocks(inputs: CardInputs) -> list:
    """The training and test data: where from, how many of each class, and what they lack."""
    params, counts, classes = inputs.params, inputs.prepared.counts, inputs.params.prepare.classes
    rows = []
    for split in ("train", "val", "test"):
        source = params.prepare.splits[split].dataset
        total = counts.get(split, {}).get("total", 0)
        shares = ", ".join(f"{name} {counts[split].get(name, 0)} ({percent(counts[split].get(name, 0) / total)})"
                           for name in classes) if total else "none"
        described = inputs.provenance.describe(source)
        rows.append([split, described if inputs.provenance.source == "sample"
                     else f"{params.download.datasets[source].slug} ({described})", str(total), shares])
    blocks: list = [Table(["split", "source", "images", "per class"], rows,
                          f"After prepare (metrics/prepare.json): {inputs.prepared.image_size}x"
                          f"{inputs.prepared.image_size} RGB, duplicates and unreadable files left out.")]
    if inputs.provenance.source == "sample":
        blocks.append(Paragraph("**This run used the offline sample** (download.source: sample): drawn faces, not "
                                "photographs of people. Its numbers show that the pipeline works end to end; they "
                                "say nothing about real faces."))
    blocks.append(Bullets([
        "Both sources are faces scraped from the web and shared on Kaggle; who is shown, and whether they agreed, is "
        "not documented. Their licences and origins are only partly stated.",
        "The labels are two classes given by the datasets' authors (annotators' perception), not self-reported.",
        "No age, skin-tone, ethnicity or image-quality labels: no subgroup results can be given, and none are. "
        "Errors may fall unevenly on groups the data under-represents.",
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
    seed = inputs.params.seeds[0]
    level = (f"{first.bootstrap.level:.0%} bootstrap intervals ({first.bootstrap.resamples} resamples)"
             if first.bootstrap else "no intervals (evaluate.bootstrap.resamples is 0)")
    blocks: list = [Table(["metric", f"validation (n={val.n})", f"test (n={test.n})", "test - validation"], rows,
                          f"Seed {seed}'s run at threshold {inputs.params.evaluate.threshold} "
                          f"(P({inputs.params.prepare.classes[1]}) at or above it predicts "
                          f"{inputs.params.prepare.classes[1]}, the positive class); {level}.")]
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

