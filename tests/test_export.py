"""export: each format gives the .keras model's probabilities on the validation images (float32 within
1e-5; the int8-weight file within the bound it records, and kept only while its AUC holds), predict
runs on every exported file as on the .keras model, and a failed export keeps the earlier one."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from stages import export, predict  # noqa: E402
from stages.common.config import load_params  # noqa: E402
from stages.common.errors import UserError  # noqa: E402
from stages.contracts.exports import FORMAT_FILES, QUANTIZED_FILE, ExportInfo  # noqa: E402
from stages.contracts.prepared import PreparedWriter  # noqa: E402
from stages.contracts.training import ParameterCounts, TrainingInfo  # noqa: E402
from stages.images import offline_sample  # noqa: E402
from stages.modelkit.exported import ExportedModel  # noqa: E402
from stages.models import baseline  # noqa: E402
from tests.helpers import ROOT, png_bytes, run_cli  # noqa: E402

CLASSES = ["Female", "Male"]
SEED = 2021
PER_CLASS = 12


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with params.yaml, a seeded (untrained) baseline where train puts it, and a validation split
    of offline-sample faces; exported once."""
    root = tmp_path_factory.mktemp("export")
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    folder = root / "models" / "baseline" / str(SEED)
    folder.mkdir(parents=True)
    keras.utils.set_random_seed(11)
    model = baseline.make_model((100, 100, 3))
    model.save(folder / "model.keras")
    TrainingInfo(model="baseline", description="baseline CNN (assignment Figure 1)", classes=CLASSES,
                 epochs_requested=1, epochs_run=1, parameters=ParameterCounts(total=1, trainable=1, non_trainable=0),
                 layers=[]).write(folder / "training.json")
    rng = np.random.default_rng(0)
    (root / "data" / "prepared").mkdir(parents=True)
    with PreparedWriter(root / "data" / "prepared", CLASSES) as out:
        for split in ("train", "val", "test"):
            for name in CLASSES:
                for index in range(PER_CLASS if split == "val" else 1):
                    face = offline_sample.draw_face(rng, name, offline_sample.TRAINVAL_STUDIO).resize((100, 100))
                    out.add(split, name, f"{index:03d}.png", png_bytes(face))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        info = export.export_model("baseline", SEED, load_params(root / "params.yaml"), threads=2)
    finally:
        os.chdir(cwd)
    return root, info, model


def test_every_format_gives_the_keras_models_probabilities(project):
    root, info, model = project
    images, labels = export.validation_images(root / "data" / "prepared", CLASSES)
    assert len(images) == 2 * PER_CLASS and set(labels) == {0, 1}
    wanted = np.asarray(model.predict_on_batch(images)).reshape(-1)
    assert np.ptp(wanted) > 1e-3                     # the model's output depends on the image: the check has teeth
    folder = root / ExportInfo.folder("baseline")
    for kind, file in FORMAT_FILES.items():
        if not (folder / file).exists():
            continue
        found = ExportedModel(folder / file, threads=2).predict_on_batch(images).reshape(-1)
        bound = info.formats[kind].max_difference
        assert np.max(np.abs(found - wanted)) <= (1e-5 if kind != "tflite_quantized" else bound + 1e-7), kind
        assert bound == pytest.approx(float(np.max(np.abs(found - wanted))), abs=1e-7)   # what it records is true
    assert info.formats["saved_model"].max_difference <= 1e-5 and info.formats["tflite"].max_difference <= 1e-5


def test_at_most_checked_images_a_seeded_sample_of_both_classes(project):
    root, _, _ = project
    every, every_labels = export.validation_images(root / "data" / "prepared", CLASSES)
    sample, labels = export.validation_images(root / "data" / "prepared", CLASSES, limit=8)
    again, _ = export.validation_images(root / "data" / "prepared", CLASSES, limit=8)
    assert len(sample) == 8 and set(labels) == {0, 1} and np.array_equal(sample, again)   # the same 8 each time
    rows = [next(i for i in range(len(every)) if np.array_equal(every[i], image)) for image in sample]
    assert rows == sorted(rows) and list(every_labels[rows]) == list(labels)              # in the split's order
    assert len(export.validation_images(root / "data" / "prepared", CLASSES, limit=100)[0]) == len(every)


def test_the_record_names_every_format_with_its_size_and_time(project):
    root, info, _ = project
    folder = root / ExportInfo.folder("baseline")
    assert set(info.formats) == {"keras", *FORMAT_FILES}
    for kind, result in info.formats.items():
        assert result.bytes > 0 and result.ms_per_image > 0
    assert info.formats["tflite"].bytes == (folder / FORMAT_FILES["tflite"]).stat().st_size
    assert info.input.startswith("float32 [batch, 100, 100, 3]: RGB pixels 0-255")
    saved = json.loads((root / ExportInfo.metrics_path("baseline")).read_text())
    assert saved == json.loads((folder / "export.json").read_text()) == info.model_dump(mode="json")
    kept = (folder / QUANTIZED_FILE).exists()
    assert info.quantized.startswith("kept" if kept else "left out")


def test_a_float32_keras_model_is_run_once_for_the_reference_and_itself(project, monkeypatch):
    """The baseline computes in float32 in Keras: its pass is the reference's, and formats are run once each."""
    from stages.analysis.heatmaps import float32_copy

    root, _, model = project
    assert float32_copy(model) is model                       # the case this test is about
    passes = []
    counted = export.probabilities
    monkeypatch.setattr(export, "probabilities", lambda run, images, *rest: passes.append(run) or counted(run, images, *rest))
    monkeypatch.chdir(root)
    info = export.export_model("baseline", SEED, load_params(root / "params.yaml"), threads=2)
    assert len(passes) == 1 + len(FORMAT_FILES)                # the reference, then each exported file
    assert info.formats["keras"].max_difference == 0.0 and info.formats["keras"].ms_per_image > 0
    assert info.formats["keras"].val_auc == info.formats["saved_model"].val_auc


@pytest.mark.parametrize("keras_auc, quantized_auc, kept", [(0.9, 0.895, True), (0.9, 0.889, False), (None, 0.9, False)])
def test_the_quantized_file_stays_only_while_its_auc_holds(keras_auc, quantized_auc, kept):
    assert export.keep_quantized(keras_auc, quantized_auc, 0.01)[0] is kept


@pytest.mark.parametrize("kind", ["tflite", "saved_model"])
def test_predict_runs_on_an_export_as_on_the_keras_model(project, tmp_path, monkeypatch, kind, capsys):
    root, _, _ = project
    monkeypatch.chdir(root)
    images = root / "photos"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    for index in range(4):
        face = offline_sample.draw_face(rng, CLASSES[index % 2], offline_sample.TRAINVAL_STUDIO)
        (images / f"{index}.png").write_bytes(png_bytes(face))
    rows = {}
    for spec in ("baseline", str(ExportInfo.folder("baseline") / FORMAT_FILES[kind])):
        target = tmp_path / f"{len(rows)}.csv"
        assert run_cli(predict.main, [spec, str(images), "--csv", str(target)]) == 0, capsys.readouterr().err
        with target.open() as handle:
            rows[spec] = [float(row["probability_Male"]) for row in csv.DictReader(handle)]
    keras_rows, exported_rows = rows.values()
    assert exported_rows == pytest.approx(keras_rows, abs=1e-5)
    assert run_cli(predict.main, [str(ExportInfo.folder("baseline") / FORMAT_FILES[kind]), str(images),
                                  "--explain", str(tmp_path / "maps")]) == 1
    assert "is an export, which has no gradients to explain" in capsys.readouterr().err


def test_a_failed_export_keeps_the_earlier_one(project, monkeypatch):
    root, _, _ = project
    monkeypatch.chdir(root)
    folder = ExportInfo.folder("baseline")
    before = sorted(path.name for path in folder.iterdir())
    with PreparedWriter(root / "data" / "prepared", CLASSES) as out:   # a val split without an image
        for split in ("train", "test"):
            out.add(split, "Male", "0.png", png_bytes(offline_sample.draw_face(np.random.default_rng(1), "Male",
                                                                               offline_sample.TRAINVAL_STUDIO)))
    with pytest.raises(UserError, match=r"val.zip holds no image"):
        export.export_model("baseline", SEED, load_params(root / "params.yaml"), threads=2)
    assert sorted(path.name for path in folder.iterdir()) == before
