"""The transfer model's frozen base per image on each engine, on this CPU and with oneDNN capped at AVX2.

    python -m benchmarks.engines            # benchmarks/engines.json (docs block `engines`): this CPU's result
                                            # replaces an earlier one on the same CPU, others stay

For each way the features stage can run the base (train.transfer.precision x .engine: Keras float32,
Keras bfloat16, LiteRT float32), the wall and CPU milliseconds an image over `--images` images in
batches of features.batch_size, and the largest difference to Keras float32 relative to its largest
output. Each kind runs in a process of its own: once as this CPU is, once with ONEDNN_MAX_CPU_ISA=AVX2,
which takes oneDNN's (Keras's) kernels back to AVX2, emulating a CPU without AVX-512 and bfloat16.
XNNPACK (LiteRT) ignores that variable and keeps using what the CPU has, so its figure under the cap
is this CPU's, not an AVX2 CPU's: the docs say so beside it. Keras bfloat16 cannot run under the cap
(oneDNN has no bfloat16 kernels below AVX512_CORE_BF16): recorded as such. Also records what `auto`
resolves to in each case. The images are random pixels: the work does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from benchmarks.machine import machine

RESULTS = Path(__file__).with_name("engines.json")
KINDS = [("float32", "keras"), ("bfloat16", "keras"), ("float32", "litert")]
CAPPED = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(precision: str, engine: str, count: int, reference: str | None) -> dict:
    """In this process: the base as params.yaml cuts it, on `engine` in `precision`, over `count` images."""
    import numpy as np

    from stages.common import distribute
    from stages.common.config import load_params
    from stages.modelkit import engine_choice
    from stages.modelkit.engines import batch_runner
    from stages.modelkit import vgg16

    params = load_params()
    section, batch = params.train["transfer"], params.features.batch_size
    threads = distribute.limit_threads()
    auto = engine_choice.resolve_base("auto", "auto")
    engine_choice.resolve_base(precision, engine)   # refuses what this machine cannot run
    extractor = vgg16.feature_extractor((100, 100, 3), section["weights"], section["feature_layer"], precision)
    run = batch_runner(extractor, engine, threads)
    images = np.random.default_rng(0).uniform(0, 255, (count, 100, 100, 3)).astype(np.float32)
    run(images[:batch])                                  # warm-up: graph tracing, allocation
    started, cpu = time.perf_counter(), cpu_seconds()
    outputs = np.concatenate([np.asarray(run(images[i:i + batch]), np.float32) for i in range(0, count, batch)])
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    found = {"wall_ms_per_image": round(1000 * wall / count, 1), "cpu_ms_per_image": round(1000 * cpu / count, 1),
             "cpu_per_wall": round(cpu / wall, 2), "auto": list(auto)}
    if reference is None:
        np.save(os.environ["FACEGENDER_REFERENCE_OUT"], outputs)
    else:
        expected = np.load(reference)
        found["max_relative_difference"] = float(np.abs(outputs - expected).max() / np.abs(expected).max())
    return found


def in_a_process(precision: str, engine: str, count: int, environ: dict[str, str], reference: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environ}
    if (precision, engine) == KINDS[0]:
        env["FACEGENDER_REFERENCE_OUT"] = str(reference)
    argv = [sys.executable, "-m", "benchmarks.engines", "--one", precision, engine, "--images", str(count)]
    if (precision, engine) != KINDS[0]:
        argv += ["--reference", str(reference)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"failed": (lines[-1] if lines else f"exit {done.returncode}")[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--one", nargs=2, metavar=("PRECISION", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one, args.images, args.reference)))
        return
    reference = Path(os.environ.get("TMPDIR", "/tmp")) / "facegender-engines-reference.npy"
    runs = {}
    for label, environ in (("native", {}), ("onednn_avx2", CAPPED)):
        runs[label] = {}
        for precision, engine in KINDS:
            print(f"engines: {label}, {precision} on {engine}", file=sys.stderr, flush=True)
            runs[label][f"{precision}/{engine}"] = in_a_process(precision, engine, args.images, environ, reference)
    reference.unlink(missing_ok=True)
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
              "images": args.images, "runs": runs}
    RESULTS.write_text(json.dumps({"machines": with_result(read_results(), result)}, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def read_results() -> list[dict]:
    """The results kept so far, one per CPU (model and flags)."""
    return json.loads(RESULTS.read_text())["machines"] if RESULTS.is_file() else []


def with_result(kept: list[dict], result: dict) -> list[dict]:
    """`kept` with `result` in place of the earlier result on the same CPU (model and flags), or added."""
    def cpu(entry: dict) -> tuple:
        return entry["machine"]["cpu"], tuple(entry["machine"]["flags"])

    return [entry for entry in kept if cpu(entry) != cpu(result)] + [result]


if __name__ == "__main__":
    main()
