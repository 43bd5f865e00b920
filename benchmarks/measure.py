"""Run one command and record its wall time, CPU time and peak memory as a JSON line.

    python -m benchmarks.measure [--label NAME] [--log FILE] -- COMMAND...

The label defaults to $DVC_STAGE (the bench rewrites every stage's cmd to run through this), the log
to $FACEGENDER_BENCH_LOG. CPU time counts the command and every process it waited for (prepare's
workers); peak memory is sampled for the whole process tree (the sum of resident sets, every 0.1 s)
and also taken from the kernel for the largest single process. Exit status is the command's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import psutil

SAMPLE_SECONDS = 0.1


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for any that ended meanwhile)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(command: Sequence[str]) -> tuple[int, dict]:
    """Run command; return (exit status, measurements)."""
    started_at, started = time.time(), time.perf_counter()
    child = subprocess.Popen(list(command))
    watched = psutil.Process(child.pid)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(watched))
            except psutil.Error:
                pass
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, {
        "started": round(started_at, 3),
        "ended": round(started_at + wall, 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_tree_mb": round(peak[0] / 2**20, 1),
        "peak_rss_process_mb": round(usage.ru_maxrss / 1024, 1),   # Linux reports kilobytes
        "exit": child.returncode,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default=os.environ.get("DVC_STAGE", ""))
    parser.add_argument("--log", default=os.environ.get("FACEGENDER_BENCH_LOG"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    status, result = measure(command)
    if args.log:
        with open(Path(args.log), "a") as log:
            log.write(json.dumps({"label": args.label, **result}) + "\n")
    sys.exit(status)


if __name__ == "__main__":
    main()
