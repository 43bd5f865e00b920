"""The real run's plan (make real-plan) and start (make real): sizes from Kaggle's metadata, disk against
what is free (refused, in one line, when short), time from the benchmark; and `make real`'s experiment
through DVC against the local fake Kaggle, up to the ImageNet weights file it cannot download here."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages import plan
from stages.common.config import load_params
from stages.common.errors import UserError
from tests.fake_kaggle import ISSUED_TOKEN, REFRESH_TOKEN, USERNAME
from tests.helpers import ROOT, run_cli

GB = 1e9


@pytest.fixture
def benchmark(monkeypatch):
    from stages.modelkit import probe

    monkeypatch.setattr(plan, "BENCHMARK_RESULTS", ROOT / "benchmarks" / "results.json")
    # The plan measures this machine against the benchmark's probe; the e2e test below runs the real probe.
    monkeypatch.setattr(probe, "probe", lambda params: PROBE_THERE | {"base_ms": 20.0, "cpu": "here"})
    return plan.benchmark_run(ROOT / "benchmarks" / "results.json")


def test_real_params_are_the_assignments_setup():
    params = plan.real_params(ROOT / "params.yaml")
    assert params.download.source == "kaggle"
    assert params.train["transfer"]["weights"] == "imagenet"
    assert params.train["transfer"]["feature_layer"] == "block5_pool"
    assert load_params(ROOT / "params.yaml").download.source == "sample"       # params.yaml itself unchanged


@pytest.mark.parametrize("precision, bytes_per_value", [("float32", 4), ("bfloat16", 2), ("float16", 2),
                                                     ("auto", 4)])   # auto: the most it can take
def test_feature_bytes_are_the_cut_layers_values(precision, bytes_per_value):
    params = plan.real_params(ROOT / "params.yaml", plan.REAL_RUN | {"train.transfer.precision": precision})
    assert plan.feature_bytes_per_image(params) == int(3 * 3 * 512 * bytes_per_value * 1.03)


def test_disk_needs_count_the_cache_only_when_it_copies():
    params = plan.real_params(ROOT / "params.yaml")
    shared = plan.disk_needs({"a": int(GB), "b": int(GB)}, 40_000, params, shared_cache=True)
    copied = plan.disk_needs({"a": int(GB), "b": int(GB)}, 40_000, params, shared_cache=False)
    assert shared[0].bytes == shared[1].bytes == 2 * GB                  # the archives, then unpacked
    assert shared[2].bytes == 40_000 * plan.PNG_BOUND_BYTES
    cache = sum(need.bytes for need in copied) - sum(need.bytes for need in shared)
    assert cache == sum(need.bytes for need in shared[1:])               # every output but the archives (not a DVC output)


@pytest.mark.parametrize("cache_type, shares", [("hardlink,copy", True), ("reflink,copy", False), (None, False)])
def test_cache_sharing_read_from_dvcs_config(tmp_path, cache_type, shares):
    project, plain = tmp_path / "project", tmp_path / "plain"
    project.mkdir()
    plain.mkdir()
    from dvc.repo import Repo

    Repo.init(str(project), no_scm=True).close()        # what `dvc init --no-scm` and `dvc config` do
    if cache_type:
        with Repo(str(project)) as repo, repo.config.edit() as config:
            config["cache"]["type"] = cache_type
    assert plan.cache_shares_files(project) is shares
    assert plan.cache_shares_files(plain) is False        # no DVC project: counted as copies
    assert plan.cache_shares_files(ROOT) is True          # this project: hardlink,copy (.dvc/config)


def test_stage_times_scale_with_images_and_cores(benchmark):
    assert benchmark is not None and benchmark["scale"] == 1.0
    same = dict(plan.stage_times(benchmark, sum(benchmark["images"].values()), benchmark["machine"]["cores"]))
    assert same["features"] == pytest.approx(next(s["wall_s"] for s in benchmark["stages"] if s["stage"] == "features"))
    double = dict(plan.stage_times(benchmark, 2 * sum(benchmark["images"].values()), 2 * benchmark["machine"]["cores"]))
    assert double["features"] == pytest.approx(same["features"])


def test_train_and_evaluate_times_count_every_seed(benchmark):
    """The benchmark trained one run per model; five seeds train and evaluate five times, and say so."""
    images, cores = sum(benchmark["images"].values()), benchmark["machine"]["cores"]
    one = plan.stage_times(benchmark, images, cores)
    five = plan.stage_times(benchmark, images, cores, seeds=5)
    for (name, seconds), (named, five_seconds) in zip(one, five):
        if name.startswith(("train@", "evaluate@")):
            assert named == f"{name}, x5 seeds" and five_seconds == pytest.approx(5 * seconds)
        else:
            assert (named, five_seconds) == (name, seconds)
    assert any(name.startswith("train@") for name, _ in one)


def test_plan_states_versions_sizes_disk_and_time(fake, creds, benchmark, capsys):  # noqa: F811
    assert run_cli(plan.main, []) == 0
    out = capsys.readouterr().out
    for name in ("trainval", "test"):
        size = len(fake.datasets[fake.slugs[name]]) / GB
        assert f"{name}: {fake.slugs[name]} version 4, updated 2021-04-15, {size:.1f} GB, licence CC0: Public Domain" in out
    assert "needed;" in out and "free here" in out and "data/features:" in out
    assert "min  features" in out and "in all, after the download" in out
    # Metadata only: nothing downloaded.
    assert fake.blob_gets() == [] and not fake.rpc_calls("datasets.DatasetApiService/DownloadDataset")


def test_plan_asks_anonymously_without_credentials(fake, benchmark, capsys):
    fake.anonymous_rpcs = {"GetDataset"}
    assert run_cli(plan.main, []) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("no Kaggle credentials found") and "going on anonymously" in out.splitlines()[0]
    assert f"trainval: {fake.slugs['trainval']} version 4, updated 2021-04-15" in out
    assert {r["auth"] for r in fake.requests} == {None}
    assert "scaled by images and by this machine's speed, measured just now" in out     # the shipped run's probe
    assert "frozen base up to block5_pool: 20.0 (bfloat16 on keras) / " in out


@pytest.mark.parametrize("anonymous_rpcs", [set(), {"DownloadDataset"}], ids=["refused", "download-only"])
def test_plan_needs_a_login_when_kaggle_refuses_anonymous_metadata(fake, benchmark, capsys, anonymous_rpcs):
    """Unlike the download stage, the plan does not go on without the metadata: its disk check needs the sizes."""
    fake.anonymous_rpcs = anonymous_rpcs
    code = run_cli(plan.main, [])
    captured = capsys.readouterr()
    assert code == 1 and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "error: Kaggle needs a login for dataset" in captured.err and "kaggle auth login" in captured.err
    assert "Disk" not in captured.out and [r["path"].rsplit("/", 1)[1] for r in fake.requests] == ["GetDataset"]


def test_plan_logs_in_with_the_oauth_login(fake, clean_env, benchmark, capsys):
    import json

    (clean_env / ".kaggle").mkdir(exist_ok=True)
    (clean_env / ".kaggle/credentials.json").write_text(json.dumps({
        "refresh_token": REFRESH_TOKEN, "access_token": "", "access_token_expiration": "", "username": USERNAME}))
    assert run_cli(plan.main, []) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "no Kaggle credentials" not in out and "version 4" in out
    dataset_calls = fake.rpc_calls("datasets.DatasetApiService/GetDataset")
    assert {call["auth"] for call in dataset_calls} == {f"Bearer {ISSUED_TOKEN}"}
    assert REFRESH_TOKEN not in out and ISSUED_TOKEN not in out


def test_run_refused_in_one_line_when_the_disk_is_short(fake, creds, benchmark, capsys, monkeypatch):  # noqa: F811
    started = []
    monkeypatch.setattr(plan, "free_bytes", lambda path=Path("."): 10**6)
    monkeypatch.setattr(plan.subprocess, "call", lambda command: started.append(command) or 0)
    code = run_cli(plan.main, ["--run"])
    captured = capsys.readouterr()
    assert code == 1 and started == []
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "GB are free" in errors[0] and "dvc cache dir" in errors[0], captured.err
    assert "<- not enough" in captured.out


def test_run_starts_the_experiment_with_the_real_settings(fake, creds, benchmark, capsys, monkeypatch):  # noqa: F811
    started = []
    monkeypatch.setattr(plan, "free_bytes", lambda path=Path("."): 10**13)
    monkeypatch.setattr(plan.subprocess, "call", lambda command: started.append(command) or 0)
    assert run_cli(plan.main, ["--run", "--name", "real-1"]) == 0
    assert started == [["dvc", "exp", "run", "-n", "real-1", "-S", "download.source=kaggle",
                        "-S", "train.transfer.weights=imagenet", "-S", "train.transfer.feature_layer=block5_pool"]]


PROBE_THERE = {"base_ms": 10.0, "precision": "bfloat16", "engine": "keras", "step_ms": 1.5,
               "cores": 2, "cpu": "there"}


def test_the_plan_scales_the_newest_scale_1_run_that_measured_its_machine(tmp_path):
    """results.json keeps one run per scale and kind of CPU, in no useful order: the plan takes the newest
    scale-1 run with a probe (before, the first scale-1 run, an older one without, so no plan ever used
    a probe), else the newest scale-1 run."""
    import json

    def run(date, scale=1.0, probe=None):
        return {"date": date, "scale": scale, **({"probe": probe} if probe else {})}

    results = tmp_path / "results.json"
    runs = [run("2026-11-29 19:46 UTC"), run("2026-12-02 11:39 UTC", probe=PROBE_THERE),
            run("2026-12-01 09:00 UTC", probe=PROBE_THERE), run("2026-12-03 10:00 UTC", scale=0.1, probe=PROBE_THERE),
            run("2026-12-02 12:00 UTC")]
    results.write_text(json.dumps({"runs": runs}))
    assert plan.benchmark_run(results)["date"] == "2026-12-02 11:39 UTC"
    results.write_text(json.dumps({"runs": [run("2026-11-29 19:46 UTC"), run("2026-11-30 10:00 UTC")]}))
    assert plan.benchmark_run(results)["date"] == "2026-11-30 10:00 UTC"
    results.write_text(json.dumps({"runs": [run("2026-11-29 19:46 UTC", scale=0.1)]}))
    assert plan.benchmark_run(results) is None
    assert plan.benchmark_run(ROOT / "benchmarks" / "results.json").get("probe")      # the shipped results


def test_stage_times_follow_this_machines_measured_speed_at_each_kind_of_work(benchmark):
    """With both machines' probes: the features stage by the base, prepare and tfrecords by the cores,
    train and evaluate by a training step, the rest unchanged; the layer is in the probes."""
    run = benchmark | {"probe": PROBE_THERE}
    images, cores = sum(run["images"].values()), run["machine"]["cores"]
    here = PROBE_THERE | {"base_ms": 40.0, "step_ms": 3.0}
    measured = {stage["stage"]: stage["wall_s"] for stage in run["stages"]}
    estimated = dict(plan.stage_times(run, images, cores, probe=here))
    assert estimated["features"] == pytest.approx(4 * measured["features"])
    assert estimated["prepare"] == pytest.approx(measured["prepare"])
    assert estimated["tfrecords"] == pytest.approx(measured["tfrecords"])
    trained = [name for name in measured if name.startswith(("train@", "evaluate@"))]
    assert trained and all(estimated[name] == pytest.approx(2 * measured[name]) for name in trained)
    assert estimated["compare"] == pytest.approx(measured["compare"])
    on_four = dict(plan.stage_times(run, images, 2 * cores, probe=here))
    assert on_four["prepare"] == pytest.approx(estimated["prepare"] / 2) and on_four["features"] == estimated["features"]
    # A benchmark without a probe: scaled by cores, and the plan says how to measure.
    unprobed = {key: value for key, value in benchmark.items() if key != "probe"}
    assert dict(plan.stage_times(unprobed, images, cores, probe=here))["features"] == pytest.approx(measured["features"])
    lines = plan.speed_lines(unprobed, cores, "block5_pool", here)
    assert "make bench again for a measured estimate" in lines[0]
    lines = plan.speed_lines(run, cores, "block5_pool", here)
    assert "measured just now" in lines[0] and "40.0 (bfloat16 on keras) / 10.0 (bfloat16 on keras" in lines[1]


def test_train_and_evaluate_scale_their_start_apart_from_their_work(benchmark):
    """With start_s in both probes, a train or evaluate stage's first start_s seconds scale by the two
    starts and only the rest by the images and the training step: at scale 0.1 the start is most of it."""
    there = PROBE_THERE | {"start_s": 8.0}
    run = benchmark | {"probe": there}
    images, cores = sum(run["images"].values()), run["machine"]["cores"]
    measured = {stage["stage"]: stage["wall_s"] for stage in run["stages"]}
    here = there | {"step_ms": 3.0, "start_s": 12.0}
    trained = [name for name in measured if name.startswith(("train@", "evaluate@")) and measured[name] > 8.0]
    assert trained
    for count, start_ratio in ((images, 1.5), (10 * images, 1.5)):
        estimated = dict(plan.stage_times(run, count, cores, probe=here))
        for name in trained:
            work = (measured[name] - 8.0) * count / images * 2       # the step is twice as slow here
            assert estimated[name] == pytest.approx(8.0 * start_ratio + work)
    # Same machine, same images: the benchmark's own times.
    same = dict(plan.stage_times(run, images, cores, probe=there))
    assert all(same[name] == pytest.approx(measured[name]) for name in trained)
    # A stage shorter than the start is all start; a probe without start_s scales it all by the step.
    short = benchmark | {"probe": there, "stages": [{"stage": "evaluate@baseline", "wall_s": 4.0}]}
    assert dict(plan.stage_times(short, images, cores, probe=here))["evaluate@baseline"] == pytest.approx(6.0)
    older = dict(plan.stage_times(run, images, cores, probe={key: value for key, value in here.items()
                                                             if key != "start_s"}))
    assert all(older[name] == pytest.approx(2 * measured[name]) for name in trained)
    assert "a TensorFlow stage's start, seconds: 12.0 / 8.0" in "\n".join(plan.speed_lines(run, cores, None, here))


def test_the_plan_says_when_this_machines_speed_moved_during_the_probe(benchmark):
    run = benchmark | {"probe": PROBE_THERE}
    steady = PROBE_THERE | {"rounds": 5, "spread": {"base": 1.1, "baseline": 1.2, "prepare": 1.05}}
    assert not any("note:" in line for line in plan.speed_lines(run, 2, None, steady))
    moving = steady | {"spread": {"base": 2.3, "baseline": 1.4, "prepare": 1.05}}
    lines = plan.speed_lines(run, 2, None, moving)
    assert any(line.startswith("  note: this machine's speed moved between the probe's 5 rounds (the slowest round "
                               "of base took 2.3x the fastest)") for line in lines), lines
    assert not any("note:" in line for line in plan.speed_lines(run, 2, None, PROBE_THERE))   # an older probe


def test_a_failed_stage_start_in_the_probe_is_one_line(monkeypatch):
    import subprocess

    from stages.modelkit import probe

    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback (most recent call last):\n  ...\n"
                                                                   "ValueError: train.baseline: broken")
    monkeypatch.setattr(probe.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(UserError, match=r"^the probe's stage start .* failed: ValueError: train.baseline: broken$"):
        probe.time_start()


@pytest.mark.e2e
def test_plan_probe_measures_this_machine_in_seconds():
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "stages.plan", "--probe"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(found[key] > 0 for key in ("base_ms", "step_ms", "start_s")) and "prepare_ms" not in found
    assert "steps_ms" not in found and found["rounds"] == 5 and set(found["spread"]) == {"base", "step"}
    assert all(spread >= 1 for spread in found["spread"].values())
    assert (found["precision"], found["engine"]) in {("bfloat16", "keras"), ("float32", "litert"), ("float32", "keras")}
    assert found["cores"] == os.cpu_count() and found["cpu"]
