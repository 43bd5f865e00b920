"""The results files the docs quote, read once each by alias, either as the workspace has them
(`make docs`, after a run of yours you mean to commit) or as the last commit has them (the check:
a run on another CPU changes metrics/ a little, and the docs still quote the committed run)."""

from __future__ import annotations

import atexit
import json
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Everything a source reads, relative to the repository: what committed() takes from the last commit.
RESULTS = ("params.yaml", "metrics", "benchmarks/results.json", "benchmarks/timings.json", "benchmarks/measured.yaml",
           "benchmarks/engines.json", "benchmarks/seeds.json", "benchmarks/near_duplicates.json", "docs/transcripts.json")


class RenderError(Exception):
    """A marker that cannot be rendered: unknown source, key, block or format."""


@lru_cache(maxsize=None)
def committed(root: Path = ROOT) -> Path:
    """A temporary folder with the results files as the last commit has them (`git archive HEAD`);
    root itself outside a git repository, where the workspace is all there is."""
    try:
        listed = subprocess.run(["git", "ls-tree", "--name-only", "HEAD", "--", *RESULTS], cwd=root,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return root
    if listed.returncode != 0:
        return root
    folder = Path(tempfile.mkdtemp(prefix="facegender-committed-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = subprocess.run(["git", "archive", "HEAD", "--", *listed.stdout.split()], cwd=root,
                             capture_output=True, timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True, timeout=60)
    return folder


class Measured(dict):
    """One benchmarks/measured.yaml entry as a figure sees it: its values, with the entry beside them."""

    def __init__(self, entry: dict):
        super().__init__(entry.get("values") or {})
        self.entry = entry


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _runs(root: Path, scale: float, capped: bool | None = None, flag: str | None = None) -> list[dict]:
    """The benchmark runs at a scale, with or without oneDNN capped, on a CPU with `flag`; oldest first."""
    runs = [run for run in _json(root / "benchmarks/results.json")["runs"] if run["scale"] == scale
            and (capped is None or bool(run["machine"].get("onednn_max_cpu_isa")) == capped)
            and (flag is None or flag in (run["machine"].get("flags") or ()))]
    if not runs:
        raise RenderError(f"benchmarks/results.json has no such run at scale {scale:g} (make bench SCALE={scale:g})")
    return sorted(runs, key=lambda run: run["date"])


def _native_beside_capped(root: Path) -> dict:
    """The latest uncapped scale-0.1 run on the CPU of the latest capped one: the pair the prose compares."""
    capped = _runs(root, 0.1, capped=True)[-1]["machine"]
    return [run for run in _runs(root, 0.1, capped=False)
            if (run["machine"]["cpu"], run["machine"].get("flags")) == (capped["cpu"], capped.get("flags"))][-1]


def _per_model(folder: Path) -> dict:
    """Each model's run with params.yaml's first seed: <folder>/<model>/<seed>.json, by model."""
    seed = yaml.safe_load((folder.parent.parent / "params.yaml").read_text())["seeds"][0]
    return {path.parent.name: _json(path) for path in sorted(folder.glob(f"*/{seed}.json"))}


# alias -> (what it reads, for messages; its loader, given the folder the files are in)
SOURCES: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "bench1": ("the latest scale-1 run in benchmarks/results.json", lambda root: _runs(root, 1.0)[-1]),
    "bench1amx": ("the latest scale-1 run on a CPU with AMX", lambda root: _runs(root, 1.0, False, "amx_bf16")[-1]),
    "bench025": ("the latest scale-0.25 run", lambda root: _runs(root, 0.25)[-1]),
    "bench01cap": ("the latest scale-0.1 run with oneDNN capped", lambda root: _runs(root, 0.1, capped=True)[-1]),
    "bench01native": ("the latest uncapped scale-0.1 run on bench01cap's CPU", _native_beside_capped),
    "measured": ("benchmarks/measured.yaml", lambda root: {entry["id"]: Measured(entry) for entry in yaml.safe_load(
        (root / "benchmarks/measured.yaml").read_text())["measurements"]}),
    "timings": ("benchmarks/timings.json", lambda root: _json(root / "benchmarks/timings.json")),
    "engines": ("benchmarks/engines.json", lambda root: _json(root / "benchmarks/engines.json")),
    "seeds": ("benchmarks/seeds.json", lambda root: _json(root / "benchmarks/seeds.json")),
    "duplicates": ("benchmarks/near_duplicates.json", lambda root: _json(root / "benchmarks/near_duplicates.json")),
    "transcripts": ("docs/transcripts.json (python -m docs.transcripts)",
                    lambda root: _json(root / "docs/transcripts.json")),
    "params": ("params.yaml", lambda root: yaml.safe_load((root / "params.yaml").read_text())),
    "evaluate": ("metrics/evaluate/<model>/<seed>.json", lambda root: _per_model(root / "metrics/evaluate")),
    "train": ("metrics/train/<model>/<seed>.json", lambda root: _per_model(root / "metrics/train")),
    "comparison": ("metrics/comparison.json", lambda root: _json(root / "metrics/comparison.json")),
    "prepare": ("metrics/prepare.json", lambda root: _json(root / "metrics/prepare.json")),
    "exports": ("metrics/export/<model>.json", lambda root: {path.stem: _json(path) for path in
                                                            sorted((root / "metrics/export").glob("*.json"))}),
}


class Sources:
    """The results files under root, each read once, by alias."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, alias: str) -> Any:
        if alias not in SOURCES:
            raise RenderError(f"unknown source {alias!r}; sources: {', '.join(SOURCES)}")
        if alias not in self._loaded:
            described, load = SOURCES[alias]
            try:
                self._loaded[alias] = load(self.root)
            except (OSError, ValueError, KeyError, IndexError) as error:
                raise RenderError(f"{alias}: cannot read {described}: {error}") from None
        return self._loaded[alias]


# ---------------------------------------------------------------- machines

def machine(record: Any) -> dict | None:
    """The machine record of a results run, a measured entry, a timing, or a machine itself."""
    if isinstance(record, Measured):
        return record.entry.get("machine")
    if isinstance(record, dict):
        return record if "cpu" in record else record.get("machine")
    return None


# The flags a CPU kind is told by, strongest first, and the short words for each (README's legend).
KINDS = [("amx_bf16", "AVX-512 BF16 and AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
         ("avx2", "AVX2")]


def cpu(record: Any) -> str:
    """A machine by a short name: 'AMD EPYC, AVX-512 BF16, 2 cores' (its flags are in FLAGS_NOTE)."""
    found = machine(record)
    if not found:
        return "a machine nobody recorded"
    model = re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b", "", found["cpu"])
    flags = found.get("flags") or ()
    kind = next((words for flag, words in KINDS if flag in flags), "flags not recorded")
    isa = found.get("onednn_max_cpu_isa")
    cap = f", oneDNN capped at {isa}" if isa else ""
    cores = f", {found['cores']} cores" if found.get("cores") else ""
    return f"{' '.join(model.split())}, {kind}{cap}{cores}"


FLAGS_NOTE = ["CPUs by their flags in /proc/cpuinfo: AVX-512 BF16 has avx512_bf16, AMX adds amx_bf16, AVX2 has",
              "avx2 and no avx512f; \"oneDNN capped\" is `ONEDNN_MAX_CPU_ISA=AVX2`, an older CPU emulated."]


# ---------------------------------------------------------------- values

_RECORD_NAMES = ("stage", "id", "command", "name")


def step(container: Any, key: Any) -> Any:
    """container[key]; a list of records by its records' name (the last, newest, where several share it)."""
    if isinstance(container, list) and isinstance(key, str):
        for item in reversed(container):
            if isinstance(item, dict) and any(item.get(name) == key for name in _RECORD_NAMES):
                return item
        raise RenderError(f"no record named {key!r}")
    try:
        return container[key]
    except (KeyError, IndexError, TypeError):
        keys = ", ".join(map(str, container)) if isinstance(container, dict) else type(container).__name__
        raise RenderError(f"no {key!r} here (has: {keys})") from None


def formatted(value: Any, spec: str) -> str:
    """value in a format spec; exponents as people write them (7e-7, not 7e-07)."""
    if isinstance(value, str):
        if spec:
            raise RenderError(f"a format ({spec}) for the text {value!r}")
        return value
    if spec == "needs a format" and isinstance(value, float):
        raise RenderError(f"{value!r} is computed: give it a format (.1f, .3f, ...)")
    text = format(value, "" if spec == "needs a format" else spec)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], text)
