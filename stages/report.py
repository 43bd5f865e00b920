"""report: every number and figure the assignment asks for, in one document, always in step with the run.

Writes reports/report.md (figures in reports/figures/) and reports/report.html (self-contained, figures
embedded). Everything is read from the pipeline's outputs (metrics/, plots/, models/, data/evaluate/);
the discussion is generated from the numbers, not written in advance.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

from stages import cli, figures
from stages.config import EVALUATED_SPLITS, REPORTS_DIR, SPLITS, Params, load_params
from stages.contracts import (Comparison, EvaluationDir, ModelDir, ModelMetrics, PrepareSummary, RocCurves, SplitMetrics,
                              TrainingInfo)
from stages.document import Banner, Bullets, Code, Figure, Gallery, Paragraph, Section, Table, to_html, to_markdown
from stages.explain import METHOD_TITLES
from stages.figures import SPLIT_TITLES
from stages.fsutil import staged_dir
from stages.metrics import METRIC_NAMES
from stages.provenance import Provenance

TITLE = "facegender: binary gender classification from face images"
METRIC_TITLES = {"accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
                 "precision": "precision", "f1": "F1", "roc_auc": "ROC AUC"}
SIGNIFICANCE = 0.05   # the level at which the discussion calls a paired test's difference significant


@dataclass
class ModelResults:
    """What the train and evaluate stages wrote for one model."""
    name: str
    metrics: ModelMetrics       # metrics/evaluate/<name>.json
    training: TrainingInfo      # models/<name>/training.json (epochs, parameter counts, layer table)
    evaluation: EvaluationDir   # data/evaluate/<name>/ (figures, predictions_<split>.csv)
    roc: RocCurves              # plots/roc/<name>/

    @property
    def description(self) -> str:
        return self.metrics.description

    def value(self, split: str, metric: str) -> float | None:
        return getattr(self.metrics.split(split), metric)


def read_results(name: str) -> ModelResults:
    """Load one model's outputs; a missing file is one clear error naming the stage to run."""
    return ModelResults(name, ModelMetrics.read(ModelMetrics.path(name)), TrainingInfo.read(ModelDir.of(name).training),
                        EvaluationDir.of(name), RocCurves.of(name))


# --- numbers to words ---------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 3) -> str:
    """A metric for a table: 3 decimals, or n/a where it is undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def class_error_rates(split_metrics: SplitMetrics, classes: Sequence[str]) -> dict[str, float | None]:
    """Share of each class's images that are misclassified: 1 - specificity (class 0), 1 - sensitivity (class 1)."""
    rates = {}
    for name, recall in ((classes[0], split_metrics.specificity), (classes[1], split_metrics.sensitivity)):
        rates[name] = None if recall is None else 1 - recall
    return rates


def ranking(results: dict[str, ModelResults], split: str, metric: str = "roc_auc") -> list[str]:
    """The models with a value of `metric` on `split`, best first."""
    scored = {name: r.value(split, metric) for name, r in results.items() if r.value(split, metric) is not None}
    return sorted(scored, key=lambda name: -scored[name])


def verdict(p_value: float, test: str) -> str:
    """"significant at 5% (DeLong's test, p = 0.003)", from the test's p-value alone."""
    word = "significant" if p_value < SIGNIFICANCE else "not significant"
    return f"{word} at {SIGNIFICANCE:.0%} ({test}, p = {p_value:.2g})"


def paired_findings(comparison: Comparison) -> list:
    """Per split, every model against the reference on the same images, called from the paired tests."""
    blocks: list = []
    reference = comparison.reference
    for split in EVALUATED_SPLITS:
        items = []
        for model in comparison.models:
            test = comparison.paired(split, model, reference) if model != reference else None
            if test is None or test.roc_auc_p_value is None:
                continue
            sign = 1 if test.first == model else -1
            items.append(f"{model}: ROC AUC {signed(sign * test.roc_auc_difference)}, "
                         f"{verdict(test.roc_auc_p_value, 'DeLong')}; accuracy {signed(sign * test.accuracy_difference)}, "
                         f"{verdict(test.accuracy_p_value, 'McNemar')}.")
        if items:
            blocks += [Paragraph(f"Against the {reference} on the same {SPLIT_TITLES[split]} images (paired tests):"),
                       Bullets(items)]
    return blocks


def discussion(results: dict[str, ModelResults], classes: Sequence[str], test_share: dict[str, float],
               comparison: Comparison | None = None) -> list:
    """Paragraphs and bullets drawn from the metrics: best models, the val-to-test drop, per-class errors;
    differences called significant or not only from compare's paired tests."""
    blocks: list = []
    names = list(results)
    best_by_split = {}
    for split in EVALUATED_SPLITS:
        order = ranking(results, split)
        if not order:
            continue
        best = best_by_split[split] = order[0]
        others = ", ".join(f"{n} {fmt(results[n].value(split, 'roc_auc'))}" for n in order[1:])
        blocks.append(Paragraph(
            f"On the {SPLIT_TITLES[split]} split the best model by ROC AUC is {best} "
            f"({results[best].description}) with {fmt(results[best].value(split, 'roc_auc'))}"
            + (f", ahead of {others}." if others else ".")))
    best_val, best_test = best_by_split.get("val"), best_by_split.get("test")
    if best_val and best_test and best_val != best_test:
        gap = results[best_test].value("test", "roc_auc") - results[best_val].value("test", "roc_auc")
        test = comparison.paired("test", best_test, best_val) if comparison else None
        if test is not None and test.roc_auc_p_value is not None:
            caution = (f" On the test images the gap is {fmt(gap)} AUC, {verdict(test.roc_auc_p_value, 'DeLong')}"
                       + (": validation alone would have picked a weaker model for new data."
                          if test.roc_auc_p_value < SIGNIFICANCE else ": the two may well be equally good there."))
        else:
            caution = f" On the test images the gap is {fmt(gap)} AUC (no paired test available: run compare)."
        blocks.append(Paragraph(f"The ranking changes between the splits: {best_val} leads on validation but "
                                f"{best_test} on the cross-dataset test.{caution}"))
    if comparison is not None:
        blocks += paired_findings(comparison)
    drops = {}
    items = []
    for name in names:
        val, test = results[name].metrics.val, results[name].metrics.test
        auc_drop = None if None in (val.roc_auc, test.roc_auc) else val.roc_auc - test.roc_auc
        accuracy_drop = None if None in (val.accuracy, test.accuracy) else val.accuracy - test.accuracy
        drops[name] = auc_drop
        items.append(f"{name}: ROC AUC {fmt(val.roc_auc)} on validation, {fmt(test.roc_auc)} on test "
                     f"(drop {fmt(auc_drop)}); accuracy {fmt(val.accuracy)} to {fmt(test.accuracy)} "
                     f"(drop {fmt(accuracy_drop)}).")
    losing = sum(1 for drop in drops.values() if drop is not None and drop > 0)
    who = "every model loses" if losing == len(drops) else f"{losing} of {len(drops)} models lose"
    blocks.append(Paragraph("From validation to the cross-dataset test (another source of faces, never seen "
                            f"in training) {who} ground:"))
    blocks.append(Bullets(items))
    known = {name: drop for name, drop in drops.items() if drop is not None}
    if len(known) > 1:
        steadiest, largest = min(known, key=known.get), max(known, key=known.get)
        blocks.append(Paragraph(f"{steadiest} transfers best to the new source (AUC drop {fmt(known[steadiest])}); "
                                f"{largest} the worst ({fmt(known[largest])})."))
    errors = []
    for name in names:
        for split in EVALUATED_SPLITS:
            rates = class_error_rates(results[name].metrics.split(split), classes)
            if None in rates.values():
                continue
            worse = max(rates, key=rates.get)
            errors.append(f"{name}, {SPLIT_TITLES[split]}: {percent(rates[classes[0]])} of {classes[0]} and "
                          f"{percent(rates[classes[1]])} of {classes[1]} images misclassified; "
                          f"{worse} is wrong more often.")
    blocks.append(Paragraph("Per-class error rates (the share of each class's images given the other label):"))
    blocks.append(Bullets(errors))
    majority = max(test_share, key=test_share.get)
    blocks.append(Paragraph(
        f"The test source is {percent(test_share[majority])} {majority}. Accuracy and precision move with that "
        "share, so compare models across the two splits by ROC AUC and the per-class rates, which do not."))
    return blocks


# --- the sections -------------------------------------------------------------------------------

def data_section(params: Params, prepare_summary: PrepareSummary, provenance: Provenance) -> Section:
    """Where the data came from (download's record), images per split and class, duplicates, skipped files."""
    blocks: list = []
    if provenance.source == "sample":
        settings = "; ".join(f"{key} {value}" for key, value in (provenance.sample or {}).items())
        blocks.append(Paragraph("Source: the offline sample generator (download.source: sample), which lays out "
                                f"files exactly like the two Kaggle datasets below. Its settings: {settings}."))
        blocks.append(Table(["dataset", "imitates (Kaggle slug)", "image files"], [
            [name, found.slug, str(found.images)] for name, found in provenance.datasets.items()]))
    else:
        blocks.append(Paragraph("Source: Kaggle, downloaded with the official kaggle client; versions and dates "
                                "as Kaggle reported them at download time (metrics/download.json)."))
        blocks.append(Table(["dataset", "Kaggle slug", "version", "licence", "image files"], [
            [name, found.slug, provenance.describe(name), found.license or "not stated", str(found.images)]
            for name, found in provenance.datasets.items()]))
    classes = params.prepare.classes
    counts = prepare_summary.counts
    rows = [[SPLIT_TITLES[split], params.prepare.splits[split].dataset,
             *(str(counts[split][label]) for label in classes), str(counts[split]["total"])] for split in SPLITS]
    blocks.append(Table(["split", "dataset", *classes, "total"], rows,
                        f"Images per split and class after prepare ({params.prepare.image_size}x"
                        f"{params.prepare.image_size} RGB)"))
    if prepare_summary.duplicates:
        pairs = ", ".join(f"{count} between {pair.replace('-', ' and ')}" for pair, count in prepare_summary.duplicates.items())
        dropped = (f"; the {prepare_summary.duplicates_dropped} training copies were dropped (prepare.drop_duplicates)"
                   if prepare_summary.duplicates_dropped else "; none was dropped (prepare.drop_duplicates: false)")
        blocks.append(Paragraph(f"The same picture (identical pixels after prepare) appears in two splits: {pairs}"
                                f"{dropped}."))
    else:
        blocks.append(Paragraph("No picture appears in two splits (compared by their pixels after prepare)."))
    skipped = prepare_summary.skipped
    if skipped:
        blocks.append(Table(["split", "file", "why skipped"], [[s.split, s.file, s.reason] for s in skipped],
                            f"{len(skipped)} files skipped by prepare"))
    else:
        blocks.append(Paragraph("Prepare skipped no files."))
    return Section("data", "Data", blocks)


def model_sections(results: dict[str, ModelResults], params: Params) -> list[Section]:
    sections = [Section("models", "Models", [Paragraph(
        "Each model's layers in the format of the assignment's Figure 1, its parameters and how its "
        "training went. Nested models (VGG16's base, the transfer head) are one row each.")])]
    for name, result in results.items():
        training = result.training
        counts = training.parameters.model_dump()
        stopped = ("" if training.epochs_run >= training.epochs_requested
                   else " (early stopping: the best epoch's weights were kept)")
        knobs = yaml.safe_dump(params.train[name], sort_keys=False, default_flow_style=None).rstrip()
        layers = [[f"{row.name} ({row.type})", row.output_shape, f"{row.parameters:,}"] for row in training.layers]
        totals = [[f"{what} params", "", f"{counts[key]:,}"]
                  for what, key in (("Total", "total"), ("Trainable", "trainable"), ("Non-trainable", "non_trainable"))]
        sections.append(Section(f"model-{name}", f"{name}: {result.description}", [
            Table(["Layer (type)", "Output Shape", "Param #"], layers + totals),
            Paragraph(f"Trained {training.epochs_run} of {training.epochs_requested} epochs{stopped}."),
            Paragraph(f"params.yaml, train.{name}:"),
            Code(knobs),
        ], level=3))
    return sections


def copy_figure(source: Path, figures_dir: Path, name: str) -> Path:
    target = figures_dir / name
    shutil.copyfile(source, target)
    return target


def figure_sections(results: dict[str, ModelResults], figures_dir: Path) -> list[Section]:
    """Learning curves, overlaid ROC curves per split, confusion matrices: PNGs in figures_dir."""
    curves = [Figure(copy_figure(r.evaluation.learning_curves_figure, figures_dir, f"{n}_learning_curves.png"),
                     f"{n} ({r.description}): loss and accuracy per epoch, training and validation")
              for n, r in results.items()]
    rocs = []
    for split in EVALUATED_SPLITS:
        lines = {}
        for name, result in results.items():
            points = result.roc.read(split)
            bounds = result.metrics.split(split).interval.get("roc_auc")
            lines[name] = (points["fpr"], points["tpr"], result.value(split, "roc_auc"),
                           (bounds.low, bounds.high) if bounds else None)
        path = figures_dir / f"roc_{split}.png"
        figures.save(figures.roc_figure(lines, f"ROC, {SPLIT_TITLES[split]}"), path)
        rocs.append(Figure(path, f"ROC curves of every model on the {SPLIT_TITLES[split]} split, AUC in the legend "
                                 "(with its bootstrap interval when evaluate.bootstrap is on)"))
    confusions = [Figure(copy_figure(r.evaluation.confusion_figure(split), figures_dir, f"{n}_confusion_{split}.png"),
                         f"{n}: confusion matrix, {SPLIT_TITLES[split]}")
                  for n, r in results.items() for split in EVALUATED_SPLITS]
    return [Section("learning-curves", "Learning curves", curves),
            Section("roc", "ROC curves", rocs),
            Section("confusion", "Confusion matrices", [Paragraph(
                "Rows are the actual class, columns the prediction; each cell shows the count and the share of "
                "its row.")] + confusions)]


def metrics_section(results: dict[str, ModelResults], comparison: Comparison, classes: Sequence[str]) -> Section:
    """One table per split: every metric for every model, with its difference to the reference (compare's)."""
    reference = comparison.reference
    bootstrap = next((r.metrics.bootstrap for r in results.values() if r.metrics.bootstrap), None)
    interval = (f" In square brackets: the {bootstrap.level:.0%} interval, from {bootstrap.resamples:,} resamples of "
                "the images within each class (a stratified bootstrap, evaluate.bootstrap)." if bootstrap else "")
    blocks: list = [Paragraph(f"{classes[1]} is the positive class: sensitivity is the share of {classes[1]} faces "
                              f"labelled {classes[1]}, specificity the share of {classes[0]} faces labelled "
                              f"{classes[0]}.{interval} In round brackets: the difference to the {reference}.")]
    for split in EVALUATED_SPLITS:
        rows = []
        for name, result in results.items():
            cells = [name]
            bounds_by_metric = result.metrics.split(split).interval
            for metric in METRIC_NAMES:
                row = comparison.split(split)[metric]
                difference = f"{name}_minus_{reference}"
                bounds = bounds_by_metric.get(metric)
                cells.append(fmt(row[name]) + (f" [{fmt(bounds.low)}–{fmt(bounds.high)}]" if bounds else "")
                             + (f" ({signed(row[difference])})" if difference in row else ""))
            cells.append(str(result.metrics.split(split).n))
            rows.append(cells)
        blocks.append(Table(["model", *(METRIC_TITLES[m] for m in METRIC_NAMES), "images"], rows,
                            f"{SPLIT_TITLES[split].capitalize()} split"))
    return Section("metrics", "Metrics", blocks)


def explanation_sections(results: dict[str, ModelResults], figures_dir: Path, classes: Sequence[str]) -> list[Section]:
    """The test images each model is most confidently wrong about, then right about per class, each
    beside its heat map (evaluate's explanations.csv and explain/ figures, copied into figures_dir)."""
    tables = {name: result.evaluation.read_explanations() if result.evaluation.explanations.is_file() else None
              for name, result in results.items()}
    methods = sorted({method for table in tables.values() if table is not None for method in table["method"].unique()})
    how = (f"each beside a heat map of where the model looked for its answer "
           f"({' / '.join(METHOD_TITLES.get(m, m) for m in methods)}; red counts most, blue least)"
           if methods else "with no heat maps (evaluate.explain.images is 0)")

    def gallery(name: str, rows: pd.DataFrame, title: str) -> Gallery | Paragraph:
        images = []
        for row in rows.itertuples():
            target = copy_figure(results[name].evaluation.root / row.figure, figures_dir,
                                 f"{name}_{Path(row.figure).name}")
            images.append((target, f"{row.actual} as {row.predicted}, P({classes[1]}) {row.probability:.2f}"))
        return Gallery(images, title) if images else Paragraph(f"{title} none.")

    mistakes: list = [Paragraph(f"The cross-dataset test images each model gets most confidently wrong, as the model "
                                f"saw them, {how}. Captions: actual as predicted, and the {classes[1]} probability.")]
    correct: list = [Paragraph(f"For contrast, the test images of each class each model gets most confidently right, "
                               f"{how}: does it look at the face, or at something beside it?")]
    for name, table in tables.items():
        if table is None:
            mistakes.append(Paragraph(f"{name}: no heat maps (evaluate.explain.images is 0)."))
            continue
        mistakes.append(gallery(name, table[table["group"] == "mistake"], f"{name}:"))
        for label in classes:
            rows = table[(table["group"] == "correct") & (table["actual"] == label)]
            correct.append(gallery(name, rows, f"{name}, {label}:"))
    return [Section("mistakes", "Most confident mistakes, and where each model looks", mistakes),
            Section("correct", "Confident correct answers, and where each model looks", correct)]


def ethics_section(params: Params, test_share: dict[str, float]) -> Section:
    majority = max(test_share, key=test_share.get)
    items = [
        "Gender is not binary and is not something a face shows: these models learn to reproduce the two labels "
        "in the datasets, which are annotators' perceptions of presentation, not anyone's gender identity. "
        "Non-binary and transgender people are misclassified by construction.",
        "Consent and provenance: the Kaggle datasets are faces collected from the web, mostly without the "
        "consent of the people shown; their licences and origins are not fully documented.",
        f"Class imbalance: the test source is {percent(test_share[majority])} {majority}, so accuracy and precision "
        "there partly reflect that share; the per-class error rates above show who bears the errors.",
        "Misuse: automatic gender inference enables surveillance, targeted advertising and exclusion from "
        "services; a model like this should not be deployed to make decisions about people.",
        "What the numbers do not show: error rates by age, skin tone, image quality or any other group (the data "
        "carries no such labels), or how the models behave on faces unlike the two sources.",
    ]
    blocks: list = [Bullets(items)]
    if params.download.source == "sample":
        blocks.insert(0, Paragraph("These results come from the synthetic sample, not from photographs of people: "
                                   "they show that the pipeline works end to end, nothing about real faces."))
    return Section("ethics", "Ethics and limitations", blocks)


def compute_section(params: Params, model_ideas: list[str]) -> Section:
    """What more compute would allow, drawn from the current configuration and each model's own ideas."""
    items = []
    if params.download.source == "sample":
        items.append("Run on the real datasets (download.source: kaggle) instead of the synthetic sample.")
    items += model_ideas
    items.append(f"A larger input than {params.prepare.image_size}x{params.prepare.image_size} "
                 "(prepare.image_size; VGG16 was trained at 224x224).")
    items.append("Several seeds per model (train.<model>.seed): the intervals and paired tests here measure the "
                 "uncertainty from the images, not from training (each model is a single run).")
    return Section("compute", "What more compute would allow", [Bullets(items)])


def build_report(params: Params, prepare_summary: PrepareSummary, results: dict[str, ModelResults],
                 comparison: Comparison, figures_dir: Path, provenance: Provenance) -> list[Section]:
    """All sections, in reading order; figures are written into figures_dir."""
    classes = params.prepare.classes
    test_counts = prepare_summary.counts["test"]
    test_share = {label: test_counts[label] / max(test_counts["total"], 1) for label in classes}
    sections = []
    if params.download.source == "sample":
        sections.append(Section("banner", "Read this first", [Banner(
            "These results come from the synthetic offline sample (download.source: sample): drawn cartoon faces, "
            "not photographs of people. They show that the pipeline runs end to end; they say nothing about how "
            "well these models classify real faces. Set download.source: kaggle for real results.")]))
    sections.append(data_section(params, prepare_summary, provenance))
    sections += model_sections(results, params)
    sections += figure_sections(results, figures_dir)
    sections.append(metrics_section(results, comparison, classes))
    sections.append(Section("discussion", "Discussion", discussion(results, classes, test_share, comparison)))
    sections += explanation_sections(results, figures_dir, classes)
    sections.append(ethics_section(params, test_share))
    model_ideas = [idea for result in results.values() for idea in result.training.more_compute]
    sections.append(compute_section(params, model_ideas))
    return sections


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    prepare_summary = PrepareSummary.read(PrepareSummary.path)
    results = {name: read_results(name) for name in params.model_names}
    comparison = Comparison.read(Comparison.path)
    provenance = Provenance.read(Provenance.path)
    with staged_dir(REPORTS_DIR) as staging:
        figures_dir = staging / "figures"
        figures_dir.mkdir()
        sections = build_report(params, prepare_summary, results, comparison, figures_dir, provenance)
        (staging / "report.md").write_text(to_markdown(TITLE, sections, staging), encoding="utf-8")
        (staging / "report.html").write_text(to_html(TITLE, sections), encoding="utf-8")
    print(f"wrote {REPORTS_DIR / 'report.html'} and {REPORTS_DIR / 'report.md'}")


if __name__ == "__main__":
    cli.run(main)
