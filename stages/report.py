"""report: every number and figure the assignment asks for, in one document, always in step with the run.

Writes reports/report.md (figures in reports/figures/) and reports/report.html (self-contained, figures
embedded). Everything is read from the pipeline's outputs (metrics/, plots/, models/, data/evaluate/);
the discussion is generated from the numbers, not written in advance. With several seeds the metrics
and verdicts are over every run (compare's), the figures each model's first seed's run.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import yaml

from stages.analysis import figures
from stages.analysis.cards import CardInputs, card_sections, card_title, groups_section, has_groups, read_card_inputs
from stages.analysis.data import data_section
from stages.analysis.discussion import calibration_section, compute_section, discussion, ethics_section
from stages.analysis.document import (Banner, Code, Figure, Gallery, Paragraph, Section, Table, fmt, signed, to_html,
                                     to_markdown)
from stages.analysis.figures import SPLIT_TITLES
from stages.analysis.heatmaps import METHOD_TITLES
from stages.analysis.statistics import METRIC_NAMES
from stages.common import cli
from stages.common.atomic_files import staged_dir
from stages.common.config import EVALUATED_SPLITS, PREPARED_DIR, REPORTS_DIR, Params, load_params
from stages.contracts.comparison import Comparison
from stages.contracts.evaluation import EvaluationDir, ModelMetrics, RocCurves
from stages.contracts.prepared import PrepareSummary, duplicates_figure
from stages.contracts.provenance import Provenance
from stages.contracts.training import ModelDir, TrainingInfo

TITLE = "facegender: binary gender classification from face images"
METRIC_TITLES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity",
                 "specificity": "specificity", "precision": "precision", "f1": "F1", "roc_auc": "ROC AUC"}


@dataclass
class ModelResults:
    """What the train and evaluate stages wrote for one model's run with one seed (<run>: <name>/<seed>)."""
    name: str
    metrics: ModelMetrics       # metrics/evaluate/<run>.json
    training: TrainingInfo      # models/<run>/training.json (epochs, parameter counts, layer table)
    evaluation: EvaluationDir   # data/evaluate/<run>/ (figures, predictions_<split>.csv)
    roc: RocCurves              # plots/roc/<run>/

    @property
    def description(self) -> str:
        return self.metrics.description

    def value(self, split: str, metric: str) -> float | None:
        return getattr(self.metrics.split(split), metric)


def read_results(name: str, seed: int) -> ModelResults:
    """Load one model's outputs for one seed; a missing file is one clear error naming the stage to run."""
    return ModelResults(name, ModelMetrics.read(ModelMetrics.path(name, seed)),
                        TrainingInfo.read(ModelDir.of(name, seed).training), EvaluationDir.of(name, seed),
                        RocCurves.of(name, seed))


# --- the sections -------------------------------------------------------------------------------

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
    seeds = comparison.seeds
    bootstrap = next((r.metrics.bootstrap for r in results.values() if r.metrics.bootstrap), None)
    interval = (f" In square brackets: the {bootstrap.level:.0%} interval, from {bootstrap.resamples:,} resamples of "
                "the images within each class (a stratified bootstrap, evaluate.bootstrap)." if bootstrap else "")
    if len(seeds) > 1:
        listed = ", ".join(map(str, seeds))
        interval = (f" Each value is the mean over the {len(seeds)} training runs (seeds {listed}), "
                    "± their standard deviation; each run's bootstrap intervals are in "
                    "metrics/evaluate/<model>/<seed>.json.")
    blocks: list = [Paragraph(f"{classes[1]} is the positive class: sensitivity is the share of {classes[1]} faces "
                              f"labelled {classes[1]}, specificity the share of {classes[0]} faces labelled "
                              f"{classes[0]}; balanced accuracy their mean, which answering one class every time "
                              "scores 0.5 on whatever the classes' shares (its accuracy is in each caption)."
                              f"{interval} In round brackets: the difference to the {reference}.")]
    for split in EVALUATED_SPLITS:
        rows = []
        for name, result in results.items():
            cells = [name]
            bounds_by_metric = result.metrics.split(split).interval
            for metric in METRIC_NAMES:
                row = comparison.split(split)[metric]
                difference = f"{name}_minus_{reference}"
                bounds = bounds_by_metric.get(metric) if len(seeds) < 2 else None
                deviation = comparison.spread[split][metric][name].standard_deviation if len(seeds) > 1 else None
                cells.append(fmt(row[name]) + (f" [{fmt(bounds.low)}–{fmt(bounds.high)}]" if bounds else "")
                             + (f" ± {fmt(deviation)}" if deviation is not None else "")
                             + (f" ({signed(row[difference])})" if difference in row else ""))
            cells.append(str(result.metrics.split(split).n))
            rows.append(cells)
        majority = next(iter(results.values())).metrics.split(split).majority_rate    # the same images for all
        always = f": always answering the larger class scores {fmt(majority)} accuracy" if majority is not None else ""
        blocks.append(Table(["model", *(METRIC_TITLES[m] for m in METRIC_NAMES), "images"], rows,
                            f"{SPLIT_TITLES[split].capitalize()} split{always}"))
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


def build_report(params: Params, prepare_summary: PrepareSummary, results: dict[str, ModelResults],
                 comparison: Comparison, figures_dir: Path, provenance: Provenance,
                 cards: Sequence[CardInputs] = (), duplicates: Path | None = None) -> list[Section]:
    """All sections, in reading order, each model's card last; figures (and prepare's of duplicates) go to figures_dir."""
    classes = params.prepare.classes
    test_counts = prepare_summary.counts["test"]
    test_share = {label: test_counts[label] / max(test_counts["total"], 1) for label in classes}
    sections = []
    if params.download.source == "sample":
        sections.append(Section("banner", "Read this first", [Banner(
            "These results come from the synthetic offline sample (download.source: sample): drawn cartoon faces, "
            "not photographs of people. They show that the pipeline runs end to end; they say nothing about how "
            "well these models classify real faces. Set download.source: kaggle for real results.")]))
    duplicates = duplicates and copy_figure(duplicates, figures_dir, "duplicates.png")
    sections.append(data_section(params, prepare_summary, provenance, duplicates))
    sections += model_sections(results, params)
    if len(params.seeds) > 1:
        sections.append(Section("seeds", "Training runs", [Paragraph(
            f"Every model trained once per seed ({', '.join(map(str, params.seeds))}: params.yaml's seeds). The "
            "metrics and the paired tests below use every run; the layer tables above and the figures, curves "
            f"and heat maps below show each model's run with the first seed, {params.seeds[0]}.")]))
    sections += figure_sections(results, figures_dir)
    runs = {name: result.metrics for name, result in results.items()}     # each model's first seed's run
    sections.append(metrics_section(results, comparison, classes))
    sections.append(groups_section(runs, classes, provenance.source, params.seeds))
    reliability = {name: copy_figure(result.evaluation.reliability_figure, figures_dir, f"{name}_reliability.png")
                   for name, result in results.items() if result.metrics.calibration}
    sections.append(calibration_section(runs, reliability, params.evaluate.threshold))
    metrics = {name: comparison.over_seeds(name, result.metrics) for name, result in results.items()}
    sections.append(Section("discussion", "Discussion", discussion(metrics, classes, test_share, comparison)))
    sections += explanation_sections(results, figures_dir, classes)
    sections.append(ethics_section(params, test_share, any(map(has_groups, runs.values()))))
    model_ideas = [idea for result in results.values() for idea in result.training.more_compute]
    sections.append(compute_section(params, model_ideas))
    if cards:
        sections.append(Section("cards", "Model cards", [Paragraph(
            "Each model's card, also in models/<model>/MODEL_CARD.md (the cards stage): what it is, its data, its "
            "metrics on both splits, what it is for and what it must not be used for.")]))
        for card in cards:
            sections.append(Section(f"card-{card.name}", card_title(card.name, card.metrics[0].description), [], 3))
            sections += card_sections(card, level=4)
    return sections


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    params = load_params()
    prepare_summary = PrepareSummary.read(PrepareSummary.path)
    results = {name: read_results(name, params.seeds[0]) for name in params.model_names}
    comparison = Comparison.read(Comparison.path)
    provenance = Provenance.read(Provenance.path)
    with staged_dir(REPORTS_DIR) as staging:
        figures_dir = staging / "figures"
        figures_dir.mkdir()
        cards = [read_card_inputs(name, params) for name in params.model_names]
        duplicates = duplicates_figure(PREPARED_DIR)
        sections = build_report(params, prepare_summary, results, comparison, figures_dir, provenance, cards,
                                duplicates if duplicates.is_file() else None)
        (staging / "report.md").write_text(to_markdown(TITLE, sections, staging), encoding="utf-8")
        (staging / "report.html").write_text(to_html(TITLE, sections), encoding="utf-8")
    print(f"wrote {REPORTS_DIR / 'report.html'} and {REPORTS_DIR / 'report.md'}")


if __name__ == "__main__":
    cli.run(main)
