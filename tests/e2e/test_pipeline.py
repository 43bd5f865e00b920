"""End to end: real `dvc repro` on a temporary copy of the repository, with a tiny sample."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from stages import predict
from stages.common import machine
from stages.contracts.prepared import PreparedSplit
from stages.modelkit import engine_choice
from tests.helpers import (GIT, files_under_split_folders, hostile_tree, make_tiny_project, pipeline_code,
                           raw_repo_params, run, run_cli, set_params, stages_run, unzip_prepared)

MODELS = list(raw_repo_params()["train"])
SEED = raw_repo_params()["seeds"][0]        # one training run per model by default


def run_of(model: str, seed: int = SEED) -> str:
    """A training run's part of an output path: <model>/<seed>."""
    return f"{model}/{seed}"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git + DVC copy of the project's code, set up for a tiny, fast run."""
    return make_tiny_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def first_repro(project: Path) -> str:
    return run(["dvc", "repro"], project)


def test_repro_runs_every_stage(first_repro):
    expected = ["download", "prepare", "tfrecords", "features", "compare", "report"] + [
        f"inputs@{m}" for m in MODELS] + [f"{kind}@{m}" for kind in ("cards", "export") for m in MODELS] + [f"{kind}@{m}-{SEED}" for kind in ("train", "evaluate") for m in MODELS]
    assert sorted(stages_run(first_repro)) == sorted(expected)


def test_every_declared_output_exists(project, first_repro):
    for path in ["data/raw/trainval/Train/Female", "data/raw/test/faces/man", "data/tfrecords/manifest.json",
                 "metrics/prepare.json", "metrics/comparison.json", "data/features/train-00000-of-00001.tfrecord",
                 "data/features/manifest.json", "models/baseline/MODEL_CARD.md",
                 "exports/baseline/model.tflite", "exports/transfer/saved_model/saved_model.pb"]:
        assert (project / path).exists(), path
    for split in ("train", "val", "test"):
        with PreparedSplit(project / "data/prepared", split) as prepared:
            for label in ("Female", "Male"):
                assert prepared.files(label), f"{split}/{label}"
    for model in MODELS:
        for name in ("model.keras", "summary.txt", "training.json"):
            assert (project / "models" / run_of(model) / name).stat().st_size > 0, f"{model}/{name}"
        for name in ("predictions_val.csv", "predictions_test.csv", "learning_curves.png", "roc.png",
                     "confusion_val.png", "confusion_test.png"):
            assert (project / "data/evaluate" / run_of(model) / name).stat().st_size > 0, f"{model}/{name}"
        for name in ("learning_curves/{}/loss.csv", "learning_curves/{}/accuracy.csv", "roc/{}/val.csv",
                     "roc/{}/test.csv", "confusion/{}/val.csv", "confusion/{}/test.csv"):
            assert (project / "plots" / name.format(run_of(model))).stat().st_size > 0, name.format(model)
        assert (project / "metrics/train" / f"{run_of(model)}.json").is_file()
        assert json.loads((project / "data/inputs" / f"{model}.json").read_text())["files"] > 0
    for split in ("val", "test"):
        assert set(pd.read_csv(project / f"plots/compare/roc_{split}.csv")["model"]) == set(MODELS)


def test_counts_and_skips_are_recorded(project, first_repro):
    summary = json.loads((project / "metrics/prepare.json").read_text())
    assert summary["counts"]["train"] == {"Female": 60, "Male": 60, "total": 120}
    assert summary["counts"]["val"]["total"] == 40
    assert summary["counts"]["test"]["total"] == 50
    skipped = {Path(item["file"]).name for item in summary["skipped"]}
    assert {"xtruncated.jpg", "xempty.jpg", "man_truncated.jpg", "man_empty.jpg", "Thumbs.db"} <= skipped
    manifest = json.loads((project / "data/tfrecords/manifest.json").read_text())
    assert {split: manifest["splits"][split]["count"] for split in ("train", "val", "test")} == \
        {split: summary["counts"][split]["total"] for split in ("train", "val", "test")}


def test_metrics_are_probabilities(project, first_repro):
    for model in MODELS:
        metrics = json.loads((project / "metrics" / "evaluate" / f"{run_of(model)}.json").read_text())
        assert set(metrics) == {"description", "bootstrap", "val", "test", "calibration", "evaluated_on"}
        assert metrics["evaluated_on"] == machine.describe_cpu()
        assert metrics["bootstrap"] == raw_repo_params()["evaluate"]["bootstrap"]
        calibration = metrics["calibration"]
        for split in ("val", "test"):
            found = calibration[split]
            assert 0 <= found["ece"] <= 1 and 0 <= found["brier"] <= 1
            assert found["interval"]["brier"]["low"] <= found["brier"] <= found["interval"]["brier"]["high"]
            points = pd.read_csv(project / "plots/calibration" / run_of(model) / f"{split}.csv")
            assert points["count"].sum() == metrics[split]["n"]
        for split in ("val", "test"):
            values = metrics[split]
            intervals = values.pop("interval")
            groups = values.pop("groups")           # data/prepared/groups.csv: the sample's synthetic skin tone
            assert groups is None or groups["groups"], (model, split)
            assert set(values) == {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1",
                                   "roc_auc", "n", "majority_rate"}
            for name, bounds in intervals.items():
                if values[name] is None:
                    assert bounds is None, (model, split, name)
                else:
                    # Bounds are stored to 6 decimals, the values in full.
                    assert 0.0 <= bounds["low"] <= values[name] + 1e-6 and values[name] - 1e-6 <= bounds["high"] <= 1.0, \
                        (model, split, name, bounds)
            predictions = pd.read_csv(project / "data/evaluate" / run_of(model) / f"predictions_{split}.csv")
            counts = pd.read_csv(project / "plots/confusion" / run_of(model) / f"{split}.csv")
            assert counts["count"].sum() == values["n"]
            assert counts.set_index(["actual", "predicted"])["count"].to_dict() == \
                predictions.groupby(["actual", "predicted"]).size().reindex(
                    counts.set_index(["actual", "predicted"]).index, fill_value=0).to_dict()
            predicted_male = int((predictions["predicted"] == "Male").sum())
            for name, value in values.items():
                if name == "n":
                    continue
                if value is None:
                    # A 1-epoch model may predict one class only: precision is then undefined, and
                    # reported as None rather than made up. Nothing else can be undefined here.
                    assert (name, predicted_male) == ("precision", 0), (model, split, name)
                else:
                    assert 0.0 <= value <= 1.0, (model, split, name, value)
        predictions = pd.read_csv(project / "data/evaluate" / run_of(model) / "predictions_val.csv")
        assert len(predictions) == metrics["val"]["n"] == 40
        accuracy = (predictions["actual"] == predictions["predicted"]).mean()
        assert accuracy == pytest.approx(metrics["val"]["accuracy"])


def test_transfer_outputs_name_their_weights(project, first_repro):
    metrics = json.loads((project / f"metrics/evaluate/{run_of('transfer')}.json").read_text())
    # params.yaml's precision and engine are auto: a rule of this CPU decides (tests/test_engines.py has every kind).
    precision, engine = engine_choice.resolve_base("auto", "auto")
    ran = {"keras": "" if precision == "float32" else f", {precision} compute", "litert": ", float32 on LiteRT"}[engine]
    assert metrics["description"] == f"VGG16 up to block4_pool, random weights (no pretraining){ran}"
    training = json.loads((project / "models" / run_of("transfer") / "training.json").read_text())
    assert training["description"] == metrics["description"]
    assert training["details"] == {"weights": "none", "feature_layer": "block4_pool", "precision": precision,
                                   "engine": engine, "fine_tuned": False}
    features = json.loads((project / "data/features/manifest.json").read_text())
    assert (features["precision"], features["dtype"], features["engine"]) == (precision, precision, engine)
    assert features["machine"] == machine.describe_cpu()
    assert training["parameters"]["non_trainable"] == 7_635_264  # VGG16 blocks 1-4, frozen


def test_comparison_has_every_model_and_difference(project, first_repro):
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    baseline = json.loads((project / f"metrics/evaluate/{run_of('baseline')}.json").read_text())
    improved = json.loads((project / f"metrics/evaluate/{run_of('improved')}.json").read_text())
    for split in ("val", "test"):
        row = comparison[split]["roc_auc"]
        assert set(row) == {*MODELS, "improved_minus_baseline", "transfer_minus_baseline"}
        assert row["improved_minus_baseline"] == pytest.approx(
            improved[split]["roc_auc"] - baseline[split]["roc_auc"], abs=1e-6)
        tests = comparison["tests"][split]
        assert set(tests) == {"improved_vs_baseline", "transfer_vs_baseline", "transfer_vs_improved"}
        paired = tests["improved_vs_baseline"]
        assert paired["images"] == baseline[split]["n"]
        assert paired["roc_auc_difference"] == pytest.approx(row["improved_minus_baseline"], abs=1e-5)
        assert 0.0 <= paired["roc_auc_p_value"] <= 1.0 and 0.0 <= paired["accuracy_p_value"] <= 1.0


def test_learning_curves_have_one_row_per_epoch(project, first_repro):
    loss = pd.read_csv(project / f"plots/learning_curves/{run_of('baseline')}/loss.csv")
    assert list(loss.columns) == ["epoch", "training", "validation"] and list(loss["epoch"]) == [1]
    trained = json.loads((project / f"metrics/train/{run_of('baseline')}.json").read_text())
    assert trained["epochs_run"] == 1 and trained["val_loss"] == pytest.approx(loss["validation"].min())


def test_dvc_metrics_and_plots_render(project, first_repro, tmp_path):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project))
    files = next(iter(shown.values()))["data"]
    assert set(files) == {f"metrics/{run_of(model)}.json" for model in MODELS}   # the headline scores, nothing else
    for model in MODELS:
        scores = files[f"metrics/{run_of(model)}.json"]["data"]
        assert set(scores) == {"val", "test", "epochs"}
        assert set(scores["val"]) == {"acc", "bal_acc", "majority", "auc", "f1", "sens", "spec"}
        details = json.loads((project / "metrics/evaluate" / f"{run_of(model)}.json").read_text())
        assert scores["test"]["auc"] == round(details["test"]["roc_auc"], 4)
    table = run(["dvc", "metrics", "show"], project)
    assert max(map(len, table.splitlines())) <= 220, table     # seven scores per split and the epochs
    run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], project)
    page = (tmp_path / "html" / "index.html").read_text()
    plots = ["plots/compare/roc_val.csv", "plots/compare/roc_test.csv"] + [
        f"plots/{kind}/{run_of(model)}/{name}.csv" for model in MODELS
        for kind, names in (("roc", ("val", "test")), ("confusion", ("val", "test")),
                            ("learning_curves", ("loss", "accuracy"))) for name in names]
    for plot in plots:
        assert plot in page, plot
    assert not re.search(r"<script[^>]+src=\"https?://", page)   # vega inlined: renders offline


def test_report_has_every_section_and_the_metrics(project, first_repro):
    page = (project / "reports/report.html").read_text()
    for anchor in ("banner", "data", "models", "learning-curves", "roc", "confusion", "metrics", "calibration",
                   "discussion", "mistakes", "correct", "ethics", "compute"):
        assert f'<section id="{anchor}">' in page, anchor
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    explained = {model: pd.read_csv(project / "data/evaluate" / run_of(model) / "explanations.csv") for model in MODELS}
    # learning curves, 2 confusion and a reliability diagram each, 2 overlaid ROC, every heat map
    assert len(images) == 4 * len(MODELS) + 2 + sum(len(table) for table in explained.values())
    for model, table in explained.items():
        assert set(table["method"]) == {"gradcam"}, model        # every model here is a chain with conv layers
        assert (table["group"] == "correct").sum() >= 2, model
        for figure in table["figure"]:
            with Image.open(project / "data/evaluate" / run_of(model) / figure) as pair:
                heat = np.asarray(pair.convert("RGB"))[:, 102:].astype(float)
                assert pair.size == (202, 100) and heat.std() > 1, (model, figure)
    data = page[page.index('<section id="data">'):page.index('<section id="models">')]
    assert "seed 2021" in data and "offline sample generator" in data
    for data in images:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))
        assert pixels.std() > 1  # not blank
    markdown = (project / "reports/report.md").read_text()
    for model in MODELS:
        metrics = json.loads((project / "metrics" / "evaluate" / f"{run_of(model)}.json").read_text())
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {model} |"))
        shown = row.split(" | ")[1]  # the validation table comes first: accuracy, then its interval
        bounds = metrics["val"]["interval"]["accuracy"]
        assert shown.startswith(f"{metrics['val']['accuracy']:.3f} [{bounds['low']:.3f}–{bounds['high']:.3f}]"), \
            (model, row)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (project / "reports" / link).stat().st_size > 0, link


def test_predict_gives_evaluate_probabilities(project, first_repro, tmp_path, monkeypatch):
    """For every model (the transfer one evaluated on cached features), predict on the prepared PNG."""
    monkeypatch.chdir(project)
    tree = unzip_prepared(project / "data/prepared", tmp_path / "prepared")
    for model in MODELS:
        scored = pd.read_csv(project / "data/evaluate" / run_of(model) / "predictions_test.csv").head(6)
        out = tmp_path / f"{model}.csv"
        assert run_cli(predict.main, [model, *(str(tree / file) for file in scored["file"]), "--csv", str(out)]) == 0
        predicted = pd.read_csv(out)
        assert [Path(file).relative_to(tree).as_posix() for file in predicted["file"]] == list(scored["file"])
        np.testing.assert_allclose(predicted["probability_Male"], scored["probability"], atol=2e-6)
        assert list(predicted["predicted"]) == list(scored["predicted"])


def test_second_repro_has_nothing_to_do(project, first_repro):
    output = run(["dvc", "repro"], project)
    assert stages_run(output) == []


def test_rerunning_a_stage_by_hand_changes_no_byte(project, first_repro):
    run([sys.executable, "-m", "stages.tfrecords"], project)
    assert "up to date" in run(["dvc", "status"], project)


def edit_comment(project: Path, module: str) -> None:
    path = project / module
    path.write_text(path.read_text() + "\n# a comment, no change in behaviour\n")


def test_a_comment_reruns_only_that_stage(project, first_repro):
    edit_comment(project, "stages/tfrecords.py")
    output = run(["dvc", "repro"], project)
    assert stages_run(output) == ["tfrecords"]   # its output is byte-identical: nothing downstream reruns


def test_a_shared_module_reruns_exactly_the_stages_that_import_it(project, first_repro):
    """The baseline's model code: its train, evaluate and export stages import it, nothing else. (The deps
    of every stage are its whole import closure: tests/test_layout.py checks that for every module.)"""
    importers = sorted(name for name, (modules, _) in pipeline_code(project).items() if "stages.models.baseline" in modules)
    assert importers == sorted([f"train@baseline-{SEED}", f"evaluate@baseline-{SEED}", "export@baseline"])
    edit_comment(project, "stages/models/baseline.py")
    output = run(["dvc", "repro"], project)
    assert sorted(stages_run(output)) == importers   # the retrained model is byte-identical: cards, compare, report stay


def test_changing_epochs_reruns_only_that_model(project, first_repro):
    set_params(project, {"train.baseline.epochs": 2})
    output = run(["dvc", "repro"], project)
    assert sorted(stages_run(output)) == ["cards@baseline", "compare", f"evaluate@baseline-{SEED}", "export@baseline",
                                          "report", f"train@baseline-{SEED}"]
    loss = pd.read_csv(project / f"plots/learning_curves/{run_of('baseline')}/loss.csv")
    assert list(loss["epoch"]) == [1, 2]


def test_changing_the_transfer_head_keeps_the_features(project, first_repro):
    """What `dvc status` finds stale, without running it (the epochs test above runs such a change
    through): the head's training and the report, which lists every train param; never the features."""
    before = (project / "params.yaml").read_text()
    set_params(project, {"train.transfer.head_units": [8], "train.transfer.dropout": 0.2})
    stale = set(json.loads(run(["dvc", "status", "--json"], project)))
    (project / "params.yaml").write_text(before)
    assert stale == {f"train@transfer-{SEED}", "report"}
    assert "up to date" in run(["dvc", "status"], project)


def test_changing_the_reference_reruns_only_the_comparison(project, first_repro):
    set_params(project, {"compare.reference": "improved"})
    output = run(["dvc", "repro"], project)
    assert sorted(stages_run(output)) == ["compare", "report"]
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert comparison["reference"] == "improved" and "baseline_minus_improved" in comparison["val"]["roc_auc"]



def test_experiments_queue_compare_apply(project, first_repro, tmp_path):
    """The experiment workflow: queue two, run them side by side (two DVC queue workers, TensorFlow
    told to take one share of the cores each), compare, apply one, commit, diff, plot two revisions."""
    git = GIT
    run([*git, "add", "-A"], project)
    run([*git, "commit", "-qm", "before the experiments"], project)
    for rate in ("0.01", "0.0001"):
        run(["dvc", "exp", "run", "--queue", "-n", f"lr-{rate}", "-S", f"train.baseline.learning_rate={rate}"], project)
    # What `make queue JOBS=2` runs; then `dvc queue status` until both are done. (Waiting on `dvc exp run
    # --run-all` instead once hung: a worker stayed up after both tasks had succeeded.)
    run(["dvc", "queue", "start", "--jobs", "2"], project, env={"FACEGENDER_JOBS": "2"})
    deadline = time.monotonic() + 600
    while True:
        rows = [line.split() for line in run(["dvc", "queue", "status"], project).splitlines()]
        states = {row[1]: row[-1] for row in rows if len(row) > 2 and row[1].startswith("lr-")}
        assert "Failed" not in states.values(), run(["dvc", "queue", "logs", "lr-0.01"], project)[-2000:]
        if list(states.values()).count("Success") == 2 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert states == {"lr-0.01": "Success", "lr-0.0001": "Success"}, states
    run(["dvc", "queue", "stop"], project, timeout=120)
    cores = len(os.sched_getaffinity(0))
    for rate in ("0.01", "0.0001"):
        log = run(["dvc", "queue", "logs", f"lr-{rate}"], project)
        assert f"CPU threads {max(1, cores // 2)} of {cores}" in log, log[-2000:]
    table = pd.read_csv(io.StringIO(run(["dvc", "exp", "show", "--csv"], project)))
    experiments = table[table["Experiment"].isin(["lr-0.01", "lr-0.0001"])]
    assert sorted(experiments["train.baseline.learning_rate"].astype(float)) == [0.0001, 0.01]
    assert experiments[f"metrics/{run_of('baseline')}.json:val.auc"].between(0, 1).all()
    assert experiments[f"metrics/{run_of('baseline')}.json:epochs"].notna().all()
    metric_columns = [column for column in table.columns if column.startswith("metrics/") and ":" in column]
    assert len(metric_columns) == 15 * len(MODELS)                     # 7 scores x 2 splits + epochs, per model
    side_by_side = run([sys.executable, "-m", "stages.experiments"], project).splitlines()   # make compare
    assert max(map(len, side_by_side)) <= 120 and len(side_by_side) >= 4, side_by_side
    assert any(line.startswith("lr-0.01 ") and "train.baseline.learning_rate=0.01" in line for line in side_by_side)
    run(["dvc", "exp", "apply", "lr-0.01"], project)
    run([*git, "add", "-A"], project)
    run([*git, "commit", "-qm", "learning rate 0.01"], project)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--json"], project))
    assert set(diff) == {f"metrics/{run_of('baseline')}.json"}           # only the baseline's scores moved
    assert any(values["diff"] for values in diff[f"metrics/{run_of('baseline')}.json"].values())
    every = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "--all", "--json"], project))
    for model in MODELS:                                                 # --all: the unchanged ones too
        auc = every[f"metrics/{run_of(model)}.json"]["val.auc"]
        assert auc["old"] is not None and (auc["new"] == auc["old"]) is (model != "baseline"), (model, auc)
    # a header, then at most six scores a split (accuracy, balanced accuracy, AUC, F1, sensitivity,
    # specificity): the majority rate and the epochs stay
    assert len(run(["dvc", "metrics", "diff", "HEAD~1"], project).splitlines()) <= 1 + 12
    run(["dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "diff")], project)
    page = (tmp_path / "diff" / "index.html").read_text()
    assert f"plots/roc/{run_of('baseline')}/val.csv" in page and not re.search(r"<script[^>]+src=\"https?://", page)


def test_experiment_lifecycle_keep_discard_return_and_free_the_cache(project, first_repro):
    """docs/experiments.md after an experiment: keep it as a branch, discard another (the queue's), return the
    workspace to the commit, then free the cache of all but the workspace's outputs."""
    # A reference no other test sets (one already run would change nothing, or come back from DVC's run cache).
    output = run(["dvc", "exp", "run", "-n", "reference-transfer", "-S", "compare.reference=transfer"], project)
    assert sorted(stages_run(output)) == ["compare", "report"]
    changed = {line[3:] for line in run(["git", "status", "--porcelain"], project).splitlines()}
    assert {"params.yaml", "dvc.lock", "metrics/comparison.json"} <= changed     # its results are in the workspace

    run(["dvc", "exp", "branch", "reference-transfer", "keep-reference"], project)         # keep it
    kept = {name: run(["git", "show", f"keep-reference:{name}"], project)
            for name in ("params.yaml", "metrics/comparison.json", "dvc.lock")}
    assert yaml.safe_load(kept["params.yaml"])["compare"]["reference"] == "transfer"
    assert json.loads(kept["metrics/comparison.json"])["reference"] == "transfer"
    report = yaml.safe_load(kept["dvc.lock"])["stages"]["report"]["outs"][0]

    run(["dvc", "exp", "remove", "lr-0.0001"], project)                                    # discard one
    assert "lr-0.0001" not in run(["dvc", "exp", "list", "--all-commits", "--name-only"], project).split()

    run(["git", "restore", "params.yaml", "dvc.lock", "metrics", "plots"], project)        # back to the commit
    run(["dvc", "checkout"], project)
    assert run(["git", "status", "--porcelain"], project) == ""
    assert "up to date" in run(["dvc", "status"], project)
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], project)) == {}

    def in_cache(out: dict) -> bool:
        return (project / ".dvc/cache/files/md5" / out["md5"][:2] / out["md5"][2:]).is_file()

    assert in_cache(report)
    run(["dvc", "gc", "-w", "-f"], project)        # keeps the workspace's outputs only: the branch's report goes
    assert not in_cache(report)
    assert "up to date" in run(["dvc", "status"], project)
    outs = {out["path"]: out for stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].values()
            for out in stage.get("outs", [])}
    for path in ("reports", f"models/{run_of('baseline')}", "data/features"):
        assert in_cache(outs[path]), path


def test_a_second_clone_pulls_everything_from_a_shared_remote(project, first_repro, tmp_path):
    """A team: clone A has run the pipeline; it pushes its commits to a git remote and its outputs to
    a DVC remote (a local folder here; S3, GCS or SSH work the same way); clone B pulls and has
    nothing to run. An experiment travels the same way, with dvc exp push and pull."""
    storage, origin, clone = tmp_path / "storage", tmp_path / "origin.git", tmp_path / "clone"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    assert not stages_run(run(["dvc", "repro"], project))
    run(["dvc", "remote", "add", "-d", "shared", str(storage)], project)
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "a shared DVC remote"], project)
    run(["git", "remote", "add", "origin", str(origin)], project)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], project)
    run(["dvc", "push"], project)

    run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone)
    assert not stages_run(run(["dvc", "repro"], clone))
    for output in (f"models/{run_of('transfer')}/model.keras", "data/features/manifest.json", "reports/report.html"):
        assert (clone / output).read_bytes() == (project / output).read_bytes(), output

    run(["dvc", "exp", "run", "-n", "two-epochs", "-S", "train.baseline.epochs=2"], project)
    run(["dvc", "exp", "push", "origin", "two-epochs"], project)     # git refs, and its outputs to storage
    run(["dvc", "exp", "pull", "origin", "two-epochs"], clone)
    table = pd.read_csv(io.StringIO(run(["dvc", "exp", "show", "--csv"], clone)))
    shared = table[table["Experiment"] == "two-epochs"]
    assert len(shared) == 1 and int(shared[f"metrics/{run_of('baseline')}.json:epochs"].iloc[0]) == 2
    run(["dvc", "exp", "apply", "two-epochs"], clone)
    assert "up to date" in run(["dvc", "status"], clone)           # its outputs came from the remote
    assert json.loads((clone / f"metrics/train/{run_of('baseline')}.json").read_text())["epochs_run"] == 2


def test_a_second_seed_adds_only_its_runs_and_compare_judges_over_both(project, first_repro):
    """seeds [2021, 7]: the new seed's train and evaluate stages run, each model's first-seed runs stay
    cached; compare gives every model's mean and spread over the two runs and tests over the seeds;
    the report says which run its figures show."""
    set_params(project, {"seeds": [SEED, 7]})
    output = run(["dvc", "repro"], project)
    # export@<model> exports the first seed's run, unchanged: none reruns; each card covers every seed
    assert sorted(stages_run(output)) == sorted(["compare", "report"] + [f"cards@{model}" for model in MODELS] + [
        f"{kind}@{model}-7" for kind in ("train", "evaluate") for model in MODELS])
    comparison = json.loads((project / "metrics/comparison.json").read_text())
    assert comparison["seeds"] == [SEED, 7] and comparison["adjustment"]["tests"] == 12
    for split in ("val", "test"):
        for model in MODELS:
            runs = [json.loads((project / f"metrics/evaluate/{run_of(model, seed)}.json").read_text())[split]
                    for seed in (SEED, 7)]
            spread = comparison["spread"][split]["roc_auc"][model]
            assert spread["values"] == [found["roc_auc"] for found in runs]
            assert comparison[split]["roc_auc"][model] == pytest.approx(np.mean(spread["values"]))
        for test in comparison["tests"][split].values():
            assert (test["seeds"], test["roc_auc_test"]) == (2, "DeLong over seeds")
            assert test["accuracy_p_adjusted"] >= test["accuracy_p_value"]
    page = (project / "reports/report.html").read_text()
    assert '<section id="seeds">' in page and f"the first seed, {SEED}" in page
    # Seed 7 out again: DVC leaves its stages' outputs, and compare stops until they are removed.
    set_params(project, {"seeds": [SEED]})
    failed = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    message = next(line for line in failed.stderr.splitlines() if "left params.yaml's seeds" in line)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    run(["rm", "-r", *message.split("(rm -r ")[1].split(")")[0].split()], project)
    assert "compare" in stages_run(run(["dvc", "repro"], project))
    assert not list(project.glob("metrics/train/*/7.json")) and not list(project.glob("models/*/7"))


def test_hostile_files_through_dvc_repro_prepare(project, first_repro, tmp_path):
    """Last: the hostile kinds added to the sample's raw data, then `dvc repro -s prepare` alone."""
    outside = tmp_path / "outside"
    outside.mkdir()
    kinds = hostile_tree(project / "data/raw", outside)
    # DVC hashes data/raw itself before prepare runs, following links: a broken link or a loop stops it
    # there, with one line naming the file (prepare's own handling of them is tested in test_hostile.py).
    broken = project / "data/raw" / kinds.pop("broken link")
    (project / "data/raw" / kinds.pop("link loop")).unlink()
    failed = subprocess.run(["dvc", "repro", "-s", "prepare"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert failed.returncode != 0 and "gone.jpg" in failed.stderr and "Traceback" not in failed.stderr
    broken.unlink()
    output = run(["dvc", "repro", "-s", "prepare"], project)
    assert stages_run(output) == ["prepare"] and "Traceback" not in output
    summary = json.loads((project / "metrics/prepare.json").read_text())
    prepared = [file for split in ("train", "val", "test")
                for file in PreparedSplit(project / "data/prepared", split).files()]
    assert len(prepared) + summary["skipped_count"] == len(files_under_split_folders(project / "data/raw"))
    listed = {Path(item["file"]).relative_to("data/raw").as_posix() for item in summary["skipped"]}
    assert {kinds[kind] for kind in ("link out of data/raw", "huge declared size", "unknown folder")} <= listed
    found = {key: (pairs["exact"], pairs["near"]) for key, pairs in summary["duplicates"].items()
             if pairs["exact"] or pairs["near"]}
    assert found == {"train-test": (1, 0)} and summary["duplicates_dropped"] == 1
