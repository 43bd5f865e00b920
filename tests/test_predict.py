"""predict: rows for readable images, warnings for broken ones, one-line errors, parity with evaluate."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from stages import predict, prepare, tfrecords  # noqa: E402
from stages.common.config import PredictParams  # noqa: E402
from stages.contracts.manifests import SplitShards, TfrecordsManifest  # noqa: E402
from stages.contracts.prepared import PreparedSplit, PreparedWriter
from stages.images import offline_sample
from stages.images.reading import load_rgb  # noqa: E402
from stages.modelkit import prediction  # noqa: E402
from stages.modelkit.fitting import predict_records  # noqa: E402
from stages.modelkit.registry import load_model  # noqa: E402
from stages.models import baseline  # noqa: E402
from tests.helpers import png_bytes, run_cli, unzip_prepared  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 100
CLASSES = ["Female", "Male"]
COLUMNS = ["file", "probability_Female", "probability_Male", "predicted"]


def face(seed: int, gender: str = "Male", size: tuple[int, int] | None = None) -> Image.Image:
    image = offline_sample.draw_face(np.random.default_rng(seed), gender, offline_sample.TRAINVAL_STUDIO)
    return image.resize(size, Image.Resampling.BICUBIC) if size else image


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained but seeded baseline, saved as train saves it, with the classes beside it."""
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(7)
    baseline.make_model((SIZE, SIZE, 3)).save(folder / "model.keras")
    (folder / "training.json").write_text(json.dumps({"model": "baseline", "classes": CLASSES}))
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir / "model.keras")


def warnings_in(stderr: str) -> list[str]:
    # The progress bar shares stderr; it redraws with carriage returns.
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("warning:")]


def errors_in(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert lines[0].split() == ["P(Female)", "P(Male)", "predicted", "file"]
    return [line.split(maxsplit=3) for line in lines[1:]]


# --- a messy folder through the CLI -----------------------------------------------------------

@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """A folder as users have them: (folder, good files in walk order, broken files)."""
    root = tmp_path_factory.mktemp("photos")
    folder = root / "photos"
    good = [
        write(folder / "a_plain.jpg", offline_sample.jpeg_bytes(face(1), 90)),
        write(folder / "b_wide.png", png_bytes(face(2, "Female", (160, 120)))),
        write(folder / "c_gray.jpg", offline_sample.grayscale_jpeg(face(3))),
        write(folder / "d_alpha.png", offline_sample.alpha_png(face(4, "Female"))),
        write(folder / "e_exif.jpg", offline_sample.exif_rotated_jpeg(face(5))),
        write(folder / "f_small.JPEG", offline_sample.jpeg_bytes(face(6, "Female", (37, 53)), 80)),
        write(folder / "sub" / "g_nested.jpg", offline_sample.jpeg_bytes(face(7), 95)),
    ]
    broken = [
        write(folder / "x_empty.jpg", b""),
        write(folder / "y_text.png", b"this is not a picture\n"),
        write(folder / "z_truncated.jpg", offline_sample.truncated_jpeg(face(8))),
    ]
    # Not images by name: a folder walk leaves them alone, without warnings.
    write(folder / "notes.txt", b"shot in 2021\n")
    write(folder / "Thumbs.db", bytes(64))
    write(folder / ".hidden.jpg", offline_sample.jpeg_bytes(face(9), 90))
    write(folder / ".ipynb_checkpoints" / "copy.jpg", offline_sample.jpeg_bytes(face(9), 90))
    walk = sorted(good + broken)
    return folder, [str(p) for p in walk if p in good], [str(p) for p in walk if p in broken]


def test_messy_folder_gives_one_row_per_readable_image(messy, model_dir, tmp_path, monkeypatch, capsys):
    folder, good, broken = messy
    monkeypatch.chdir(tmp_path)  # no params.yaml here: classes come from training.json
    out = tmp_path / "out" / "predictions.csv"
    code = run_cli(predict.main, [str(model_dir), str(folder), "--csv", str(out), "--table", "--batch-size", "3",
                                  "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    warnings = warnings_in(captured.err)
    assert len(warnings) == len(broken)
    for line, path in zip(warnings, broken):
        assert path in line
    assert "empty" in warnings[0] and "identify" in warnings[1] and "truncated" in warnings[2]

    rows = table_rows(captured.out)
    assert [row[3] for row in rows] == good
    columns, records = read_csv(out)
    assert columns == COLUMNS
    assert [record["file"] for record in records] == good
    for record, row in zip(records, rows):
        female, male = float(record["probability_Female"]), float(record["probability_Male"])
        assert 0 <= female <= 1 and 0 <= male <= 1
        assert female + male == pytest.approx(1, abs=2e-6)
        assert record["predicted"] == ("Male" if male >= 0.5 else "Female")
        assert row[:3] == [f"{female:.4f}", f"{male:.4f}", record["predicted"]]
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]  # no temporary left


def test_files_and_folders_mix_in_the_order_given(messy, model_dir, tmp_path, monkeypatch, capsys):
    folder, good, _ = messy
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir / "model.keras"), good[3], str(folder / "sub"), good[0], "--threshold", "0.5"]) == 0
    assert [row[3] for row in table_rows(capsys.readouterr().out)] == [good[3], good[6], good[0]]


def test_with_a_csv_the_terminal_gets_the_summary_not_the_rows(messy, model_dir, tmp_path, monkeypatch, capsys):
    folder, good, _ = messy
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir), str(folder), "--csv", "p.csv", "--threshold", "0.5"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""                                            # no row, no header
    assert f"predicted {len(good)} images; skipped 3 unreadable; wrote p.csv" in captured.err
    assert len(read_csv(tmp_path / "p.csv")[1]) == len(good)
    assert run_cli(predict.main, [str(model_dir), str(folder), "--no-table", "--threshold", "0.5"]) == 0
    assert capsys.readouterr().out == ""                                 # nothing asked for, nothing shown


def test_classes_and_threshold_default_to_params(messy, model_dir, tmp_path, monkeypatch, capsys):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["prepare"]["classes"] = ["Woman", "Man"]
    for split in raw["prepare"]["splits"].values():
        split["classes"] = {key: {"Female": "Woman", "Male": "Man"}[value] for key, value in split["classes"].items()}
    raw["evaluate"]["threshold"] = 0.01  # every untrained output is above it
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())  # no training.json
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(bare), messy[1][0], "--csv", "p.csv"]) == 0
    columns, records = read_csv(tmp_path / "p.csv")
    assert columns == ["file", "probability_Woman", "probability_Man", "predicted"]
    assert [record["predicted"] for record in records] == ["Man"]


# --- failures: exit 1 and one line ------------------------------------------------------------

@pytest.mark.parametrize("key, bad", [("predict.detect_faces", "sometimes"), ("predict.min_face_confidence", 2),
                                      ("predict.face_crop", 0), ("prepare.max_pixels", -1),
                                      ("evaluate.explain.method", "magic")])
def test_a_bad_setting_of_predicts_own_names_only_its_fix(messy, model_dir, tmp_path, monkeypatch, capsys, key, bad):
    """Every key predict reads for its own work (every predict.* key among them): the one line names the
    key and params.yaml, never --threshold, which would only let a default stand in for it."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    *parents, leaf = key.split(".")
    section = raw
    for part in parents:
        section = section[part]
    section[leaf] = bad
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--threshold", "0.5"]):
        assert run_cli(predict.main, [str(model_dir), messy[1][0], *extra]) == 1
        [line] = errors_in(capsys.readouterr().err)
        assert line.startswith(f"error: params.yaml: {key}: ") and line.endswith("; fix it in params.yaml"), line


def test_every_predict_key_is_one_of_predicts_own():
    assert all(f"predict.{key}".startswith(predict.OWN_KEYS) for key in PredictParams.model_fields)


def test_a_bad_threshold_points_to_the_flag_that_replaces_it(messy, model_dir, tmp_path, monkeypatch, capsys):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["threshold"] = 7
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir), messy[1][0]]) == 1
    [line] = errors_in(capsys.readouterr().err)
    assert line.startswith("error: params.yaml: evaluate.threshold: ") and line.endswith("; or give --threshold")
    assert run_cli(predict.main, [str(model_dir), messy[1][0], "--threshold", "0.5"]) == 0



def test_only_broken_files_exit_1_and_leave_no_csv(messy, model_dir, tmp_path, monkeypatch, capsys):
    _, _, broken = messy
    monkeypatch.chdir(tmp_path)
    code = run_cli(predict.main, [str(model_dir), *broken, "--csv", "out.csv", "--threshold", "0.5"])
    captured = capsys.readouterr()
    assert code == 1
    assert len(warnings_in(captured.err)) == 3
    assert errors_in(captured.err) == ["error: none of the 3 files could be read as an image (see the warnings above)"]
    assert list(tmp_path.iterdir()) == []  # neither the CSV nor its temporary


def test_folder_without_images_exit_1(model_dir, tmp_path, monkeypatch, capsys):
    write(tmp_path / "empty" / "notes.txt", b"nothing here")
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir), "empty", "--threshold", "0.5"]) == 1
    assert errors_in(capsys.readouterr().err) == ["error: no image file found in empty"]


def test_missing_path_exit_1_naming_it(messy, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, [str(model_dir), messy[1][0], "no/such/photo.jpg"]) == 1
    err = capsys.readouterr().err
    assert err == "error: no/such/photo.jpg: no such file or folder\n"


def test_missing_model_file_exit_1(messy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli(predict.main, ["somewhere/model.keras", messy[1][0]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: somewhere/model.keras: not found;") and err.count("\n") == 1


@pytest.mark.parametrize("target", ["folder", "input"])
def test_csv_never_writes_over_a_folder_or_an_input(messy, model_dir, tmp_path, monkeypatch, capsys, target):
    monkeypatch.chdir(tmp_path)
    image = Path(messy[1][0])
    before = image.read_bytes()
    csv_path = str(tmp_path) if target == "folder" else str(image)
    assert run_cli(predict.main, [str(model_dir), str(image), "--csv", csv_path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --csv {csv_path}: ") and err.count("\n") == 1
    assert image.read_bytes() == before


def test_damaged_model_is_one_line_saying_so(messy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    damaged = tmp_path / "model.keras"
    damaged.write_bytes(b"not a zip at all")
    (tmp_path / "training.json").write_text(json.dumps({"classes": CLASSES}))
    assert run_cli(predict.main, [str(damaged), messy[1][0], "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a zip archive" in err and "not found" not in err


def test_classes_nowhere_exit_1(messy, model_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "model.keras").write_bytes((model_dir / "model.keras").read_bytes())
    (tmp_path / "training.json").write_text(json.dumps({"model": "baseline"}))
    monkeypatch.chdir(tmp_path)  # and no params.yaml
    assert run_cli(predict.main, [".", messy[1][0], "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "training.json has no \"classes\"" in err and "params.yaml" in err


@pytest.mark.e2e
def test_missing_model_name_from_the_command_line(messy, tmp_path):
    """The real entry point, outside a project (no params.yaml, so no first seed to pick): exit 1, one
    line naming the folder and the command that makes a run there."""
    result = subprocess.run([sys.executable, "-m", "stages.predict", "baseline", messy[1][0]],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == ("error: models/baseline: not found; train it first "
                             "(dvc repro train@baseline-<seed>) or give the path of a .keras file\n")


# --- the core: batching and parity with evaluate ----------------------------------------------

def test_batches_keep_input_order(messy, model):
    _, good, _ = messy
    files = [Path(p) for p in reversed(good[:5])]
    batches = list(prediction.predict_files(model, files, CLASSES, 0.5, batch_size=2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    rows = [row for batch in batches for row in batch]
    assert [row["file"] for row in rows] == [str(p) for p in files]
    whole = next(prediction.predict_files(model, files, CLASSES, 0.5, batch_size=64))
    np.testing.assert_allclose([r["probability_Male"] for r in rows], [r["probability_Male"] for r in whole],
                               rtol=1e-5, atol=1e-6)


def test_unreadable_files_are_reported_and_left_out(messy, model):
    _, good, broken = messy
    skipped = []
    batches = list(prediction.predict_files(model, [Path(broken[0]), Path(good[0]), Path(broken[2])], CLASSES, 0.5,
                                         batch_size=1, on_unreadable=lambda path, reason: skipped.append(str(path))))
    assert [[row["file"] for row in batch] for batch in batches] == [[good[0]]]
    assert skipped == [broken[0], broken[2]]


@pytest.fixture(scope="module")
def evaluated(model, tmp_path_factory) -> tuple[dict[str, Path], dict[str, Path], dict[str, float]]:
    """Source photos through the real prepare and tfrecords code, scored as evaluate scores them.

    Returns (source file, prepared PNG, evaluate's P(Male)) per image name.
    """
    root = tmp_path_factory.mktemp("parity")
    sources = {
        "wide": ("Male", write(root / "raw" / "wide.jpg", offline_sample.jpeg_bytes(face(11, "Male", (137, 89)), 90))),
        "alpha": ("Female", write(root / "raw" / "alpha.png", offline_sample.alpha_png(face(12, "Female", (64, 64))))),
        "exif": ("Male", write(root / "raw" / "exif.jpg", offline_sample.exif_rotated_jpeg(face(13, "Male", (120, 160))))),
        "gray": ("Female", write(root / "raw" / "gray.jpg", offline_sample.grayscale_jpeg(face(14, "Female")))),
        "plain": ("Male", write(root / "raw" / "plain.jpg", offline_sample.jpeg_bytes(face(15), 75))),
    }
    prepared, records = root / "prepared", root / "tfrecords"
    prepared.mkdir()
    with PreparedWriter(prepared, CLASSES) as out:
        for name, (label, source) in sources.items():
            converted = prepare.convert(source, SIZE)
            assert converted.reason is None
            out.add("test", label, f"{name}.png", converted.png)
    records.mkdir()
    with PreparedSplit(prepared, "test") as split:
        examples = tfrecords.list_examples(split, CLASSES)
        shards = tfrecords.write_split(examples, split, records, shard_size=2)
    TfrecordsManifest(image_size=SIZE, classes=CLASSES, splits={"test": SplitShards(
        count=len(examples), per_class={}, shards=shards)}).write(records / TfrecordsManifest.name)
    scored = predict_records(model, records, "test", batch_size=3)
    assert len(scored) == len(sources)
    probabilities = {Path(file).stem: p for file, p in zip(scored["file"], scored["probability"])}
    pngs = {name: unzip_prepared(prepared, root / "tree") / "test" / label / f"{name}.png"
            for name, (label, _) in sources.items()}
    return {name: source for name, (_, source) in sources.items()}, pngs, probabilities


@pytest.mark.parametrize("which", ["source", "prepared"])
def test_same_probability_as_evaluate(model, evaluated, which):
    sources, pngs, expected = evaluated
    files = sources if which == "source" else pngs
    names = sorted(files)
    rows = [row for batch in prediction.predict_files(model, [files[n] for n in names], CLASSES, 0.5, batch_size=2)
            for row in batch]
    assert [row["file"] for row in rows] == [str(files[n]) for n in names]
    np.testing.assert_allclose([row["probability_Male"] for row in rows], [expected[n] for n in names],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([row["probability_Female"] for row in rows], [1 - expected[n] for n in names],
                               rtol=1e-5, atol=1e-6)


def test_parity_test_has_teeth(model, evaluated):
    """Inputs prepared slightly differently (0-1 pixels, another resize) move the probability past the tolerance."""
    sources, _, expected = evaluated
    names = sorted(sources)
    wanted = np.array([expected[n] for n in names])
    pixels = np.stack([load_rgb(sources[n], SIZE) for n in names]).astype(np.float32)
    scaled = model.predict_on_batch(pixels / 255).reshape(-1)
    nearest = np.stack([
        np.asarray(Image.fromarray(load_rgb(sources[n], 400)).resize((SIZE, SIZE), Image.Resampling.NEAREST))
        for n in names
    ]).astype(np.float32)
    resized_otherwise = model.predict_on_batch(nearest).reshape(-1)
    assert np.ptp(wanted) > 1e-3  # the model's output depends on the image
    for wrong in (scaled, resized_otherwise):
        assert not np.allclose(wrong, wanted, rtol=1e-5, atol=1e-6)


def test_a_model_name_means_one_seeds_run(tmp_path, monkeypatch):
    """With params.yaml, a name is its first seed's run; without, the one run there is, and two runs
    need the user to say which (one line naming the folder)."""
    from stages.common.errors import UserError
    from stages.contracts.training import find_model

    monkeypatch.chdir(tmp_path)
    for seed in (2021, 7):
        (tmp_path / "models" / "baseline" / str(seed)).mkdir(parents=True)
        (tmp_path / "models" / "baseline" / str(seed) / "model.keras").write_bytes(b"")
    assert find_model("baseline", ["baseline"], 7) == Path("models/baseline/7/model.keras")
    with pytest.raises(UserError, match=r"models/baseline: 2 training runs \(one per seed\) and no params.yaml"):
        find_model("baseline")
    (tmp_path / "models" / "baseline" / "7" / "model.keras").unlink()
    assert find_model("baseline") == Path("models/baseline/2021/model.keras")
    with pytest.raises(UserError, match=r"models/baseline/5/model.keras: not found; .*train@baseline-5"):
        find_model("baseline", ["baseline"], 5)
