"""The benchmark's own pieces, on tiny inputs (the benchmark itself is `make bench`, never a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import bench, machine, measure, report, timings
from stages.common.machine import FLAGS_OF_INTEREST, cpu_info

ROOT = Path(__file__).resolve().parents[1]


def test_corpus_has_the_real_datasets_shape():
    full = bench.corpus_params(1.0)
    assert 2 * full["train_per_class"] in (11_134, 11_136) and 2 * full["val_per_class"] in (1_278, 1_280)
    assert full["test_images"] == 27_167 and full["test_sizes"] == [250, 640]
    assert round(full["test_images"] * full["test_male_fraction"]) == 17_678
    quarter = bench.corpus_params(0.25)
    assert quarter["test_images"] == round(27_167 / 4) and quarter["test_sizes"] == [250, 640]


def test_every_stage_command_is_measured():
    text = (ROOT / "dvc.yaml").read_text()
    measured = yaml.safe_load(bench.measured_commands(text))
    commands = [stage["do"]["cmd"] if "do" in stage else stage["cmd"] for stage in measured["stages"].values()]
    assert commands and all(cmd.startswith("python -m benchmarks.measure -- python -m stages.") for cmd in commands)


def test_measure_records_cpu_and_peak_memory_of_the_whole_tree(tmp_path):
    """A child that allocates 200 MB and a grandchild that burns CPU: both show."""
    log = tmp_path / "log.jsonl"
    script = ("import subprocess, sys, time\n"
              "block = b'x' * (200 * 2**20)\n"
              "subprocess.run([sys.executable, '-c', 'sum(range(3_000_000))'])\n"
              "time.sleep(0.3)\n")
    status, result = measure.measure([sys.executable, "-c", script])
    assert status == 0
    assert result["peak_rss_tree_mb"] > 200 and result["peak_rss_process_mb"] > 200
    assert result["cpu_s"] > 0.05 and result["wall_s"] >= 0.3
    try:
        measure.main(["--label", "x", "--log", str(log), "--", sys.executable, "-c", "raise SystemExit(3)"])
    except SystemExit as exit_:
        assert exit_.code == 3
    assert json.loads(log.read_text())["label"] == "x" and json.loads(log.read_text())["exit"] == 3


def test_dvc_share_is_the_gap_after_each_command():
    commands = [
        {"label": "prepare", "started": 10.0, "ended": 40.0, "wall_s": 30.0, "cpu_s": 58.0,
         "peak_rss_tree_mb": 300.0, "peak_rss_process_mb": 120.0},
        {"label": "tfrecords", "started": 43.0, "ended": 53.0, "wall_s": 10.0, "cpu_s": 10.0,
         "peak_rss_tree_mb": 500.0, "peak_rss_process_mb": 500.0},
    ]
    rows, startup = bench.stage_table(list(reversed(commands)), repro_started=8.5, repro_ended=54.0)
    assert startup == 1.5
    assert [(row["stage"], row["dvc_s"], row["dvc_pct"]) for row in rows] == [("prepare", 3.0, 10.0),
                                                                             ("tfrecords", 1.0, 10.0)]


def run_result(scale: float, features_rss: float) -> dict:
    stages = [{"stage": name, "wall_s": wall, "cpu_s": wall * 1.8, "peak_rss_tree_mb": rss,
               "peak_rss_process_mb": rss, "dvc_s": wall / 20, "dvc_pct": 5.0}
              for name, wall, rss in (("prepare", 30 * scale, 300), ("features", 400 * scale, features_rss))]
    run = {"date": "2026-11-29 13:00 UTC", "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 23.4, "python": "3.11"},
           "scale": scale, "images": {"train": 100, "val": 10, "test": 200}, "skipped": 0,
           "download": {"wall_s": 5.0}, "repro": {"wall_s": 600 * scale, "cpu_s": 1000, "log_bytes": 2000},
           "dvc_startup_s": 1.2, "noop_repro": {"wall_s": 2.0}, "stages": stages,
           "references": {"naive_prepare": {"wall_s": 180 * scale, "images": 310},
                          "bare_predict": {"float32": {"images": 64, "wall_ms_per_image": 20.0, "cpu_ms_per_image": 38.0}},
                          "epoch": {"images": 100, "tfrecords_s_per_epoch": 10.0, "in_memory_s_per_epoch": 9.5,
                                    "ratio": 1.053}},
           "auc": {"baseline": {"val": 0.8, "test": 0.7}}}
    run["summary"] = bench.summarize(run)
    return run


def test_results_page_shows_limits_and_memory_against_scale():
    results = {"runs": [run_result(0.25, 900.0), run_result(1.0, 910.0)]}
    page = report.markdown(results, bench.LIMITS)
    assert "## Scale 1: 310 images" in page and "## Scale 0.25" in page
    assert "| prepare >= 5x the naive loop | 6.00x | yes |" in page
    assert "| whole `dvc repro` <= 20 min | 10.0 min | yes |" in page
    assert "| features | 0.88 GiB | 0.89 GiB |" in page
    assert page.count("| met |") == 1 and "this run is for information" in page      # limits judged at scale 1 only
    slow = run_result(1.0, 3000.0)
    assert "| every stage <= 2.00 GiB peak RSS | 2.93 GiB (features) | **no** |" in report.markdown({"runs": [slow]}, bench.LIMITS)


def test_dvcs_share_is_judged_by_max_of_15_percent_and_2_s_per_stage_and_5_percent_of_the_run():
    run = run_result(1.0, 900.0)
    # prepare: 30 s, DVC 1.5 s after it: 5% of the stage, but against its allowance max(4.5 s, 2 s) 0.33x.
    assert bench.dvc_allowance_ratio(run["stages"][0]) == pytest.approx(1.5 / 4.5)
    short = {"wall_s": 4.0, "dvc_s": 1.9}          # 48% of a 4 s stage: within the 2 s floor
    assert bench.dvc_allowance_ratio(short) < 1 and 100 * short["dvc_s"] / short["wall_s"] > bench.LIMITS["dvc_overhead_pct"]
    assert run["summary"]["dvc_whole_pct"] == pytest.approx(100 * (1.2 + 1.5 + 20.0) / 600, abs=0.05)
    page = report.markdown({"runs": [run]}, bench.LIMITS)
    assert "| DVC after each stage <= max(15% of it, 2 s) | worst 0.33x its allowance (prepare) | yes |" in page
    assert "| DVC <= 5% of the whole run | 3.8% | yes |" in page
    run["stages"].append({"stage": "compare", "wall_s": 1.0, "cpu_s": 1.0, "peak_rss_tree_mb": 1.0,
                          "peak_rss_process_mb": 1.0, "dvc_s": 2.5, "dvc_pct": 250.0})
    run["summary"] = bench.summarize(run)
    assert "| worst 1.25x its allowance (compare) | **no** |" in report.markdown({"runs": [run]}, bench.LIMITS)


@pytest.mark.e2e
def test_gpu_check_says_what_to_do_without_a_gpu():
    """benchmarks/gpu_check.py is for GPU machines; on this CPU-only one it must say so, not fail oddly."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sees no GPU" in done.stderr and "make env GPU=1" in done.stderr


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_tile amx_bf16

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""


def test_the_machine_names_its_cpu_and_the_flags_speed_depends_on():
    assert cpu_info(CPUINFO) == ("Intel(R) Xeon(R) Processor", ["avx2", "avx512f", "avx512_bf16", "amx_bf16"])
    older = CPUINFO.replace(" avx512f avx512bw avx512_bf16 amx_tile amx_bf16", "")
    assert cpu_info(older)[1] == ["avx2"]
    here = machine.machine()
    assert here["cpu"] and here["cores"] >= 1 and set(here["flags"]) <= set(FLAGS_OF_INTEREST)


def test_a_timed_command_is_added_with_its_machine_and_a_failed_one_is_not(tmp_path, monkeypatch):
    path = tmp_path / "timings.json"
    monkeypatch.setattr(timings, "TIMINGS_JSON", path)
    assert timings.main(["--installed", "--", "true"]) == 0
    assert timings.main(["--", "false"]) == 1
    runs = json.loads(path.read_text())["runs"]
    assert len(runs) == 1 and runs[0]["command"] == "true" and runs[0]["includes_install"] is False
    assert 0 <= runs[0]["wall_s"] < 10 and runs[0]["machine"]["cpu"] and "flags" in runs[0]["machine"]
    assert timings.test_result("...\n===== 515 passed, 33 deselected in 88.68s (0:01:28) =====\n") == "515 passed, 33 deselected"


def test_disk_counts_hard_linked_files_once(tmp_path, monkeypatch):
    monkeypatch.setattr(timings, "TIMINGS_JSON", tmp_path / "timings.json")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 1000)
    os.link(tmp_path / "a" / "f", tmp_path / "a" / "g")
    assert timings.disk_entry([str(tmp_path / "a")], "two links")["bytes"] == 1000



def test_the_features_stage_is_judged_against_its_own_engine_on_images_in_memory():
    run = run_result(1.0, 900.0)       # features: 400 s over 310 images, 1290 ms an image
    run["references"]["bare_predict"] = {"float32": {"wall_ms_per_image": 2000.0, "cpu_ms_per_image": 1.0},
                                         "bfloat16": {"failed": "cannot run here"},
                                         "litert": {"wall_ms_per_image": 1200.0, "cpu_ms_per_image": 1.0}}
    run["engine"] = {"precision": "float32", "engine": "litert", "asked": "precision auto, engine auto"}
    summary = bench.summarize(run)
    assert summary["features_over_bare"] == pytest.approx(1290.32 / 1200, abs=0.01)
    page = report.markdown({"runs": [run | {"summary": summary}]}, bench.LIMITS)
    assert "| features <= 1.25x its engine on images in memory | 1.08x | yes |" in page
    assert "the transfer model's base: float32 on litert (precision auto, engine auto)" in page
