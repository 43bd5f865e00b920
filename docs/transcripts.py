"""What the commands the docs show print, recorded from a real run: docs/transcripts.json.

    python -m docs.transcripts                   # a clone of HEAD, dvc repro there (as long as make run), an experiment
    python -m docs.transcripts --cache .dvc/cache  # shares this clone's DVC cache: fast if it has the commit's outputs

In a temporary clone of the last commit it runs the pipeline on the offline sample (`dvc repro`, what
`make run` runs), commits that run there when this CPU's numbers differ from the committed ones (so
that the diff below shows the experiment, not the CPU), then the README's first experiment and the
commands that show its results, each as a terminal 120 columns wide prints it, colour aside. The docs
render each one with `<!--block transcript NAME-->`. A generator like `make bench`: never run by the
tests; run it again when what the commands print changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Sequence

from benchmarks.machine import machine

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS_JSON = Path(__file__).resolve().parent / "transcripts.json"
WIDTH = 120
GIT = ["git", "-c", "user.name=transcripts", "-c", "user.email=transcripts@localhost"]

EXPERIMENT = "dvc exp run -S train.baseline.epochs=20"
# dvc exp show narrowed to 120 columns: the experiment, its date, the param it changed and the baseline's
# test ROC AUC. A metric's header carries its file's path (36 characters): one more column would not fit,
# and make compare has every model's. Each --drop/--keep is a regex matched at a column name's start. No
# pager: DVC pages only a terminal.
EXP_SHOW = ("dvc exp show --drop '.*' "
            "--keep 'Experiment|Created|train.baseline.epochs|metrics/baseline/.*:test.auc'")

# (name, command, what ran before it in the same clone): the order they run in.
TRANSCRIPTS = [
    ("metrics-show", "dvc metrics show", "dvc repro"),
    ("exp-run", EXPERIMENT, "dvc repro"),
    ("metrics-diff", "dvc metrics diff", EXPERIMENT),
    ("compare", "make compare", EXPERIMENT),
    ("exp-show", EXP_SHOW, EXPERIMENT),
]


def environment() -> dict[str, str]:
    """This environment's commands first on PATH (as make does), a 120-column terminal, no colour."""
    env = {**os.environ, "COLUMNS": str(WIDTH), "NO_COLOR": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def shell(command: str | list[str], cwd: Path) -> str:
    """Run a command; its stdout and stderr as one text, as a terminal shows them. Stops on a failure."""
    args = shlex.split(command) if isinstance(command, str) else command
    if args[:2] == ["make", "compare"]:
        args = ["make", "-o", "env", *args[1:]]     # the clone has no .venv of its own: this one's is on PATH
    result = subprocess.run(args, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} failed in {cwd}:\n{result.stdout[-4000:]}")
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()).strip("\n")


def record(clone: Path, cache: Path | None = None) -> dict:
    """Clone HEAD into `clone`, run the pipeline and the experiment there; the transcripts."""
    shell(["git", "clone", "-q", str(ROOT), str(clone)], ROOT)
    commit = shell("git rev-parse --short HEAD", clone)
    if cache:
        shell(["dvc", "cache", "dir", "--local", str(cache.resolve())], clone)
    shell("dvc repro", clone)
    committed_rerun = bool(shell("git status --porcelain", clone))
    if committed_rerun:
        shell(["git", "add", "-A"], clone)
        shell([*GIT, "commit", "-qm", "dvc repro on this machine"], clone)
    found = []
    for name, command, after in TRANSCRIPTS:
        found.append({"name": name, "command": command, "after": after, "output": shell(command, clone)})
    return {
        "recorded": date.today().isoformat(),
        "machine": machine(),
        "commit": commit,
        "note": ("in a clone of the commit: dvc repro on the offline sample, then each command in this order"
                 + ("; this CPU's run was committed in the clone first (its numbers differ from the "
                    "committed ones), so the diff shows only the experiment" if committed_rerun else "")),
        "transcripts": found,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m docs.transcripts", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="a DVC cache for the clone to share (fast when it holds the commit's outputs)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="clone into this new folder, and keep it")
    args = parser.parse_args(argv)
    if args.keep:
        data = record(args.keep, args.cache)
    else:
        with tempfile.TemporaryDirectory(prefix="facegender-transcripts-", ignore_cleanup_errors=True) as folder:
            data = record(Path(folder) / "facegender", args.cache)
    temporary = TRANSCRIPTS_JSON.with_name(f".{TRANSCRIPTS_JSON.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    temporary.replace(TRANSCRIPTS_JSON)
    print(f"wrote {TRANSCRIPTS_JSON.relative_to(ROOT)}: " + ", ".join(item["name"] for item in data["transcripts"]))


if __name__ == "__main__":
    main()
