"""report: sections, embedded figures, and a discussion that follows the numbers."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import evaluate, report
from stages.analysis import figures
from stages.analysis.cards import SYNTHETIC_GROUPS, CardInputs, groups_section
from stages.analysis.discussion import compute_section, discussion, ethics_section
from stages.analysis.document import Figure, Paragraph, Section, Table, to_html, to_markdown
from stages.analysis.groups import split_groups
from stages.analysis.statistics import METRIC_NAMES, classification_metrics, roc_points
from stages.common.config import CalibrationParams
from stages.compare import compare
from stages.contracts.comparison import Comparison, PairedTest
from stages.contracts.evaluation import EvaluationDir, ModelMetrics, ReliabilityCurves, RocCurves
from stages.contracts.prepared import PreparedWriter, PrepareSummary, duplicate_keys
from stages.contracts.provenance import DatasetProvenance, Provenance
from stages.contracts.training import TrainingInfo, TrainMetrics
from stages.evaluate import confident_examples, save_explanations
from tests.helpers import png_bytes

CLASSES = ["Female", "Male"]
SECTION_IDS = ["banner", "data", "models", "learning-curves", "roc", "confusion", "metrics", "groups", "calibration",
               "discussion", "mistakes", "correct", "ethics", "compute", "cards"]


def split_metrics(labels, probabilities) -> dict:
    metrics = classification_metrics(np.array(labels), np.array(probabilities))
    return {key: metrics[key] for key in (*METRIC_NAMES, "n", "confusion", "majority_rate")}


def make_results(root: Path, quality: dict[str, tuple[float, float]]) -> dict[str, report.ModelResults]:
    """Models whose P(Male) separates the classes by the given (val, test) margins, with real figures."""
    rng = np.random.default_rng(0)
    (root / "prepared").mkdir(parents=True)
    files = []
    labels = np.array([0] * 8 + [1] * 12)
    with PreparedWriter(root / "prepared", CLASSES) as prepared:
        for index, label in enumerate(labels):
            name = f"img{index:02d}.png"
            prepared.add("test", CLASSES[label], name, png_bytes(Image.fromarray(
                rng.integers(0, 255, (100, 100, 3), dtype=np.uint8))))
            files.append(f"test/{CLASSES[label]}/{name}")
    results = {}
    for name, margins in quality.items():
        evaluation, roc = EvaluationDir.of(name, 2021, root / "evaluate"), RocCurves.of(name, 2021, root / "roc")
        evaluation.root.mkdir(parents=True)
        roc.root.mkdir(parents=True)
        metrics = {"description": f"{name} model"}
        by_split = {}
        for split, margin in zip(("val", "test"), margins):
            probabilities = np.clip(0.5 + margin * (labels - 0.5) * 2 + rng.normal(0, 0.25, labels.size), 0, 1)
            by_split[split] = pd.DataFrame({"label": labels, "probability": probabilities})
            measured = split_metrics(labels, probabilities)
            metrics[split] = {key: measured[key] for key in METRIC_NAMES} | {"n": measured["n"],
                                                                             "majority_rate": measured["majority_rate"]}
            if split == "test":     # two groups of 4 Female and 6 Male images each, as groups.csv would give
                metrics[split]["groups"] = split_groups(labels, probabilities, ["light", "dark"] * 10, CLASSES, 0.5, 3,
                                                        100, 0, 0.95)
            roc.write(split, pd.DataFrame(roc_points(labels, probabilities)))
            predicted = (probabilities >= 0.5).astype(int)
            evaluation.write_predictions(split, pd.DataFrame({
                "file": files, "actual": [CLASSES[i] for i in labels], "predicted": [CLASSES[i] for i in predicted],
                "probability": probabilities.round(6)}))
            figures.save(figures.confusion_figure(measured["confusion"], CLASSES, split),
                         evaluation.confusion_figure(split))
        # Heat maps as evaluate writes them (random maps here: the report only shows them).
        chosen = confident_examples(evaluation.read_predictions("test"), 3, CLASSES)
        save_explanations(chosen, rng.uniform(0, 255, (len(chosen), 100, 100, 3)),
                          rng.uniform(0, 1, (len(chosen), 100, 100)), "gradcam", evaluation)
        history = pd.DataFrame({"epoch": range(3), "loss": [0.7, 0.6, 0.5], "accuracy": [0.5, 0.6, 0.7],
                                "val_loss": [0.7, 0.65, 0.6], "val_accuracy": [0.5, 0.55, 0.6]})
        figures.save(figures.learning_curves(history, name), evaluation.learning_curves_figure)
        training = TrainingInfo(
            model=name, description=metrics["description"], classes=CLASSES, epochs_requested=5, epochs_run=3,
            parameters={"total": 10, "trainable": 8, "non_trainable": 2},
            layers=[{"name": "dense", "type": "Dense", "output_shape": "(None, 1)", "parameters": 10}],
            more_compute=[f"An idea of {name}'s."])
        # Calibration as evaluate measures it, and its figure as evaluate draws it.
        reliability = ReliabilityCurves.of(name, 2021, root / "calibration")
        reliability.root.mkdir(parents=True)
        out = evaluate.Outputs(evaluation, roc, None, reliability)
        metrics["calibration"] = evaluate.calibrate(by_split, CalibrationParams(bins=5, temperature=True, youden=True),
                                                    None, reliability)
        evaluate.write_reliability_figure(out, name, metrics["calibration"])
        results[name] = report.ModelResults(name, ModelMetrics(**metrics), training, evaluation, roc)
    return results


def split_result(name: str, val: dict, test: dict) -> report.ModelResults:
    """A model's results with just the given metrics (the others None), for the discussion."""
    empty = dict.fromkeys(METRIC_NAMES) | {"n": 10}
    metrics = ModelMetrics(description=name, val=empty | val, test=empty | test)
    return report.ModelResults(name, metrics, None, EvaluationDir(Path(".")), RocCurves(Path(".")))


PREPARE_COUNTS = dict(
    image_size=100, counts={"train": {"Female": 5, "Male": 5, "total": 10}, "val": {"Female": 3, "Male": 3, "total": 6},
                            "test": {"Female": 8, "Male": 12, "total": 20}},
    skipped_count=1, skipped=[{"split": "test", "file": "data/raw/test/x.jpg", "reason": "empty file (0 bytes)"}],
    duplicates={key: {"exact": 0, "near": 0, "examples": []} for key in duplicate_keys()} | {"train-test": {
        "exact": 1, "near": 1, "examples": [
            {"first": "data/raw/a.jpg", "second": "data/raw/b.jpg", "distance": 7, "mirrored": True},
            {"first": "data/raw/c.jpg", "second": "data/raw/d.jpg", "distance": 0, "mirrored": False}]}},
    duplicates_dropped=2, near_duplicate_distance=12)


@pytest.fixture(scope="module")
def built(tmp_path_factory, repo_params):
    root = tmp_path_factory.mktemp("report")
    params = repo_params
    names = params.model_names
    quality = dict(zip(names, [(0.2, 0.1), (0.35, 0.15), (0.3, 0.3), (0.25, 0.2), (0.3, 0.1)]))
    results = make_results(root, quality)
    prepare_summary = PrepareSummary(**PREPARE_COUNTS)
    comparison = compare({name: [result.metrics] for name, result in results.items()}, params.compare.reference)
    figures_dir = root / "out" / "figures"
    figures_dir.mkdir(parents=True)
    provenance = Provenance(source="sample", sample=params.download.sample.model_dump(), datasets={
        name: DatasetProvenance(slug=source.slug, images=20) for name, source in params.download.datasets.items()})
    cards = [CardInputs(name, [result.metrics], [TrainMetrics(epochs_run=3, best_epoch=2, loss=0.5, accuracy=0.8,
                                                              val_loss=0.6, val_accuracy=0.7)],
                        prepare_summary, provenance, params) for name, result in results.items()]
    sections = report.build_report(params, prepare_summary, results, comparison, figures_dir, provenance, cards)
    return params, results, sections, to_html(report.TITLE, sections), to_markdown(report.TITLE, sections, root / "out"), root / "out"


def embedded_images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def test_calibration_section_has_every_model_and_split_and_its_diagrams(built):
    _, results, sections, page, _, _ = built
    section = next(section for section in sections if section.anchor == "calibration")
    tables = {block.caption: block for block in section.blocks if hasattr(block, "rows")}
    per_split = tables["Calibration per split"].rows
    assert len(per_split) == 2 * len(results)
    for row in per_split:
        found = getattr(results[row[0]].metrics.calibration, "val" if row[1] == "validation" else "test")
        assert row[2].startswith(f"{found.ece:.3f}") and row[3].startswith(f"{found.brier:.3f}")
    assert len(tables["Temperature scaling"].rows) == len(tables["Threshold chosen on validation"].rows) == len(results)
    figures_shown = [block for block in section.blocks if hasattr(block, "path")]
    assert [figure.path.name for figure in figures_shown] == [f"{name}_reliability.png" for name in results]
    assert page.count("reliability diagram, validation and cross-dataset test") == 2 * len(results)   # alt, caption


def test_every_section_in_order(built):
    _, _, _, page, _, _ = built
    positions = [page.find(f'<section id="{anchor}">') for anchor in SECTION_IDS]
    assert -1 not in positions, [a for a, p in zip(SECTION_IDS, positions) if p == -1]
    assert positions == sorted(positions)


def test_every_figure_embedded_and_not_empty(built):
    _, results, _, page, _, _ = built
    images = embedded_images(page)
    # learning curves, 2 confusion and a reliability diagram per model + 2 overlaid ROC + the heat maps
    explained = sum(len(r.evaluation.read_explanations()) for r in results.values())
    assert len(images) == 4 * len(results) + 2 + explained
    # Each heat map figure is the image beside its overlay: twice as wide (and a gap).
    assert sum(image.size == (202, 100) for image in images) == explained
    for image in images:
        pixels = np.asarray(image.convert("L"))
        assert pixels.size > 0 and pixels.std() > 1  # not blank
    assert 'src="figures/' not in page and "file://" not in page  # nothing outside the file


def test_markdown_links_figures_that_exist(built):
    *_, markdown, out = built
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all(link.startswith("figures/") for link in links)
    assert all((out / link).is_file() for link in links)


def test_numbers_equal_the_metrics(built):
    """Every metric of METRIC_NAMES (balanced accuracy beside accuracy) as the metrics files hold it, and
    in each table's caption what always answering the split's larger class scores."""
    params, results, sections, _, markdown, _ = built
    tables = {block.caption.split(":")[0]: block for section in sections if section.anchor == "metrics"
              for block in section.blocks if isinstance(block, Table)}
    assert tables["Cross-dataset test split"].header[1:3] == ["accuracy", "balanced accuracy"]
    caption = tables["Cross-dataset test split"].caption
    assert caption.endswith("always answering the larger class scores 0.600 accuracy")
    for split, caption in (("val", "Validation split"), ("test", "Cross-dataset test split")):
        for row in tables[caption].rows:
            reference = params.compare.reference
            for cell, metric in zip(row[1:], METRIC_NAMES):
                value = results[row[0]].value(split, metric)
                assert float(cell.split(" ")[0]) == pytest.approx(value, abs=5e-4)
                if row[0] != reference:
                    difference = value - results[reference].value(split, metric)
                    assert float(cell.split("(")[1].rstrip(")")) == pytest.approx(difference, abs=1e-3)
            assert f"| {row[0]} | {row[1]} |" in markdown


def test_discussion_follows_the_numbers(built):
    _, results, sections, _, _, _ = built
    text = " ".join(getattr(block, "text", " ".join(getattr(block, "items", [])))
                    for section in sections if section.anchor == "discussion" for block in section.blocks)
    best_val = max(results, key=lambda n: results[n].value("val", "roc_auc"))
    best_test = max(results, key=lambda n: results[n].value("test", "roc_auc"))
    assert f"validation split the best model by ROC AUC is {best_val} " in text
    assert f"cross-dataset test split the best model by ROC AUC is {best_test} " in text
    if best_val != best_test:
        assert "ranking changes" in text
    assert "60.0% Male: answering Male every time scores 0.600 accuracy there" in text  # 12 of 20 test images
    for name, result in results.items():
        val, test = result.metrics.val, result.metrics.test
        assert f"balanced accuracy {val.balanced_accuracy:.3f} to {test.balanced_accuracy:.3f}" in text


def test_the_data_section_gives_each_classs_share_and_the_majority_rate(built):
    _, _, sections, _, _, _ = built
    table = next(block for section in sections if section.anchor == "data" for block in section.blocks
                 if isinstance(block, Table) and "always the larger class" in block.header)
    test = next(row for row in table.rows if row[0] == "cross-dataset test")
    assert test[2:] == ["8 (40.0%)", "12 (60.0%)", "20", "0.600"]


def test_results_per_group_with_intervals_and_the_gap_and_the_samples_groups_called_synthetic(built):
    _, results, sections, page, _, _ = built
    section = next(section for section in sections if section.anchor == "groups")
    texts = [block.text for block in section.blocks if isinstance(block, Paragraph)]
    assert texts[0] == SYNTHETIC_GROUPS and "synthetic" in texts[0] and "skin tone" in texts[0]  # the sample's
    tables = [block for block in section.blocks if isinstance(block, Table)]
    assert len(tables) == 2 * len(results)                     # per model: its groups, then the gaps
    for name, result in results.items():
        groups = next(table for table in tables if table.caption.startswith(f"{name}, cross-dataset test split, per"))
        found = result.metrics.test.groups.groups
        assert [row[0] for row in groups.rows] == list(found) == ["dark", "light"]
        for row in groups.rows:
            assert row[1] == "4 / 6" and row[2].startswith(f"{found[row[0]].accuracy:.3f} (")
    ethics = next(section for section in sections if section.anchor == "ethics")
    assert "per-group results above cover only the groups" in " ".join(ethics.blocks[-1].items)
    kaggle = groups_section({}, CLASSES, "kaggle", [2021])
    assert "no per-group results" in kaggle.blocks[0].text and len(kaggle.blocks) == 1
    real = groups_section({name: result.metrics for name, result in results.items()}, CLASSES, "own", [2021])
    assert SYNTHETIC_GROUPS not in [getattr(block, "text", "") for block in real.blocks]


def test_discussion_names_the_class_wrong_more_often():
    result = split_result("m", {"accuracy": 0.8, "roc_auc": 0.9, "sensitivity": 0.9, "specificity": 0.7},
                          {"accuracy": 0.6, "roc_auc": 0.7, "sensitivity": 0.5, "specificity": 0.8})
    blocks = discussion({"m": result.metrics}, CLASSES, {"Female": 0.4, "Male": 0.6})
    text = " ".join(" ".join(b.items) if hasattr(b, "items") else b.text for b in blocks)
    assert "m, validation: 30.0% of Female and 10.0% of Male images misclassified; Female is wrong more often." in text
    assert "m, cross-dataset test: 20.0% of Female and 50.0% of Male images misclassified; Male is wrong more often." in text
    assert "(drop 0.200)" in text


def test_heat_map_galleries_name_the_method_and_every_class(built):
    _, results, _, page, _, _ = built
    mistakes = page[page.index('<section id="mistakes">'):page.index('<section id="correct">')]
    correct = page[page.index('<section id="correct">'):page.index('<section id="ethics">')]
    assert "Grad-CAM" in mistakes and "Grad-CAM" in correct
    for name in results:
        assert f"{name}:" in mistakes and f"{name}, Female:" in correct and f"{name}, Male:" in correct


def test_data_section_shows_where_the_data_came_from(built):
    params, _, sections, page, _, _ = built
    data = page[page.index('<section id="data">'):page.index('<section id="models">')]
    assert f"seed {params.download.sample.seed}" in data and "test_images" in data
    kaggle = Provenance(source="kaggle", datasets={"trainval": DatasetProvenance(
        slug="owner/faces", images=12, version=4, last_updated="2021-04-15T10:20:30Z", license="CC0: Public Domain",
        downloaded_at="2026-11-29T18:27:31Z")})
    html = to_html("t", [report.data_section(params, PrepareSummary(**PREPARE_COUNTS), kaggle)])
    assert "version 4 (the latest at download time), updated 2021-04-15, downloaded 2026-11-29 18:27 UTC" in html
    assert "CC0: Public Domain" in html and "latest at download time" in html
    own = Provenance(source="own", datasets={"own": DatasetProvenance(slug="/data/my_faces", images=2300)})
    html = to_html("t", [report.data_section(params, PrepareSummary(**PREPARE_COUNTS), own)])
    assert "your own data, copied from /data/my_faces, 2300 image files" in html
    assert "read cross-dataset test below as held-out test" in html and "Kaggle" not in html


def test_sample_banner_only_for_the_sample(built):
    params, results, _, page, _, _ = built
    assert "synthetic offline sample" in page
    kaggle = params.model_copy(update={"download": params.download.model_copy(update={"source": "kaggle"})})
    sections = [ethics_section(kaggle, {"Female": 0.5, "Male": 0.5}), compute_section(kaggle, [])]
    assert "synthetic" not in to_html("t", sections)


def test_every_models_card_closes_the_report(built):
    """The cards stage's sections, for every model, after the rest (models/<model>/MODEL_CARD.md has the same)."""
    params, results, sections, page, markdown, _ = built
    names = [section.anchor for section in sections]
    assert names.index("cards") > names.index("compute")
    for name, result in results.items():
        assert f'<section id="card-{name}"><h3>Model card: {name} ({result.description})</h3>' in page
        assert f'<section id="card-{name}-misuse"><h4>Uses it must not serve</h4>' in page
        auc = result.metrics.test.roc_auc
        assert "| ROC AUC |" in markdown and f"{auc:.3f}" in markdown


def test_html_escapes_text(tmp_path):
    figure = tmp_path / "f.png"
    Image.new("RGB", (4, 4), "red").save(figure)
    page = to_html("a <b>", [Section("s", "x & y", [Table(["<th>"], [["<td>"]]), Figure(figure, "<c>")])])
    assert "<b>" not in page.split("<body>")[1] and "&lt;th&gt;" in page and "x &amp; y" in page


def test_differences_are_called_from_the_paired_tests_not_from_their_size():
    def result(val_auc, test_auc):
        split = {"accuracy": 0.8, "sensitivity": 0.8, "specificity": 0.8}
        return split_result("m", split | {"roc_auc": val_auc}, split | {"roc_auc": test_auc})

    def comparison(p_value):
        test = PairedTest(first="b", second="a", images=800, roc_auc_difference=0.006, roc_auc_standard_error=0.01,
                          roc_auc_p_value=p_value, accuracy_difference=0.0, only_first_right=5,
                          only_second_right=5, accuracy_p_value=1.0)
        empty = {metric: {} for metric in METRIC_NAMES}
        return Comparison(reference="a", models={"a": "m", "b": "m"}, val=empty, test=empty,
                          tests={"test": {"b_vs_a": test}})

    def text(results, compared=None):
        return " ".join(b.text for b in discussion({name: r.metrics for name, r in results.items()}, CLASSES, {"Female": 0.5, "Male": 0.5},
                                                   compared)
                        if hasattr(b, "text"))

    close = {"a": result(0.90, 0.815), "b": result(0.87, 0.821)}    # the same 0.006 gap, three ways
    noise = text(close, comparison(0.4))
    assert "a leads on validation but b on the cross-dataset test" in noise
    assert "not significant at 5% (DeLong, p = 0.4)" in noise and "weaker model" not in noise
    real = text(close, comparison(0.001))
    assert "significant at 5% (DeLong, p = 0.001)" in real and "not significant" not in real
    assert "weaker model" in real
    untested = text(close)
    assert "no paired test" in untested and "significant" not in untested
    mixed = text({"a": result(0.80, 0.85), "b": result(0.87, 0.80)})
    assert "1 of 2 models lose ground" in mixed


def test_an_undefined_delong_test_is_called_undefined_with_its_reason():
    split = {"accuracy": 0.8, "sensitivity": 0.8, "specificity": 0.8}
    results = {"a": split_result("m", split | {"roc_auc": 0.90}, split | {"roc_auc": 0.815}),
               "b": split_result("m", split | {"roc_auc": 0.87}, split | {"roc_auc": 0.821})}
    reason = "DeLong's variance needs at least 2 images of each class; one class has 1"
    test = PairedTest(first="b", second="a", images=8, roc_auc_difference=0.006, roc_auc_standard_error=None,
                      roc_auc_p_value=None, roc_auc_test_undefined=reason, accuracy_difference=0.0, only_first_right=1,
                      only_second_right=1, accuracy_p_value=1.0)
    empty = {metric: {} for metric in METRIC_NAMES}
    compared = Comparison(reference="a", models={"a": "m", "b": "m"}, val=empty, test=empty,
                          tests={"test": {"b_vs_a": test}})
    text = " ".join(b.text if hasattr(b, "text") else " ".join(b.items)
                    for b in discussion({name: r.metrics for name, r in results.items()}, CLASSES,
                                        {"Female": 0.5, "Male": 0.5}, compared))
    assert f"DeLong's test undefined ({reason})" in text
    assert "b: ROC AUC +0.006, DeLong's test undefined" in text and "no paired test" not in text


def test_compute_section_has_each_models_own_ideas(built):
    _, results, sections, _, _, _ = built
    compute = next(section for section in sections if section.anchor == "compute")
    items = [item for block in compute.blocks for item in getattr(block, "items", [])]
    for name in results:
        assert f"An idea of {name}'s." in items


def test_duplicates_are_reported_by_kind_with_their_example_pairs(built):
    *_, markdown, _ = built
    assert "| train and test | 1 | 1 |" in markdown and "| train and val |" not in markdown
    assert "2 training images that copy a validation or test image were dropped (prepare.drop_duplicates)" in markdown
    assert "| train and test | data/raw/a.jpg | data/raw/b.jpg | 7, mirrored |" in markdown
    assert "at most 12 bits apart" in markdown


def test_prepares_figure_of_duplicate_pairs_is_in_the_report_and_no_pair_is_said_so(tmp_path, repo_params):
    drawn = tmp_path / "duplicates.png"
    Image.new("RGB", (20, 10), "red").save(drawn)
    summary = PrepareSummary(**PREPARE_COUNTS)
    provenance = Provenance(source="sample", sample={}, datasets={})
    section = report.data_section(repo_params, summary, provenance, drawn)
    assert any(isinstance(block, Figure) and block.path == drawn for block in section.blocks)
    none = PrepareSummary(**PREPARE_COUNTS | {"duplicates": {key: {"exact": 0, "near": 0, "examples": []}
                                                             for key in duplicate_keys()}, "duplicates_dropped": 0})
    text = " ".join(getattr(block, "text", "") for block in report.data_section(repo_params, none, provenance).blocks)
    assert "No picture appears twice, within a split or across two" in text


def test_roc_legend_shows_the_auc_and_its_interval():
    curves = {"with": ([0, 0.2, 1], [0, 0.8, 1], 0.8, (0.75, 0.85)), "without": ([0, 1], [0, 1], 0.5),
              "undefined": ([0, 1], [0, 1], None, None)}
    figure = figures.roc_figure(curves, "t")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["with (AUC = 0.800 [0.750–0.850])", "without (AUC = 0.500)", "undefined (AUC = n/a)"]
