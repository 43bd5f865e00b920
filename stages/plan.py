"""plan: the real run (the assignment's setup on the real data) before it starts, then, with --run, the run.

    facegender plan              # make real-plan: datasets, disk, time; downloads nothing
    facegender plan --run        # make real: the plan, refused when the disk is short, then
                                 # dvc exp run -n real-<time> -S <REAL_RUN settings>
    facegender plan --probe      # only this machine's speed (JSON), as make bench records it

The real run is params.yaml with REAL_RUN's settings on top: the Kaggle datasets, ImageNet VGG16
weights and the assignment's transfer model (its whole frozen conv base, block5_pool, with the head
of train.transfer). It runs as a DVC experiment, so `dvc exp show` lists it beside the sample runs.

What the plan states, and where each number comes from:
- per dataset, the version, date, size and licence Kaggle reports (the kaggle client's GetDataset
  call, as the download stage makes it; downloads nothing). Without credentials it asks anonymously;
  when Kaggle refuses that, the plan stops with the login line (the download stage would go on without
  the metadata, but the disk check needs the sizes);
- the disk the run needs against what is free: the archives and their unpacked files (JPEGs do not
  compress: as large as the archive), prepared PNGs and TFRecords at most 100x100x3 bytes an image,
  the features exactly (the cut layer's values times the precision's bytes), models and figures,
  and the DVC cache's copies (none where it hard-links on the same disk, as .dvc/config asks);
- the time per stage on this machine: the benchmark's scale-1 run (benchmarks/results.json: a corpus
  the size of the real data, on its machine) scaled by the images and by how much slower or faster this
  machine is at each stage's work, measured here in seconds (stages/modelkit/probe.py: the frozen base
  on the engine auto picks here, the baseline's training step, a stage's start; medians of
  interleaved rounds) against the same measurement the benchmark recorded (its newest scale-1 run
  with one). A benchmark from before it recorded one is scaled by cores alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import yaml

from stages.common import cli
from stages.common.config import PARAMS_FILE, Params, load_params, parse_params
from stages.common.errors import UserError
from stages.modelkit.probe import PER_SEED_STAGES, estimate_seconds, speed_lines

# The settings that make params.yaml's run the real one (dvc exp run -S key=value for each).
REAL_RUN = {
    "download.source": "kaggle",
    "train.transfer.weights": "imagenet",
    # The assignment freezes VGG16 "until the fully connected layer": the whole conv base.
    "train.transfer.feature_layer": "block5_pool",
}
BENCHMARK_RESULTS = Path("benchmarks/results.json")
GB = 1e9
# A prepared image is a 100x100 RGB PNG: never more than its raw pixels (plus a few header bytes).
PNG_BOUND_BYTES = 100 * 100 * 3 + 1024
# models/, data/evaluate/, reports/ and the ImageNet weights file (58 MB): measured 100 MB at scale 1.
SMALL_OUTPUTS_BYTES = int(0.3 * GB)
# VGG16's output shape per layer at 100x100 input (height x width x channels).
VGG16_SHAPES = {"block1_pool": (50, 50, 64), "block2_pool": (25, 25, 128), "block3_pool": (12, 12, 256),
                "block4_pool": (6, 6, 512), "block5_pool": (3, 3, 512)}
PRECISION_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def real_settings(weights: str | None = None) -> dict[str, str]:
    """REAL_RUN, with another VGG16 notop weights file in place of Keras's ImageNet one if given."""
    return REAL_RUN | ({"train.transfer.weights": weights} if weights else {})


def real_params(base: Path = PARAMS_FILE, settings: dict[str, str] | None = None) -> Params:
    """params.yaml with the real run's settings applied, validated as the run will see it."""
    raw = yaml.safe_load(Path(base).read_text())
    for key, value in (settings or REAL_RUN).items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_params(raw, source=f"{base} with the real run's settings")


@dataclass(frozen=True)
class Need:
    """One line of the disk estimate."""
    what: str
    bytes: int


def feature_bytes_per_image(params: Params) -> int | None:
    """The features stage's bytes per image (values x precision, 3% record overhead), or None for a
    layer this table does not know. Precision auto counts float32's 4 bytes: the most it can take."""
    transfer = params.train.get("transfer")
    if not transfer or transfer.get("feature_layer") not in VGG16_SHAPES:
        return None
    height, width, channels = VGG16_SHAPES[transfer["feature_layer"]]
    scale = params.prepare.image_size / 100
    values = round(height * scale) * round(width * scale) * channels
    return int(values * PRECISION_BYTES.get(transfer.get("precision", "float32"), 4) * 1.03)


def cache_shares_files(root: Path = Path(".")) -> bool:
    """Whether DVC's cache holds outputs as links (no second copy): the project's cache.type (read by
    DVC's own config reader) starts with hardlink or symlink, and the cache is on the project's disk.
    reflink, DVC's default, copies on file systems without reflinks (ext4: benchmarks/history.md), so it
    counts as copying; so does a folder that is no DVC project."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            kinds = repo.config["cache"].get("type") or ["reflink", "copy"]
            cache = Path(repo.cache.local.path)
    except NotDvcRepoError:
        return False
    first = (kinds if isinstance(kinds, list) else str(kinds).split(","))[0].strip()
    while not cache.exists() and cache != cache.parent:   # a fresh project has no cache folder yet
        cache = cache.parent
    return first in ("hardlink", "symlink") and os.stat(cache).st_dev == os.stat(root).st_dev


def disk_needs(download_bytes: dict[str, int], images: int, params: Params, shared_cache: bool) -> list[Need]:
    """What the run writes, largest first in the pipeline's order."""
    archives = sum(download_bytes.values())
    needs = [Need("data/.downloads: the archives, kept so that a rerun does not download them again", archives),
             Need("data/raw: the unpacked images", archives),
             Need(f"data/prepared: {images:,} PNGs, at most", images * PNG_BOUND_BYTES),
             Need("data/tfrecords: the same PNGs again, at most", images * PNG_BOUND_BYTES)]
    per_feature = feature_bytes_per_image(params)
    if per_feature:
        needs.append(Need(f"data/features: {per_feature:,} bytes an image", images * per_feature))
    needs.append(Need("models, evaluations, report, ImageNet weights", SMALL_OUTPUTS_BYTES))
    if not shared_cache:
        needs.append(Need("DVC cache copies (cache.type copies, or the cache is on another disk)",
                          sum(need.bytes for need in needs[1:])))
    return needs


def benchmark_run(path: Path | None = None) -> dict | None:
    """The benchmark's scale-1 run (BENCHMARK_RESULTS) that the plan scales: the newest that measured its
    machine (a probe), else the newest; None when there is none."""
    path = Path(path or BENCHMARK_RESULTS)
    if not path.is_file():
        return None
    runs = [run for run in json.loads(path.read_text()).get("runs", []) if run.get("scale") == 1.0]
    return max(runs, key=lambda run: (bool(run.get("probe")), run.get("date", "")), default=None)


def stage_times(run: dict, images: int, cores: int, seeds: int = 1,
                probe: dict | None = None) -> list[tuple[str, float]]:
    """Seconds per stage here: the benchmark's, times the image ratio, times how much slower this machine
    is at the stage's work (probe.estimate_seconds, when both this machine's probe and the benchmark's are
    known: each probe ran the base at its own run's cut; train and evaluate have a fixed start apart);
    else times its cores over ours. A per-seed stage (train, evaluate) times the number of seeds, and says so."""
    measured = sum(run["images"].values())
    their_cores = run["machine"]["cores"]
    times = []
    probed = bool(probe and run.get("probe"))
    for stage in run["stages"]:
        name = stage["stage"]
        if probed:
            seconds = estimate_seconds(name, stage["wall_s"], images / measured, probe, run["probe"], cores, their_cores)
        else:
            seconds = stage["wall_s"] * images / measured * their_cores / max(cores, 1)
        if seeds > 1 and name.startswith(PER_SEED_STAGES):
            name, seconds = f"{name}, x{seeds} seeds", seconds * seeds
        times.append((name, seconds))
    return times


def expected_images(run: dict | None) -> int:
    """The labelled images the real datasets hold: the counts the benchmark's corpus copies (their
    published sizes: benchmarks/bench.py)."""
    return sum(run["images"].values()) if run else 39_582


def gigabytes(count: int) -> str:
    return f"{count / GB:.1f} GB"


def plan_lines(infos: dict, params: Params, free: int, run: dict | None, cores: int,
               shared_cache: bool, settings: dict[str, str] | None = None,
               probe: dict | None = None) -> tuple[list[str], int]:
    """The plan as lines of text, and the bytes the run needs."""
    lines = ["The real run: " + ", ".join(f"{key}={value}" for key, value in (settings or REAL_RUN).items()), "",
             "Datasets (Kaggle):"]
    for name, info in infos.items():
        size = gigabytes(info.total_bytes) if info.total_bytes else "size not reported"
        updated = f", updated {info.last_updated[:10]}" if info.last_updated else ""
        lines.append(f"  {name}: {info.slug} version {info.version}{updated}, {size}, licence "
                     f"{info.license or 'not stated'}")
    images = expected_images(run)
    needs = disk_needs({name: info.total_bytes or 0 for name, info in infos.items()}, images, params, shared_cache)
    total = sum(need.bytes for need in needs)
    lines += ["", f"Disk (about {images:,} images; DVC cache {'shares the files (hard links)' if shared_cache else 'copies them'}):"]
    lines += [f"  {gigabytes(need.bytes):>8}  {need.what}" for need in needs]
    lines.append(f"  {gigabytes(total):>8}  needed; {gigabytes(free)} free here"
                 + ("" if free >= total else "  <- not enough"))
    lines += ["", "Time on this machine (estimate):"]
    if run is None:
        lines.append("  no benchmark run at scale 1 (make bench): no estimate")
    else:
        layer = params.train.get("transfer", {}).get("feature_layer")
        times = stage_times(run, images, cores, len(params.seeds), probe)
        lines += speed_lines(run, cores, layer, probe)
        lines += [f"  {seconds / 60:>6.1f} min  {stage}" for stage, seconds in times]
        lines.append(f"  {sum(seconds for _, seconds in times) / 60:>6.1f} min  in all, after the download")
    return lines, total


def free_bytes(path: Path = Path(".")) -> int:
    return shutil.disk_usage(path).free


def make_plan(settings: dict[str, str], params_path: Path = PARAMS_FILE) -> tuple[list[str], int, int]:
    """Ask Kaggle about each dataset (no download) and build the plan: (lines, needed, free bytes)."""
    from stages.images import kaggle_datasets, kaggle_login

    params = real_params(params_path, settings)
    load_params(params_path)     # params.yaml itself must be valid too: the experiment starts from it
    api = kaggle_login.kaggle_login()
    infos = {name: kaggle_datasets.dataset_info(api, name, source) for name, source in params.download.datasets.items()}
    free = free_bytes()
    run = benchmark_run()
    probe = None
    if run is not None and run.get("probe"):
        from stages.modelkit.probe import probe as measure_machine

        print("Measuring this machine (the frozen base, a training step, a stage's start: "
              "under a minute)...", file=sys.stderr, flush=True)
        probe = measure_machine(params)
    lines, needed = plan_lines(infos, params, free, run, os.cpu_count() or 1, cache_shares_files(), settings, probe)
    return lines, needed, free


def experiment_command(name: str, settings: dict[str, str] | None = None) -> list[str]:
    """dvc exp run for the real run, named `name`."""
    options = [part for key, value in (settings or REAL_RUN).items() for part in ("-S", f"{key}={value}")]
    return ["dvc", "exp", "run", "-n", name, *options]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true",
                        help="after the plan, start the real run as a DVC experiment (refused when the disk is short)")
    parser.add_argument("--name", help="the experiment's name (default real-<UTC date and time>)")
    parser.add_argument("--probe", action="store_true",
                        help="only measure this machine with params.yaml as it is (stages/modelkit/probe.py) and print "
                             "the result as JSON: what make bench records beside its stage times")
    parser.add_argument("--weights", metavar="FILE",
                        help="a VGG16 notop weights file to use instead of Keras's ImageNet file (make real WEIGHTS=FILE)")
    args = parser.parse_args(argv)
    if args.probe:
        from stages.modelkit.probe import probe

        print(json.dumps(probe(load_params())))
        return
    if args.weights and not Path(args.weights).is_file():
        raise UserError(f"--weights {args.weights}: no such file; give a VGG16 notop weights file (.h5)")
    settings = real_settings(str(Path(args.weights).resolve()) if args.weights else None)
    lines, needed, free = make_plan(settings)
    print("\n".join(lines), flush=True)
    if not args.run:
        return
    if needed > free:
        raise UserError(f"the real run needs about {gigabytes(needed)} on {Path.cwd()}, {gigabytes(free)} are free: "
                        f"free {gigabytes(needed - free)}, or move the DVC cache (dvc cache dir) to a bigger disk")
    name = args.name or datetime.now(timezone.utc).strftime("real-%Y%m%d-%H%M")
    command = experiment_command(name, settings)
    print(f"\n$ {' '.join(command)}", flush=True)
    sys.exit(subprocess.call(command))


if __name__ == "__main__":
    cli.run(main, stage=False)
