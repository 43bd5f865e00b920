"""predict on ordinary photos: MTCNN finds each face, crops it as the training images are cropped, and
each face gets its row; a photo without a face is reported, never classified. Also --explain and the
progress bar's total."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from stages import predict  # noqa: E402
from stages.images import faces
from stages.images.reading import open_rgb  # noqa: E402
from stages.common.progress import progress_bar  # noqa: E402
from stages.modelkit import prediction  # noqa: E402
from stages.models import baseline  # noqa: E402
from tests.helpers import record_explainer_thresholds, run_cli  # noqa: E402
from tests.photos import write_photos  # noqa: E402

CLASSES = ["Female", "Male"]
# Where tests/photos.py pastes the portrait into two_faces.jpg: (left, top, width, height).
PASTED = [(150, 300, 256, 300), (900, 120, 220, 258)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    written = write_photos(tmp_path_factory.mktemp("photos"))
    return {path.stem: path for path in written}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(7)
    baseline.make_model((100, 100, 3)).save(folder / "model.keras")
    (folder / "training.json").write_text(json.dumps({"model": "baseline", "classes": CLASSES}))
    return folder


@pytest.mark.parametrize("name, count", [("one_face", 1), ("two_faces", 2), ("off_centre", 1), ("no_face_room", 0),
                                         ("no_face_china", 0), ("no_face_flower", 0)])
def test_detector_finds_every_face_and_no_other(photos, name, count):
    found = faces.detect_faces(open_rgb(photos[name]), min_confidence=0.9)
    assert len(found) == count, found
    assert all(0.9 <= face.confidence <= 1 for face in found)


def test_boxes_are_on_the_faces_left_to_right(photos):
    found = faces.detect_faces(open_rgb(photos["two_faces"]), min_confidence=0.9)
    for face, (left, top, width, height) in zip(found, PASTED):
        centre = (face.left + face.width / 2, face.top + face.height / 2)
        assert left < centre[0] < left + width and top < centre[1] < top + height
        assert 0.2 * width < face.width < width       # a face, not the whole pasted portrait


def test_big_photo_is_detected_on_a_smaller_copy_with_boxes_in_its_own_pixels(photos):
    photo = open_rgb(photos["two_faces"])
    bigger = photo.resize((photo.width * 2, photo.height * 2))   # 2800 px: over DETECT_MAX_SIDE
    small, large = (faces.detect_faces(image, 0.9) for image in (photo, bigger))
    assert len(large) == 2
    for a, b in zip(small, large):
        assert abs(2 * a.left - b.left) < 0.1 * b.width and abs(2 * a.width - b.width) < 0.15 * b.width


@pytest.mark.parametrize("face, size, expected", [
    (faces.Face(40, 40, 20, 30, 1.0), (200, 200), (23, 28, 77, 82)),      # 1.8 x 30 = 54, centred on (50, 55)
    (faces.Face(0, 0, 20, 30, 1.0), (200, 200), (0, 0, 54, 54)),          # at the corner: moved inside
    (faces.Face(10, 10, 80, 90, 1.0), (100, 120), (0, 0, 100, 120)),      # bigger than the photo: cut to it
])
def test_crop_box_is_the_training_square(face, size, expected):
    assert faces.crop_box(face, size, 1.8) == expected


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_two_faces_two_rows_with_boxes(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(photos["two_faces"]), "--detect-faces", "--csv", "p.csv",
                                  "--table", "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["P(Female)", "P(Male)", "predicted", "face", "box", "conf", "file"]
    assert [line.split()[3] for line in lines[1:]] == ["1", "2"]
    columns, rows = read_rows(tmp_path / "p.csv")
    assert columns == ["file", "face", "left", "top", "width", "height", "face_confidence",
                       "probability_Female", "probability_Male", "predicted"]
    assert len(rows) == 2 and all(row["predicted"] in CLASSES for row in rows)
    for row, line in zip(rows, lines[1:]):
        assert line.split()[4] == f"{row['left']},{row['top']},{row['width']},{row['height']}"
        assert float(row["face_confidence"]) >= 0.9
    assert "predicted 2 faces in 1 photo" in captured.err


def test_the_faces_are_what_the_model_sees(photos, model_dir):
    """Each face row's probability is the model's on that face's crop, not on the whole photo."""
    from stages.modelkit.registry import load_model

    model = load_model(model_dir / "model.keras")
    options = prediction.FaceOptions(min_confidence=0.9, face_crop=1.8)
    rows = [row for batch in prediction.predict_files(model, [photos["two_faces"]], CLASSES, 0.5, 8, faces=options)
            for row in batch]
    photo = open_rgb(photos["two_faces"])
    crops = np.stack([np.asarray(faces.crop_face(photo, faces.Face(r["left"], r["top"], r["width"], r["height"], 1.0), 1.8)
                                 .resize((100, 100), Image.Resampling.BILINEAR, reducing_gap=None), np.float32)
                      for r in rows])
    expected = np.asarray(model.predict_on_batch(crops)).reshape(-1)
    np.testing.assert_allclose([r["probability_Male"] for r in rows], expected, rtol=1e-5, atol=1e-6)
    whole = float(np.asarray(model.predict_on_batch(np.asarray(photo.resize((100, 100)), np.float32)[None]))[0, 0])
    assert not np.allclose(expected, whole, atol=1e-4)


def test_photo_without_a_face_is_reported_not_classified(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(photos["no_face_room"]), "--detect-faces", "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 1
    rows = captured.out.splitlines()[1:]
    assert len(rows) == 1 and "no face found" in rows[0] and rows[0].split()[:2] == ["-", "-"]
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        "error: no face found in the photo; nothing classified (give photos with a visible face, "
        "or leave out --detect-faces)"]


def test_mixed_photos_classify_the_faces_and_list_the_rest(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(photos["no_face_flower"]), str(photos["one_face"]),
                                  "--detect-faces", "--csv", "p.csv", "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    _, rows = read_rows(tmp_path / "p.csv")
    assert [(Path(row["file"]).name, row["face"], row["predicted"] == "no face found") for row in rows] == [
        ("no_face_flower.jpg", "0", True), ("one_face.jpg", "1", False)]
    assert rows[0]["probability_Male"] == "" and rows[0]["left"] == ""
    assert "predicted 1 face in 1 photo; no face found in 1" in captured.err


def test_detect_faces_defaults_to_params(photos, model_dir, tmp_path, monkeypatch, capsys):
    import yaml
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["predict"]["detect_faces"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir), str(photos["two_faces"])]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert run_cli(predict.main, [str(model_dir), str(photos["two_faces"]), "--no-detect-faces"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_explain_writes_each_image_beside_its_map(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(photos["one_face"]), str(photos["two_faces"]),
                                  "--detect-faces", "--explain", "maps", "--threshold", "0.5"])
    assert code == 0, capsys.readouterr().err
    written = sorted(path.name for path in (tmp_path / "maps").iterdir())
    assert written == ["one_face_face1.png", "two_faces_face1.png", "two_faces_face2.png"]
    for name in written:
        pixels = np.asarray(Image.open(tmp_path / "maps" / name))
        assert pixels.shape == (100, 202, 3)
        assert pixels[:, 102:].std() > 5


def test_explain_explains_the_class_the_threshold_picks(photos, model_dir, tmp_path, monkeypatch, capsys):
    thresholds = record_explainer_thresholds(monkeypatch)
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(photos["one_face"]), "--explain", "maps", "--threshold", "0.9"])
    assert code == 0, capsys.readouterr().err
    assert thresholds == [0.9]


def test_explain_refuses_a_file_or_a_folder_inside_the_inputs(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = photos["one_face"].parent
    assert run_cli(predict.main, [str(model_dir), str(folder), "--explain", str(folder / "maps")]) == 1
    assert "is inside the input folder" in capsys.readouterr().err
    assert not (folder / "maps").exists()
    assert run_cli(predict.main, [str(model_dir), str(folder), "--explain", str(photos["one_face"])]) == 1
    assert "is a file" in capsys.readouterr().err


def test_progress_has_a_total_and_a_log_gets_plain_lines(photos, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = photos["one_face"].parent
    assert prediction.count_inputs([folder, photos["one_face"]]) == 7
    totals = []

    def spy(total, title, **options):
        totals.append(total)
        return progress_bar(total, title, **options)

    monkeypatch.setattr(predict, "progress_bar", spy)
    assert run_cli(predict.main, [str(model_dir), str(folder), "--threshold", "0.5"]) == 0
    err = capsys.readouterr().err
    assert totals == [6]                                     # counted first: a terminal's bar shows 6/6
    assert "predict: 6 img in " in err and "\r" not in err    # stderr is no terminal here: a log line, no bar


SLIVERS = [(1, 40_000), (40_000, 1), (2, 40_000), (40_000, 2), (11, 300), (300, 11)]


@pytest.mark.parametrize("size", SLIVERS)
def test_a_photo_too_thin_to_hold_a_face_has_none_without_running_the_detector(size, monkeypatch):
    """A 1x40,000 PNG once crashed the resize before detection (height and width must be > 0)."""
    monkeypatch.setattr(faces, "detector", lambda: pytest.fail("the detector ran on a sliver"))
    assert faces.detect_faces(Image.new("RGB", size, (128, 128, 128)), 0.9) == []


def test_slivers_through_predict_and_the_page_are_no_face_not_an_error(model_dir, tmp_path, monkeypatch, capsys):
    from stages.serving.photos import PhotoOptions, analyse_photo

    for width, height in SLIVERS:
        Image.new("RGB", (width, height), (90, 60, 40)).save(tmp_path / f"sliver_{width}x{height}.png")
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), str(tmp_path), "--detect-faces", "--csv", "p.csv", "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        f"error: no face found in any of the {len(SLIVERS)} photos; nothing classified (give photos with a visible face, "
        "or leave out --detect-faces)"]
    options = PhotoOptions(max_pixels=100_000_000, faces=prediction.FaceOptions(0.9, 1.8), threshold=0.5)
    for path in sorted(tmp_path.glob("sliver_*.png")):
        answer = analyse_photo(path, [], [], options)
        assert answer["faces"] == [] and (answer["width"], answer["height"]) in SLIVERS
