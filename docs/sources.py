"""The results files the docs quote, read once each by alias, and the words for the machines and
timings they record (docs/render.py renders the markers that name them)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]


class RenderError(Exception):
    """A marker that cannot be rendered: unknown source, key, block or format."""


class Measured(dict):
    """One benchmarks/measured.yaml entry as a figure sees it: its values, with the entry beside them."""

    def __init__(self, entry: dict):
        super().__init__(entry.get("values") or {})
        self.entry = entry


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _latest_run(root: Path, scale: float) -> dict:
    runs = [run for run in _load_json(root / "benchmarks/results.json")["runs"] if run["scale"] == scale]
    if not runs:
        raise RenderError(f"benchmarks/results.json has no run at scale {scale:g} (make bench SCALE={scale:g})")
    return max(runs, key=lambda run: run["date"])


def _native_beside_capped(root: Path) -> dict:
    runs = [run for run in _load_json(root / "benchmarks/results.json")["runs"] if run["scale"] == 0.1]
    capped = max((run for run in runs if run["machine"].get("onednn_max_cpu_isa")), key=lambda run: run["date"])

    def cpu_of(run: dict) -> tuple:
        return run["machine"]["cpu"], tuple(run["machine"].get("flags") or ())

    return max((run for run in runs if not run["machine"].get("onednn_max_cpu_isa") and cpu_of(run) == cpu_of(capped)),
               key=lambda run: run["date"])


def _per_model(folder: Path) -> dict:
    """Each model's run with params.yaml's first seed: <folder>/<model>/<seed>.json, by model."""
    seed = yaml.safe_load((folder.parent.parent / "params.yaml").read_text())["seeds"][0]
    return {path.parent.name: _load_json(path) for path in sorted(folder.glob(f"*/{seed}.json"))}


def _measured(root: Path) -> dict:
    entries = yaml.safe_load((root / "benchmarks/measured.yaml").read_text())["measurements"]
    return {entry["id"]: Measured(entry) for entry in entries}


def _limits(root: Path) -> dict:
    from benchmarks.bench import LIMITS   # the limits make bench judges a run by

    return dict(LIMITS)


# alias -> (the file it reads, for messages; its loader)
SOURCES: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "bench1": ("benchmarks/results.json (the latest scale-1 run)", lambda root: _latest_run(root, 1.0)),
    # The scale-1 run the speed-ups of 2026-11-29 were judged by (docs/benchmark.md "What each change bought").
    "bench1epyc": ("benchmarks/results.json (the scale-1 run of 2026-11-29 19:46, AMD EPYC)",
                   lambda root: next(run for run in _load_json(root / "benchmarks/results.json")["runs"]
                                     if run["scale"] == 1.0 and run["date"].startswith("2026-11-29 19:46"))),
    "bench025": ("benchmarks/results.json (the latest scale-0.25 run)", lambda root: _latest_run(root, 0.25)),
    "bench01cap": ("benchmarks/results.json (the latest scale-0.1 run with oneDNN capped)",
                   lambda root: max((run for run in _load_json(root / "benchmarks/results.json")["runs"]
                                     if run["scale"] == 0.1 and run["machine"].get("onednn_max_cpu_isa")),
                                    key=lambda run: run["date"])),
    "bench1amx": ("benchmarks/results.json (the latest scale-1 run on a CPU with amx_bf16, no oneDNN cap)",
                  lambda root: max((run for run in _load_json(root / "benchmarks/results.json")["runs"]
                                    if run["scale"] == 1.0 and "amx_bf16" in (run["machine"].get("flags") or ())
                                    and not run["machine"].get("onednn_max_cpu_isa")), key=lambda run: run["date"])),
    "bench01native": ("benchmarks/results.json (the latest scale-0.1 run without the oneDNN cap, on the CPU of "
                      "bench01cap: the pair the prose compares)", _native_beside_capped),
    "bench01": ("benchmarks/results.json (every scale-0.1 run, one per kind of CPU)",
                lambda root: [run for run in _load_json(root / "benchmarks/results.json")["runs"] if run["scale"] == 0.1]),
    "limits": ("benchmarks/bench.py LIMITS", _limits),
    "measured": ("benchmarks/measured.yaml", _measured),
    "timings": ("benchmarks/timings.json", lambda root: _load_json(root / "benchmarks/timings.json")),
    "evaluate": ("metrics/evaluate/<model>/<seed>.json", lambda root: _per_model(root / "metrics/evaluate")),
    "train": ("metrics/train/<model>/<seed>.json", lambda root: _per_model(root / "metrics/train")),
    "comparison": ("metrics/comparison.json", lambda root: _load_json(root / "metrics/comparison.json")),
    "prepare": ("metrics/prepare.json", lambda root: _load_json(root / "metrics/prepare.json")),
    "params": ("params.yaml", lambda root: yaml.safe_load((root / "params.yaml").read_text())),
    "engines": ("benchmarks/engines.json (python -m benchmarks.engines)",
                lambda root: _load_json(root / "benchmarks/engines.json")),
    "exports": ("metrics/export/<model>.json", lambda root: {path.stem: _load_json(path) for path in
                                                            sorted((root / "metrics/export").glob("*.json"))}),
    "seeds": ("benchmarks/seeds.json (python -m benchmarks.seeds)",
              lambda root: _load_json(root / "benchmarks/seeds.json")),
}


class Sources:
    """The results files, each read once, by alias."""

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
            except (OSError, ValueError, KeyError) as error:
                raise RenderError(f"{alias}: cannot read {described}: {error}") from None
        return self._loaded[alias]


# ---------------------------------------------------------------- machines and timings

def machine(record: Any) -> dict | None:
    """The machine record of a results run, a measured entry, a timing, or a machine itself."""
    if isinstance(record, Measured):
        return record.entry.get("machine")
    if isinstance(record, dict) and "cpu" in record:
        return record
    if isinstance(record, dict):
        return record.get("machine")
    return None


def cpu(record: Any) -> str:
    """'AMD EPYC (AVX-512 with native bfloat16: avx512_bf16), 2 cores': model, flags, cores."""
    found = machine(record)
    if not found:
        return "a machine nobody recorded"
    flags = found.get("flags")
    if flags is None:
        kind = "flags not recorded"
    elif "amx_bf16" in flags:
        kind = "AVX-512 with native bfloat16 and AMX: " + ", ".join(flags)
    elif "avx512_bf16" in flags:
        kind = "AVX-512 with native bfloat16, no AMX: " + ", ".join(flags)
    elif any(flag.startswith("avx512") for flag in flags):
        kind = "AVX-512, no native bfloat16: " + ", ".join(flags)
    elif "avx2" in flags:
        kind = "AVX2 only: " + ", ".join(flags)
    else:
        kind = ", ".join(flags) or "no vector flags recorded"
    isa = found.get("onednn_max_cpu_isa")
    limit = f", oneDNN limited to {isa} (ONEDNN_MAX_CPU_ISA)" if isa else ""
    return f"{found['cpu']} ({kind}{limit}), {found['cores']} cores"


def with_article(text: str) -> str:
    return ("an " if text[:1].upper() in "AEIOU" else "a ") + text


def minutes(run: dict) -> str:
    minutes = run["wall_s"] / 60
    if run.get("approximate"):
        return f"about {minutes:.0f} minutes"
    return f"{minutes:.1f} minutes" if minutes < 10 else f"{minutes:.0f} minutes"


def took(sources: Sources, command: str) -> str:
    """How long `command` took, the latest timing per machine, newest first, each naming its CPU."""
    latest: dict[str, dict] = {}
    for run in sorted(sources["timings"]["runs"], key=lambda run: run["date"]):
        if run["command"] == command:
            latest[cpu(run)] = run
    if not latest:
        return "not measured yet"
    parts = []
    for run in sorted(latest.values(), key=lambda run: run["date"], reverse=True):
        extra = {True: ", install included", False: ", environment already installed"}.get(run.get("includes_install"), "")
        result = f", {run['result']}" if run.get("result") else ""
        parts.append(f"{minutes(run)} on {with_article(cpu(run))}{extra}{result}")
    return "; ".join(parts)


def disk(sources: Sources) -> str:
    """The disk figures of benchmarks/timings.json, each naming what it covers and its machine."""
    entries = sources["timings"].get("disk") or []
    if not entries:
        return "not measured yet"
    return "; ".join(f"{entry['bytes'] / 1e9:.1f} GB for {entry['what']}, measured {entry['date']} on {with_article(cpu(entry))}"
                     for entry in entries)


def date(record: Any) -> str:
    """The date of a results run or a measured entry."""
    if isinstance(record, Measured):
        return str(record.entry.get("date") or "date not recorded")
    return str(record["date"])


_RECORD_NAMES = ("stage", "id", "command")


def step(container: Any, key: Any) -> Any:
    """container[key]; a list of records by its records' name."""
    if isinstance(container, list) and isinstance(key, str):
        for item in container:
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
