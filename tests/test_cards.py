"""Model cards: every section the card needs, its numbers read from the run's metrics (checked against
the files here, never typed in), the sample flagged, uneven errors named, and the report carrying the
same cards. Built from the metrics committed in metrics/ (the last `dvc repro` of this checkout)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stages import cards as cards_command
from stages.analysis import cards
from stages.analysis.document import Bullets, Paragraph, Section, Table, to_markdown
from stages.common.errors import UserError
from stages.contracts.evaluation import ModelMetrics, SplitMetrics
from stages.contracts.prepared import PrepareSummary
from stages.contracts.provenance import DatasetProvenance, Provenance
from tests.helpers import ROOT, run_cli

TITLES = ["What it is", "Training and test data", "Metrics", "Intended use", "Uses it must not serve", "Limits"]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture
def inputs(in_repo, repo_params):
    return {name: cards.read_card_inputs(name, repo_params) for name in repo_params.model_names}


def text_of(sections) -> str:
    return to_markdown("card", sections, ROOT)


def test_every_model_has_every_section(inputs):
    for name, card in inputs.items():
        sections = cards.card_sections(card)
        assert [section.title for section in sections] == TITLES
        assert all(section.blocks for section in sections)
        assert f"**{name}**: {card.metrics[0].description}." in text_of(sections[:1])


def test_metrics_with_intervals_and_the_drop_come_from_the_metrics_file(inputs, repo_params):
    for name, card in inputs.items():
        saved = ModelMetrics.read(ModelMetrics.path(name, repo_params.seeds[0]))
        table = next(block for block in cards.metric_blocks(card) if isinstance(block, Table))
        assert table.header[1:3] == [f"validation (n={saved.val.n})", f"test (n={saved.test.n})"]
        rows = {row[0]: row for row in table.rows}
        titles = list(cards.METRICS.values())
        assert list(rows) == [*titles[:3], cards.MAJORITY, *titles[3:]]     # beside accuracy and balanced accuracy
        # a property of the split: no interval
        assert rows[cards.MAJORITY][1:3] == [f"{saved.val.majority_rate:.3f}", f"{saved.test.majority_rate:.3f}"]
        for metric, title in cards.METRICS.items():
            val, test = getattr(saved.val, metric), getattr(saved.test, metric)
            low, high = saved.test.interval[metric].low, saved.test.interval[metric].high
            assert rows[title][1].startswith(f"{val:.3f} (")
            assert rows[title][2] == f"{test:.3f} ({low:.3f}-{high:.3f})"
            assert rows[title][3] == f"{test - val:+.3f}"


def test_data_shares_come_from_prepare_and_the_sample_is_flagged(inputs, repo_params):
    counts = PrepareSummary.read(PrepareSummary.path).counts
    card = inputs[repo_params.model_names[0]]
    blocks = cards.data_blocks(card)
    table = blocks[0]
    for row in table.rows:
        split = row[0]
        assert row[2] == str(counts[split]["total"])
        for name in repo_params.prepare.classes:
            share = counts[split][name] / counts[split]["total"]
            assert f"{name} {counts[split][name]} ({share:.1%})" in row[3]
    flagged = any(isinstance(block, Paragraph) and "offline sample" in block.text for block in blocks)
    assert flagged == (card.provenance.source == "sample")
    real = card.provenance.model_copy(update={"source": "kaggle", "sample": None})
    real_blocks = cards.data_blocks(cards.CardInputs(**{**card.__dict__, "provenance": real}))
    assert not any(isinstance(block, Paragraph) and "offline sample" in block.text for block in real_blocks)
    said = " ".join(next(b for b in blocks if isinstance(b, Bullets)).items)
    if cards.has_groups(card.metrics[0]):
        assert "Per-group results are under Metrics" in said
        assert ("synthetic skin tone" in said) == (card.provenance.source == "sample")
    else:
        assert "No age, skin-tone" in said


def test_the_uses_it_must_not_serve_are_named(inputs):
    text = text_of(cards.card_sections(next(iter(inputs.values()))))
    for must_not in ("gender identity", "Decisions about people", "Surveillance"):
        assert must_not in text


def split(sensitivity: float, specificity: float) -> SplitMetrics:
    return SplitMetrics(accuracy=0.8, sensitivity=sensitivity, specificity=specificity, precision=0.8, f1=0.8,
                        roc_auc=0.85, n=100)


@pytest.mark.parametrize("sensitivity, specificity, named", [(0.9, 0.6, "Female"), (0.6, 0.9, "Male"), (0.8, 0.78, None)])
def test_uneven_errors_name_the_class_that_bears_them(inputs, sensitivity, specificity, named):
    card = next(iter(inputs.values()))
    metrics = card.metrics[0].model_copy(update={"test": split(sensitivity, specificity)})
    line = next(item for item in cards.limits(cards.CardInputs(**{**card.__dict__, "metrics": [metrics]}))
                if item.startswith("On the test split"))
    assert f"misses {1 - sensitivity:.1%} of Male faces and {1 - specificity:.1%} of Female faces" in line
    assert (f"its errors fall more on {named} faces" in line) if named else line.endswith("Female faces.")


def test_the_command_writes_the_card_and_refuses_an_unknown_model(in_repo, repo_params, tmp_path, monkeypatch):
    monkeypatch.setattr(cards_command, "MODELS_DIR", tmp_path)
    name = repo_params.model_names[0]
    assert run_cli(cards_command.main, [name]) == 0
    text = (tmp_path / name / cards_command.CARD_FILE).read_text()
    assert text.startswith(f"# Model card: {name} (")
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == TITLES
    assert [path.name for path in (tmp_path / name).iterdir()] == [cards_command.CARD_FILE]   # no temporary left
    with pytest.raises(UserError, match=r"nosuch: not a model of params.yaml's train section"):
        cards_command.main(["nosuch"])


def grouped(metrics: ModelMetrics) -> ModelMetrics:
    """The run's metrics with hand-made groups on the test split: a and b measured, c too small."""
    import numpy as np

    from stages.analysis.groups import split_groups

    labels = np.array([1] * 50 + [0] * 30 + [1] * 50 + [0] * 30 + [1] * 5 + [0] * 5)
    right = np.concatenate([np.arange(50) < 40, np.arange(30) < 20, np.arange(50) < 45, np.arange(30) < 27,
                            np.ones(10, bool)])
    probabilities = np.where(right == (labels == 1), 0.8, 0.3)
    groups = ["a"] * 80 + ["b"] * 80 + ["c"] * 10
    found = split_groups(labels, probabilities, groups, ["Female", "Male"], 0.5, 10, 200, 1, 0.95)
    return metrics.model_copy(update={"val": metrics.val.model_copy(update={"groups": None}),
                                      "test": metrics.test.model_copy(update={"groups": found})})


def test_a_card_shows_each_group_with_intervals_and_the_gap_and_says_the_samples_groups_are_synthetic(inputs):
    card = next(iter(inputs.values()))
    card = cards.CardInputs(**{**card.__dict__, "metrics": [grouped(card.metrics[0])]})
    blocks = cards.metric_blocks(card)
    tables = [block for block in blocks if isinstance(block, Table)]
    assert len(tables) == 3                                  # the metrics, then the test split's groups and gaps
    per_group, gaps = tables[1], tables[2]
    assert per_group.header[:4] == ["group", "images (Female / Male)", "accuracy", "balanced accuracy"]
    rows = {row[0]: row for row in per_group.rows}
    found = card.metrics[0].test.groups.groups["a"]
    assert rows["a"][1] == "30 / 50" and rows["a"][2] == (f"{found.accuracy:.3f} ({found.interval['accuracy'].low:.3f}-"
                                                          f"{found.interval['accuracy'].high:.3f})")
    assert rows["a"][2].startswith("0.750 (") and rows["b"][2].startswith("0.900 (")
    assert rows["c"][2:] == ["n/a"] * 5
    text = text_of([cards.Section("m", "Metrics", blocks)])
    assert "No numbers for c (only 5 Female and 5 Male images; a group needs 10 of each class for numbers)" in text
    gap = {row[0]: row for row in gaps.rows}["accuracy"]
    assert gap[1:3] == ["0.150", "b - a"] and gap[3].endswith(" (95.0%)")      # two groups: one pair, as asked
    assert (cards.SYNTHETIC_GROUPS in text) == (card.provenance.source == "sample")
    assert any("balanced accuracy differs by up to" in item for item in cards.limits(card))


def test_a_card_of_your_own_data_names_your_folder_and_what_one_source_cannot_tell(inputs, repo_params):
    own = Provenance(source="own", datasets={"own": DatasetProvenance(slug="/data/my_faces", images=2300)})
    card = replace(inputs[repo_params.model_names[0]], provenance=own)
    text = to_markdown("card", [Section("data", "Data", cards.data_blocks(card))], ROOT)
    assert "your own data, copied from /data/my_faces" in text
    assert "not on photos unlike them" in text and "Kaggle" not in text and "offline sample" not in text
