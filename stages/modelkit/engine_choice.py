"""Which way of running the transfer model's frozen base is fastest on this machine: measured once, cached.

    resolve_base("auto", "auto", "block4_pool")   # (precision, engine), e.g. ("float32", "keras")

A CPU's flags do not say it. On the Intel Xeons these figures were taken on, Keras bfloat16 ran the
base several times faster than float32 where the CPU has amx_bf16, and slower than float32 where it
has avx512_bf16 without AMX; on AVX2 alone LiteRT's XNNPACK beat Keras float32 (benchmarks/engines.json,
docs/benchmark.md). So `auto` times each path this machine can run (base_candidates), interleaved
over ROUNDS rounds, and keeps the fastest. Keras float32, the reference every other path is checked
against, stays unless another path is at least MARGIN faster: on a close call the exact path wins.

The choice is kept per machine in CACHE_FILE under $FACEGENDER_CACHE (default
$XDG_CACHE_HOME/facegender, else ~/.cache/facegender), keyed by the CPU (model, flags, oneDNN cap),
the cores, the TensorFlow and LiteRT versions and the base: the features stage, the plan's probe and
the benchmarks then resolve `auto` alike, VM noise cannot flip it between runs, and a rerun gives the
same bytes. Delete the file to time again. The timings never go into a DVC output (they vary from run
to run): the features manifest records what ran, and train, evaluate and predict follow it. The
features stage prints one line saying what runs the base and why (choose_base): pinned in params.yaml,
the only path auto has here, timed here now, or cached (the file's path).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from stages.common import machine
from stages.common.atomic_files import write_json_atomic
from stages.common.errors import UserError

Candidate = tuple[str, str]                 # (precision, engine)
REFERENCE: Candidate = ("float32", "keras")
ROUNDS = 5                                  # interleaved: a slow spell of the machine hits every path alike
IMAGES = 16                                 # per timed call
MARGIN = 0.10                               # how much faster than Keras float32 another path must be
CACHE_FILE = "base-engines.json"
CACHE_VARIABLE = "FACEGENDER_CACHE"
# The prepared images' side (prepare.image_size's default) at which the paths are timed.
MEASURE_SIZE = 100


def base_candidates(precision: str, engine: str, gpus: int, litert: bool) -> list[Candidate]:
    """The (precision, engine) pairs train.transfer's precision and engine allow on this machine, Keras
    float32 first: float16 in Keras on a GPU; on a CPU float32 in Keras, float32 on LiteRT where
    ai-edge-litert is installed, and bfloat16 in Keras where the CPU computes it natively
    (stages/common/machine.py: avx512_bf16 or amx_bf16, oneDNN not capped below them), never emulated.
    An explicit choice is the only candidate for its part."""
    if gpus:
        precision = precision if precision != "auto" else "float32" if engine == "litert" else "float16"
        return [(precision, engine if engine != "auto" else "keras")]
    precisions = [precision] if precision != "auto" else ["float32"] + (["bfloat16"] if machine.native_bfloat16() else [])
    engines = [engine] if engine != "auto" else ["keras"] + (["litert"] if litert else [])
    allowed = [(p, e) for p in precisions for e in engines if e != "litert" or p == "float32"]
    return allowed or [(precisions[0], engines[0])]          # an explicit pair that cannot run: refused later


class BaseChoice(NamedTuple):
    """The frozen base's precision and engine, and why they run here, in words (`why`)."""
    precision: str
    engine: str
    why: str

    def line(self) -> str:
        """The features stage's one line saying what runs the base and why."""
        return f"features: the frozen base runs in {label((self.precision, self.engine))}: {self.why}"


def resolve_base(precision: str, engine: str, feature_layer: str, gpus: int | None = None,
                 litert: bool | None = None) -> Candidate:
    """The frozen base's (precision, engine) on this machine for train.transfer's precision and engine,
    either of which may be auto: of base_candidates, the fastest here (fastest). An explicit choice is
    kept; one this machine cannot run is refused in one line. gpus (how many) and litert (installed)
    are found out when not given."""
    choice = choose_base(precision, engine, feature_layer, gpus, litert)
    return choice.precision, choice.engine


def choose_base(precision: str, engine: str, feature_layer: str, gpus: int | None = None,
                litert: bool | None = None) -> BaseChoice:
    """resolve_base's choice, with why: pinned in params.yaml, the only path auto has here, timed here
    now, or read from this machine's cache (its path, and how to clear it)."""
    from stages.common.distribute import cpu_share
    from stages.models import transfer

    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    litert = machine.litert_installed() if litert is None else litert
    candidates = base_candidates(precision, engine, gpus, litert)
    chosen, how = _decided(candidates, feature_layer, cpu_share())
    chosen = transfer.refuse_unrunnable(*chosen, gpus)
    return BaseChoice(*chosen, why=how or _why_one_path(precision, engine, gpus, litert))


def _why_one_path(precision: str, engine: str, gpus: int, litert: bool) -> str:
    """Why nothing was timed: the params pin the path, or auto has one path on this machine."""
    pinned = [key for key, value in (("precision", precision), ("engine", engine)) if value != "auto"]
    if pinned:
        return f"pinned by train.transfer.{' and .'.join(pinned)} in params.yaml (auto lets each machine choose)"
    if gpus:
        return "the only path auto has on a GPU"
    missing = ([] if machine.native_bfloat16() else ["no native bfloat16"]) + ([] if litert else ["no ai-edge-litert"])
    return f"the only path auto has on this machine ({', '.join(missing)})"


def cache_path(environ: dict[str, str] | None = None) -> Path:
    """Where this machine's measured choices are kept."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_VARIABLE):
        return Path(environ[CACHE_VARIABLE]) / CACHE_FILE
    root = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return root / "facegender" / CACHE_FILE


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def machine_key(feature_layer: str, threads: int) -> str:
    """What the choice depends on, in words: the CPU, the cores the base runs on, the software, the base."""
    return (f"{machine.describe_cpu()}; {threads} threads; tensorflow {_version('tensorflow')}, "
            f"ai-edge-litert {_version('ai-edge-litert')}; VGG16 up to {feature_layer}")


def label(candidate: Candidate) -> str:
    return f"{candidate[0]} on {candidate[1]}"


def measure(runners: dict[Candidate, Callable], image_size: int, rounds: int = ROUNDS,
            images: int = IMAGES) -> dict[Candidate, float]:
    """Median wall milliseconds an image of each runner (a batch of images -> outputs) over `rounds`
    interleaved rounds of one call on `images` random images, after two warm-up calls each."""
    batch = np.random.default_rng(0).uniform(0, 255, (images, image_size, image_size, 3)).astype(np.float32)
    for run in runners.values():
        run(batch)
        run(batch)
    timings: dict[Candidate, list[float]] = {candidate: [] for candidate in runners}
    for _ in range(rounds):
        for candidate, run in runners.items():
            started = time.perf_counter()
            run(batch)
            timings[candidate].append((time.perf_counter() - started) * 1000 / images)
    return {candidate: statistics.median(values) for candidate, values in timings.items()}


def choose(ms_per_image: dict[Candidate, float]) -> Candidate:
    """The fastest candidate, unless Keras float32 is among them and within MARGIN of it."""
    best = min(ms_per_image, key=ms_per_image.__getitem__)
    if REFERENCE in ms_per_image and ms_per_image[best] > (1 - MARGIN) * ms_per_image[REFERENCE]:
        return REFERENCE
    return best


def _read(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, dict):
            raise ValueError("not an object")
        return entries
    except (OSError, ValueError) as error:
        print(f"note: {path}: unreadable ({type(error).__name__}); measuring again and rewriting it", file=sys.stderr)
        return {}


def _cached(entry: object, candidates: list[Candidate]) -> Candidate | None:
    """The choice an entry holds, if it is well formed and one of the candidates."""
    if isinstance(entry, dict) and isinstance(entry.get("chosen"), list):
        chosen = tuple(entry["chosen"])
        if chosen in candidates:
            return chosen
    return None


def runners_here(candidates: list[Candidate], feature_layer: str, threads: int) -> dict[Candidate, Callable]:
    """Each candidate's runner of the base (random weights: the work does not depend on them), built
    in this process."""
    from stages.modelkit.engines import batch_runner
    from stages.models import transfer

    shape = (MEASURE_SIZE, MEASURE_SIZE, 3)
    return {(precision, engine): batch_runner(transfer.feature_extractor(shape, "none", feature_layer, precision),
                                              engine, threads)
            for precision, engine in candidates}


def measure_here(candidates: list[Candidate], feature_layer: str, threads: int) -> dict[Candidate, float]:
    """measure() on the candidates' runners, in this process."""
    return measure(runners_here(candidates, feature_layer, threads), MEASURE_SIZE)


def measure_in_child() -> None:
    """What the fresh Python of measure_elsewhere runs: argv[1] is the job as JSON, the timings go to stdout."""
    from stages.common import cli

    cli.quiet_tensorflow()
    job = json.loads(sys.argv[1])
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(job["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(job["threads"])
    candidates = [tuple(candidate) for candidate in job["candidates"]]
    timings = measure_here(candidates, job["feature_layer"], job["threads"])
    print(json.dumps([[list(candidate), ms] for candidate, ms in timings.items()]))


def measure_elsewhere(candidates: list[Candidate], feature_layer: str, threads: int) -> dict[Candidate, float]:
    """measure() on the candidates in a fresh Python: the caller's random state, dtype policy, threads and
    memory stay as they were (a train stage must draw the same weights whether or not it measured)."""
    job = json.dumps({"candidates": [list(c) for c in candidates], "feature_layer": feature_layer, "threads": threads})
    done = subprocess.run([sys.executable, "-c", "from stages.modelkit.engine_choice import measure_in_child; "
                           "measure_in_child()", job], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError("train.transfer precision/engine auto: timing the frozen base failed "
                        f"({last}); set train.transfer.precision and .engine explicitly (docs/models.md#precision)")
    return {tuple(candidate): ms for candidate, ms in json.loads(done.stdout.strip().splitlines()[-1])}


_CHOSEN: dict[str, tuple[Candidate, str]] = {}     # this process's choices and how each was made, by key


def fastest(candidates: list[Candidate], feature_layer: str, threads: int,
            timer: Callable[[list[Candidate], str, int], dict[Candidate, float]] | None = None) -> Candidate:
    """The fastest of `candidates` for the base cut at `feature_layer` on `threads` cores here: from the
    cache, else timed (timer, default measure_elsewhere) and cached, with a note on stderr. One process
    measures at a time (a lock beside the cache: parallel experiments measure once). A single
    candidate is returned as it is."""
    return _decided(candidates, feature_layer, threads, timer)[0]


def _decided(candidates: list[Candidate], feature_layer: str, threads: int,
             timer: Callable[[list[Candidate], str, int], dict[Candidate, float]] | None = None
             ) -> tuple[Candidate, str | None]:
    """fastest's choice and how it was made, in words (None for a single candidate: nothing to time)."""
    if len(candidates) == 1:
        return candidates[0], None
    key = f"{machine_key(feature_layer, threads)}; candidates {', '.join(map(label, candidates))}"
    if key not in _CHOSEN:
        _CHOSEN[key] = _cached_or_measured(key, candidates, feature_layer, threads, timer or measure_elsewhere)
    return _CHOSEN[key]


def _cached_or_measured(key: str, candidates: list[Candidate], feature_layer: str, threads: int,
                        timer) -> tuple[Candidate, str]:
    path = cache_path()
    among = ", ".join(map(label, candidates))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")
    except OSError as error:
        print(f"note: {path.parent}: not writable ({error.strerror or error}), so this machine's choice is not kept; "
              f"set {CACHE_VARIABLE} to a writable folder", file=sys.stderr)
        return (choose(timer(candidates, feature_layer, threads)),
                f"timed here now ({among}), not kept: {path.parent} is not writable (set {CACHE_VARIABLE})")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read(path)
        chosen = _cached(entries.get(key), candidates)
        if chosen is not None:
            measured = entries[key].get("measured")
            when = f" on {measured}" if isinstance(measured, str) else ""
            return chosen, f"cached, timed on this machine{when} ({among}), in {path}; delete it to time again"
        print("auto: timing the frozen base on this machine, once: " + among, file=sys.stderr, flush=True)
        timings = timer(candidates, feature_layer, threads)
        chosen = choose(timings)
        print("auto: " + ", ".join(f"{label(c)} {ms:.1f}" for c, ms in timings.items())
              + f" ms an image: {label(chosen)} (kept in {path}; delete it to measure again)", file=sys.stderr)
        entries[key] = {"chosen": list(chosen), "ms_per_image": {label(c): round(ms, 2) for c, ms in timings.items()},
                        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        write_json_atomic(path, entries)
        return chosen, f"timed here now ({among}), kept in {path}; delete it to time again"
