"""How long a user-facing command takes here: run it, time it, add the run to benchmarks/timings.json
with this machine's CPU (model and flags), for the docs to quote (make docs).

    python -m benchmarks.timings -- make test              # in a fresh clone: the install counts too
    python -m benchmarks.timings --installed -- make run   # the environment was already there
    python -m benchmarks.timings --disk .venv data .dvc/cache --what "the environment and the sample's outputs"

The command's own output goes to the terminal as usual; a command that fails is not recorded (its
exit status is passed on). Measure on a quiet machine: the time is the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Sequence

from benchmarks.machine import machine

TIMINGS_JSON = Path(__file__).resolve().parent / "timings.json"


def add_entry(kind: str, entry: dict, path: Path | None = None) -> None:
    """Append one run (kind "runs") or disk figure (kind "disk") to timings.json, written whole."""
    path = path or TIMINGS_JSON
    data = json.loads(path.read_text()) if path.is_file() else {"runs": [], "disk": []}
    data.setdefault(kind, []).append(entry)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(path)


def test_result(output: str) -> str | None:
    """pytest's closing summary ("531 passed, 2 deselected"), if the output has one."""
    found = re.findall(r"=+ ((?:\d+ \w+(?:, )?)+) in [\d.]+s", output)
    return found[-1] if found else None


# What timing runs themselves change: the timings, the docs rendered from them, and the outputs of
# the commands timed (make run). Changes elsewhere mean the code measured is not the commit's.
OWN_CHANGES = ("benchmarks/timings.json", "README.md", "docs/", "dvc.lock", "metrics/", "plots/")


def commit() -> str:
    """The commit measured, and whether its code had changes (OWN_CHANGES aside)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.splitlines()
    changed = [line[3:] for line in status if not line[3:].startswith(OWN_CHANGES)]
    return f"commit {head or 'unknown'}" + (" with uncommitted changes" if changed else "")


def measured_on() -> dict:
    """This machine as a timing records it; with ONEDNN_MAX_CPU_ISA set (an older CPU emulated), that limit too."""
    found = machine()
    record = {key: found[key] for key in ("cpu", "flags", "cores")}
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        record["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return record


def time_command(command: Sequence[str], installed: bool) -> tuple[int, dict]:
    """Run `command`, its output shown as it comes; its exit status and timing entry."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    process.wait()
    wall = time.monotonic() - started
    output = "".join(lines[-200:])
    return process.returncode, {
        "command": " ".join(command), "wall_s": round(wall, 1), "approximate": False, "includes_install": not installed,
        "date": date.today().isoformat(), "machine": measured_on(),
        "result": test_result(output), "note": "measured by python -m benchmarks.timings", "source": commit()}


def disk_entry(paths: Sequence[str], what: str) -> dict:
    """The bytes under `paths` (hard links counted once), as a disk entry."""
    seen, total = set(), 0
    for root in paths:
        for current, _, files in os.walk(root):
            for name in files:
                status = os.lstat(os.path.join(current, name))
                if (status.st_dev, status.st_ino) not in seen:
                    seen.add((status.st_dev, status.st_ino))
                    total += status.st_size
    found = machine()
    return {"what": what, "bytes": total, "paths": list(paths), "date": date.today().isoformat(),
            "machine": {key: found[key] for key in ("cpu", "flags", "cores")}, "source": commit()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installed", action="store_true", help="the environment (.venv) was already installed")
    parser.add_argument("--disk", nargs="+", metavar="PATH", help="record the disk these paths take instead")
    parser.add_argument("--what", default="", help="with --disk: what the paths are, in words")
    parser.add_argument("command", nargs="*", help="the command to time, after --")
    args = parser.parse_args(argv)
    if args.disk:
        entry = disk_entry(args.disk, args.what or ", ".join(args.disk))
        add_entry("disk", entry)
        print(f"timings: {entry['bytes'] / 1e9:.2f} GB for {entry['what']}")
        return 0
    if not args.command:
        parser.error("give a command to time, after --")
    status, entry = time_command(args.command, args.installed)
    if status != 0:
        print(f"timings: {entry['command']} failed (exit {status}): not recorded")
        return status
    add_entry("runs", entry)
    print(f"timings: {entry['command']}: {entry['wall_s']:.0f} s on {entry['machine']['cpu']} "
          f"({', '.join(entry['machine']['flags'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
