"""train and evaluate through the model interface: any model module works; the transfer head on
cached features gives the full model's probabilities."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages import evaluate, features, train
from stages.analysis.statistics import METRIC_NAMES
from stages.common.config import BootstrapParams, CalibrationParams, ExplainParams, FitParams, load_params
from stages.common.errors import UserError
from stages.common.machine import cpu_info
from stages.compare import compare
from stages.contracts.evaluation import ConfusionCounts, EvaluationDir, ModelMetrics, ReliabilityCurves, RocCurves
from stages.contracts.manifests import FeaturesManifest
from stages.contracts.training import LearningCurves, ModelDir, ParameterCounts, TrainingInfo, TrainMetrics
from stages.modelkit import fitting, registry
from stages.modelkit.family import DataRoots, ModelFamily
from stages.modelkit.fitting import predict_records
from stages.modelkit import vgg16
from stages.models import transfer
from tests.helpers import (make_tfrecords_project, needs_onednn_bfloat16, raw_repo_params, record_explainer_thresholds,
                           run_tfrecords)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """data/tfrecords of a tiny prepared tree (13 train, 5 val, 6 test images)."""
    return run_tfrecords(make_tfrecords_project(tmp_path_factory.mktemp("project")))


def training_info(**details) -> TrainingInfo:
    return TrainingInfo(model="transfer", description="test", classes=["Female", "Male"], epochs_requested=1,
                        epochs_run=1, parameters=ParameterCounts(total=0, trainable=0, non_trainable=0),
                        layers=[], details=details)


@pytest.mark.parametrize("precision", ["float32", pytest.param("bfloat16", marks=needs_onednn_bfloat16)])
def test_head_on_cached_features_equals_full_model(records, tmp_path, precision):
    """Same files, labels and probabilities (features stored unrounded in the base's dtype, streamed
    from shards: only summation order differs)."""
    params = registry.family("transfer", load_params()).params.model_copy(
        update={"weights": "none", "precision": precision})
    keras.utils.set_random_seed(7)
    extractor = vgg16.feature_extractor((100, 100, 3), "none", params.feature_layer, precision)
    cached = tmp_path / "features"
    cached.mkdir()
    shape = list(extractor.output.shape[1:])
    splits = {split: features.extract_split(extractor.predict_on_batch, shape, records, split, cached, batch_size=4,
                                            shard_size=2)
              for split in ("val", "test")}
    assert len(splits["test"].shards) == 3
    FeaturesManifest(weights="none", feature_layer=params.feature_layer, precision=precision, weights_label="random",
                     dtype=precision, splits=splits).write(cached / FeaturesManifest.name)
    keras.utils.set_random_seed(8)
    base = extractor.get_layer("vgg16")
    head = transfer.make_head(tuple(base.output.shape[1:]), params)
    model = transfer.make_model((100, 100, 3), params, base=base, head=head)
    training = training_info(weights="none", feature_layer=params.feature_layer, precision=precision,
                             fine_tuned=False)
    assert transfer.uses_cached_features(training, cached)   # so the features path is the one tested
    for split in ("val", "test"):
        from_features = transfer.Family.predict_split(model, training, DataRoots(records, cached), split, batch_size=3)
        from_images = predict_records(model, records, split, batch_size=3)
        assert list(from_features["file"]) == list(from_images["file"])
        assert list(from_features["label"]) == list(from_images["label"])
        assert np.ptp(from_images["probability"]) > 1e-6, "the check needs outputs that differ per image"
        np.testing.assert_allclose(from_features["probability"], from_images["probability"], rtol=1e-5, atol=1e-7)
    # A fine-tuned base is not the one the features came from: the full model scores the images.
    fine_tuned = training_info(weights="none", feature_layer=params.feature_layer, precision=precision, fine_tuned=True)
    scored = transfer.Family.predict_split(model, fine_tuned, DataRoots(records, cached), "val", batch_size=3)
    np.testing.assert_array_equal(scored["probability"], predict_records(model, records, "val", 3)["probability"])


HED4 = {"weights": "hed", "feature_layer": "block4_pool", "precision": "float32", "fine_tuned": False}


@pytest.mark.parametrize("details, in_features, expected", [
    (HED4, ("hed", "block4_pool", "float32"), True),
    (HED4 | {"fine_tuned": True}, ("hed", "block4_pool", "float32"), False),   # fine-tuning changed the base
    (HED4, ("none", "block4_pool", "float32"), False),                         # other weights
    (HED4, ("hed", "block5_pool", "float32"), False),                          # cut elsewhere
    (HED4, ("hed", "block4_pool", "bfloat16"), False),                         # computed in another precision
    (HED4 | {"precision": "bfloat16"}, ("hed", "block4_pool", "bfloat16"), True),
    (HED4, None, False),                                                       # no features
    ({}, ("hed", "block4_pool", "float32"), False),                            # says nothing of a base
])
def test_cached_features_only_when_they_match_the_model(tmp_path, details, in_features, expected):
    if in_features is not None:
        weights, layer, precision = in_features
        FeaturesManifest(weights=weights, feature_layer=layer, precision=precision, weights_label="x",
                         dtype=precision, splits={}).write(tmp_path / FeaturesManifest.name)
    assert transfer.uses_cached_features(training_info(**details), tmp_path) is expected


# --- a model the stages have never heard of ----------------------------------------------------------

class TinyParams(FitParams):
    pool: int


class TinyFamily(ModelFamily):
    """Logistic regression on average-pooled pixels: a fourth model, in one module."""

    Params = TinyParams
    title = "tiny pooled-pixel regression"

    def build(self, input_shape):
        return keras.Sequential([keras.Input(shape=input_shape), keras.layers.Rescaling(1 / 255),
                                 keras.layers.AveragePooling2D(self.params.pool), keras.layers.Flatten(),
                                 keras.layers.Dense(1, activation="sigmoid")], name="tiny")


@pytest.fixture
def tiny_model(monkeypatch, tmp_path):
    """params.yaml with a train.tiny section and a module stages.models.tiny, as a user would add them."""
    module = types.ModuleType("stages.models.tiny")
    module.Params, module.Family = TinyParams, TinyFamily
    monkeypatch.setitem(sys.modules, "stages.models.tiny", module)
    raw = raw_repo_params()
    raw["train"]["tiny"] = raw["train"]["baseline"] | {"epochs": 2, "batch_size": 4, "pool": 10}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


def test_a_new_model_trains_and_evaluates_through_the_interface(tiny_model, records, tmp_path):
    family = registry.table(tiny_model)["tiny"]
    assert isinstance(family, TinyFamily) and family.params.pool == 10
    data = DataRoots(records, tmp_path / "no-features")
    model_dir = ModelDir.of("tiny", 2021, tmp_path / "models")
    curves = LearningCurves.of("tiny", 2021, tmp_path / "curves")
    model_dir.root.mkdir(parents=True)
    curves.root.mkdir(parents=True)
    info, train_metrics = train.fit(family, data, model_dir.root, curves.root)
    assert (info.model, info.description, info.epochs_run, train_metrics.epochs_run) == ("tiny", TinyFamily.title, 2, 2)
    assert info.parameters.total == 10 * 10 * 3 + 1   # 100x100 pooled by 10, one sigmoid unit
    assert TrainingInfo.read(model_dir.training) == info
    assert sorted(path.name for path in model_dir.root.iterdir()) == ["model.keras", "summary.txt", "training.json"]
    history = curves.read()
    assert list(history["epoch"]) == [0, 1]
    assert train_metrics.val_loss == history["val_loss"].min()
    out = evaluate.Outputs(*(kind.of("tiny", 2021, tmp_path / kind.__name__) for kind in
                             (EvaluationDir, RocCurves, ConfusionCounts, ReliabilityCurves)))
    for folder in (out.evaluation, out.roc, out.confusion, out.reliability):
        folder.root.mkdir(parents=True)
    metrics = evaluate.evaluate(registry.family_class("tiny"), model_dir, curves, data, out, ["Female", "Male"], 0.5, 4)
    assert metrics.description == TinyFamily.title
    assert (metrics.val.n, metrics.test.n) == (5, 6)
    assert len(out.evaluation.read_predictions("test")) == 6
    assert out.evaluation.confusion_figure("val").stat().st_size > 0
    counts = out.confusion.read("test")
    assert counts["count"].sum() == 6 and len(counts) == 4
    assert list(out.roc.read("val").columns) == ["fpr", "tpr", "threshold"]
    table = compare({"tiny": [metrics], "other": [metrics]}, reference="other")
    assert table.val["roc_auc"]["tiny_minus_other"] == 0.0
    assert metrics.bootstrap is None and metrics.val.interval == {}     # no evaluate.bootstrap given: none

    bootstrap = BootstrapParams(resamples=300, level=0.9, seed=1)
    with_intervals = evaluate.evaluate(registry.family_class("tiny"), model_dir, curves, data, out, ["Female", "Male"],
                                       0.5, 4, bootstrap=bootstrap)
    assert with_intervals.bootstrap.model_dump() == bootstrap.model_dump()
    for split in ("val", "test"):
        values = with_intervals.split(split)
        for name in METRIC_NAMES:
            value, bounds = getattr(values, name), values.interval[name]
            if value is None:
                assert bounds is None, name
            else:
                assert bounds.low - 1e-6 <= value <= bounds.high + 1e-6, (split, name)
    with_intervals.write(tmp_path / "with_intervals.json")
    assert ModelMetrics.read(tmp_path / "with_intervals.json") == with_intervals      # round trip, intervals kept
    assert with_intervals.calibration is None and not out.reliability.file("val").exists()   # not asked for

    settings = CalibrationParams(bins=4, temperature=True, youden=True)
    calibrated = evaluate.evaluate(registry.family_class("tiny"), model_dir, curves, data, out, ["Female", "Male"],
                                   0.5, 4, bootstrap=bootstrap, calibration=settings).calibration
    for split, count in (("val", 5), ("test", 6)):
        points, found = out.reliability.read(split), getattr(calibrated, split)
        assert points["count"].sum() == count and ((points["lower"] <= points["predicted"])
                                                   & (points["predicted"] <= points["upper"])).all()
        assert found.ece == pytest.approx(sum(points["count"] * (points["observed"] - points["predicted"]).abs())
                                          / count, abs=1e-5)
        assert found.interval["brier"].low <= found.brier <= found.interval["brier"].high
    assert calibrated.bins == 4 and calibrated.threshold.method == "youden"
    assert (calibrated.temperature.temperature is None) == (calibrated.temperature.test is None)
    assert out.evaluation.reliability_figure.stat().st_size > 0


def curve_snapshots(monkeypatch, folder: Path) -> list[dict[str, str]]:
    """After each epoch of every fit: folder's files and their text (empty while it does not exist)."""
    snapshots: list[dict[str, str]] = []
    original = fitting.HistoryLogger.on_epoch_end

    def after_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        snapshots.append({path.name: path.read_text() for path in sorted(folder.glob("*"))} if folder.is_dir() else {})

    monkeypatch.setattr(fitting.HistoryLogger, "on_epoch_end", after_epoch)
    return snapshots


def test_learning_curves_are_written_after_every_epoch_and_end_as_the_final_files(tiny_model, records, tmp_path,
                                                                                monkeypatch):
    family = registry.table(tiny_model)["tiny"]                     # 2 epochs
    live, final = tmp_path / "plots" / "tiny", tmp_path / "staged-curves"
    (tmp_path / "model").mkdir()
    final.mkdir()
    snapshots = curve_snapshots(monkeypatch, live)
    with fitting.curves_during_training(live):
        train.fit(family, DataRoots(records, tmp_path / "no-features"), tmp_path / "model", final)
    assert len(snapshots) == 2
    assert sorted(snapshots[0]) == ["accuracy.csv", "loss.csv"]
    assert [len(files["loss.csv"].splitlines()) for files in snapshots] == [2, 3]     # header + one row an epoch
    assert snapshots[0]["loss.csv"].splitlines()[1].startswith("1,")
    assert snapshots[-1] == {path.name: path.read_text() for path in sorted(final.glob("*"))}   # the final bytes


@pytest.mark.parametrize("under_dvc", [True, False])
def test_the_train_stage_writes_curves_as_it_goes_only_under_dvc(tiny_model, records, tmp_path, monkeypatch, under_dvc):
    """Under `dvc repro` DVC has removed the stage's outputs first, so nothing earlier is lost; run by
    hand, the earlier curves stay until the new ones replace them whole."""
    project = tmp_path / "project"
    shutil.copytree(records.parent.parent, project)
    shutil.copy(tmp_path / "params.yaml", project / "params.yaml")              # with train.tiny
    curves = project / "plots" / "learning_curves" / "tiny" / "2021"
    curves.mkdir(parents=True)
    (curves / "loss.csv").write_text("an earlier run's curve\n")
    if under_dvc:
        monkeypatch.setenv("DVC_STAGE", "train@tiny-2021")
        shutil.rmtree(curves)                                                       # as DVC does
    else:
        monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.chdir(project)
    snapshots = curve_snapshots(monkeypatch, curves)
    train.main(["tiny"])
    if under_dvc:
        assert [len(files.get("loss.csv", "").splitlines()) for files in snapshots] == [2, 3]
    else:
        assert all(files == {"loss.csv": "an earlier run's curve\n"} for files in snapshots)
    assert len((curves / "loss.csv").read_text().splitlines()) == 3               # the new curves in the end
    trained_on = TrainMetrics.read(TrainMetrics.path("tiny", 2021, project / "metrics" / "train")).trained_on
    import tensorflow as tf

    assert (trained_on.cpu, trained_on.flags) == cpu_info() and trained_on.tensorflow == tf.__version__   # for the docs


@pytest.fixture
def evaluate_tiny(tiny_model, records, tmp_path):
    """evaluate() of a freshly trained tiny model (no conv layer) with the given evaluate.explain, into
    new output folders each call; returns the outputs."""
    family = registry.table(tiny_model)["tiny"]
    data = DataRoots(records, tmp_path / "no-features")
    model_dir = ModelDir.of("tiny", 2021, tmp_path / "models")
    curves = LearningCurves.of("tiny", 2021, tmp_path / "curves")
    model_dir.root.mkdir(parents=True)
    curves.root.mkdir(parents=True)
    train.fit(family, data, model_dir.root, curves.root)
    calls = iter(range(100))

    def run(explain: ExplainParams | None, threshold: float = 0.5, **options) -> evaluate.Outputs:
        root = tmp_path / f"out{next(calls)}"
        out = evaluate.Outputs(*(kind.of("tiny", 2021, root / kind.__name__) for kind in
                                 (EvaluationDir, RocCurves, ConfusionCounts, ReliabilityCurves)))
        for folder in (out.evaluation, out.roc, out.confusion, out.reliability):
            folder.root.mkdir(parents=True)
        run.metrics = evaluate.evaluate(registry.family_class("tiny"), model_dir, curves, data, out, ["Female", "Male"],
                                        threshold, 4, explain=explain,
                                        **({"prepared_root": records.parent / "prepared"} | options))
        return out

    return run


def test_heat_maps_for_confident_answers(evaluate_tiny):
    """evaluate.explain: the tiny model (no conv layer) gets occlusion maps, each test image beside
    its map, listed in explanations.csv; 0 images writes none."""
    out = evaluate_tiny(ExplainParams(images=2, method="auto"))
    table = out.evaluation.read_explanations()
    predictions = out.evaluation.read_predictions("test")
    wrong = (predictions["actual"] != predictions["predicted"]).sum()
    right = predictions[predictions["actual"] == predictions["predicted"]]["actual"].value_counts()
    assert (table["group"] == "mistake").sum() == min(2, wrong)
    for label in ("Female", "Male"):
        assert ((table["group"] == "correct") & (table["actual"] == label)).sum() == min(2, right.get(label, 0))
    assert set(table["method"]) == {"occlusion"}
    for row in table.itertuples():
        with Image.open(out.evaluation.root / row.figure) as figure:
            assert figure.size == (202, 100)
        assert row.file in set(predictions["file"])
    assert (table.loc[table["group"] == "mistake", "actual"] != table.loc[table["group"] == "mistake", "predicted"]).all()

    none = evaluate_tiny(ExplainParams(images=0, method="auto"))
    assert not none.evaluation.explanations.exists() and not (none.evaluation.root / "explain").exists()


def test_heat_maps_explain_the_class_evaluate_threshold_picks(evaluate_tiny, monkeypatch):
    thresholds = record_explainer_thresholds(monkeypatch)
    evaluate_tiny(ExplainParams(images=1, method="auto"), threshold=0.7)
    assert thresholds == [0.7]


def test_evaluate_reports_per_group_only_on_the_splits_groups_csv_covers(evaluate_tiny, tmp_path):
    """data/prepared/groups.csv naming the test images only: the test split gets a groups section
    (every image in a group, each group's counts adding up), validation none; no file: none anywhere."""
    from stages.contracts.prepared import write_groups

    prepared = tmp_path / "groups-prepared"
    prepared.mkdir()
    out = evaluate_tiny(None, prepared_root=prepared, group_min_per_class=1)
    without = evaluate_tiny.metrics
    assert without.val.groups is None and without.test.groups is None
    files = list(out.evaluation.read_predictions("test")["file"])
    write_groups(prepared, {file: "a" if index % 2 else "b" for index, file in enumerate(files)})
    evaluate_tiny(None, prepared_root=prepared, group_min_per_class=1)
    found = evaluate_tiny.metrics
    assert found.val.groups is None and list(found.test.groups.groups) == ["a", "b"]
    assert sum(group.n for group in found.test.groups.groups.values()) == found.test.n == len(files)
    assert all(sum(group.counts.values()) == group.n for group in found.test.groups.groups.values())
    assert found.test.majority_rate == pytest.approx(4 / 6) and found.val.majority_rate == pytest.approx(3 / 5)


def test_gradcam_forced_on_a_model_without_conv_is_one_line(evaluate_tiny):
    with pytest.raises(UserError, match=r"^evaluate.explain.method: Grad-CAM does not apply .* use occlusion \(or auto\)$"):
        evaluate_tiny(ExplainParams(images=1, method="gradcam"))


def test_confident_examples_most_confident_first():
    predictions = pd.DataFrame({"file": list("abcdefg"),
                                "actual": ["Male", "Male", "Female", "Female", "Male", "Female", "Male"],
                                "predicted": ["Female", "Female", "Male", "Female", "Male", "Female", "Male"],
                                "probability": [0.3, 0.01, 0.9, 0.2, 0.99, 0.05, 0.7]})
    chosen = evaluate.confident_examples(predictions, 2, ["Female", "Male"])
    assert list(chosen["group"]) == ["mistake", "mistake", "correct", "correct", "correct", "correct"]
    assert list(chosen["file"]) == ["b", "c", "f", "d", "e", "g"]


def test_confident_means_far_from_the_threshold_the_predictions_were_made_at():
    """At evaluate.threshold 0.3 a Female image at P(Male) 0.75 is 0.45 past the threshold, a Male one
    at 0.05 only 0.25 short of it: the first is the more confident mistake (from 0.5 it would be the
    other way round)."""
    predictions = pd.DataFrame({"file": ["a", "b"], "actual": ["Male", "Female"], "predicted": ["Female", "Male"],
                                "probability": [0.05, 0.75]})
    assert list(evaluate.confident_examples(predictions, 1, ["Female", "Male"], threshold=0.3)["file"]) == ["b"]
    assert list(evaluate.confident_examples(predictions, 1, ["Female", "Male"])["file"]) == ["a"]


def test_metrics_file_round_trip(tmp_path):
    values = {"accuracy": 0.5, "sensitivity": None, "specificity": 1.0, "precision": None, "f1": 0.0,
              "roc_auc": 0.75, "n": 4}
    metrics = ModelMetrics(description="d", val=values, test=values)
    metrics.write(tmp_path / "m.json")
    assert ModelMetrics.read(tmp_path / "m.json") == metrics


def test_paired_tests_every_pair_reference_second_on_the_same_images():
    from stages.analysis.statistics import delong_test, mcnemar_test
    from stages.common.errors import UserError
    from stages.compare import paired_tests

    rng = np.random.default_rng(0)
    labels = (rng.random(200) < 0.6).astype(int)
    classes = ["Female", "Male"]

    def frame(probabilities, order):
        predicted = (probabilities >= 0.5).astype(int)
        table = pd.DataFrame({"file": [f"img{i}.png" for i in range(200)],
                              "actual": [classes[i] for i in labels], "predicted": [classes[i] for i in predicted],
                              "probability": probabilities})
        return table.iloc[order].reset_index(drop=True)

    scores = {"baseline": labels * 0.3 + rng.random(200) * 0.7, "improved": labels * 0.5 + rng.random(200) * 0.5,
              "transfer": labels * 0.4 + rng.random(200) * 0.6}
    shuffled = rng.permutation(200)     # one model's rows in another order: matched by file, not by row
    predictions = {model: {split: [frame(p, shuffled if model == "transfer" else np.arange(200))]
                           for split in ("val", "test")} for model, p in scores.items()}
    tests = paired_tests(predictions, "baseline", "Male")
    assert sorted(tests["val"]) == ["improved_vs_baseline", "transfer_vs_baseline", "transfer_vs_improved"]
    found = tests["test"]["transfer_vs_baseline"]
    expected = delong_test(labels, scores["transfer"], scores["baseline"])
    assert found.roc_auc_p_value == pytest.approx(expected["p_value"])
    assert found.roc_auc_difference == pytest.approx(expected["difference"], abs=1e-6)
    right = mcnemar_test(labels, scores["transfer"] >= 0.5, scores["baseline"] >= 0.5)
    assert (found.only_first_right, found.only_second_right) == (right["only_first_right"], right["only_second_right"])
    assert found.images == 200

    predictions["transfer"]["val"] = [predictions["transfer"]["val"][0].iloc[:150]]
    with pytest.raises(UserError, match="not scored on the same images"):
        paired_tests(predictions, "baseline", "Male")


def test_a_class_of_one_image_gives_an_undefined_delong_test_and_no_nan_in_comparison_json(tmp_path):
    """One Male image among the test images: DeLong's variance is undefined there. comparison.json says
    so (p-value null and the reason) and holds no NaN; McNemar still runs."""
    from stages.compare import paired_tests
    from stages.contracts.comparison import Comparison

    classes = ["Female", "Male"]
    labels = np.array([1] + [0] * 7)

    def frame(probabilities):
        return pd.DataFrame({"file": [f"img{i}.png" for i in range(8)], "actual": [classes[i] for i in labels],
                             "predicted": [classes[int(p >= 0.5)] for p in probabilities],
                             "probability": probabilities})

    scores = {"baseline": np.linspace(0.9, 0.2, 8), "improved": np.linspace(0.2, 0.9, 8)}
    predictions = {model: {split: [frame(p)] for split in ("val", "test")} for model, p in scores.items()}
    tests = paired_tests(predictions, "baseline", "Male")
    found = tests["test"]["improved_vs_baseline"]
    assert found.roc_auc_p_value is None and found.roc_auc_standard_error is None
    assert "2 images of each class" in found.roc_auc_test_undefined
    assert found.roc_auc_difference == -1.0 and found.accuracy_p_value is not None
    values = {"accuracy": 0.5, "sensitivity": None, "specificity": 1.0, "precision": None, "f1": 0.0,
              "roc_auc": 0.75, "n": 8}
    metrics = {model: [ModelMetrics(description=model, val=values, test=values)] for model in scores}
    compare(metrics, "baseline", tests).write(tmp_path / "comparison.json")
    text = (tmp_path / "comparison.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    stored = Comparison.read(tmp_path / "comparison.json").paired("test", "improved", "baseline")
    assert stored.roc_auc_p_adjusted is None and stored.accuracy_p_adjusted is not None     # undefined stays so
    assert stored.model_copy(update={"accuracy_p_adjusted": None}) == found
