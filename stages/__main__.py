"""facegender: run the pipeline, compare its experiments, predict with its models, plan the real run.

    facegender run                  the whole pipeline (dvc repro), then its verdict: what `make run` does
    facegender compare              every experiment side by side (dvc exp show): `make compare`
    facegender predict MODEL PATHS  P(class) for your own images
    facegender serve                a page to try every trained model on your photos: `make serve`
    facegender plan [--run]         the real run's plan (downloads, disk, time); --run starts it
    facegender verdict              the last run's outcome in one small table
    facegender plots-page           the offline page `dvc plots show` fills

`pip install .` (or `-e .`, or `make env`) puts it on the PATH; `python -m stages` is the same. Each
subcommand is the module's own command line (`facegender predict --help` is `python -m
stages.predict --help`, under its own name). The pipeline's stages stay `python -m stages.<name>`,
run by DVC from dvc.yaml. Run it in the project's folder, where dvc.yaml and params.yaml are.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from stages.common import cli
from stages.common.errors import UserError

PROGRAM = "facegender"
# subcommand -> (module in stages/, one line for the overview). `run` is this module's own.
SUBCOMMANDS = {
    "run": (None, "the whole pipeline, dvc repro, then its verdict (what `make run` does)"),
    "compare": ("experiments", "every experiment side by side: what it changed, each model's AUC (`make compare`)"),
    "predict": ("predict", "a trained model's P(class) for your own images or folders"),
    "serve": ("serve", "a page to try every trained model on your own photos, in the browser (`make serve`)"),
    "plan": ("plan", "the real run's plan: downloads, disk, time per stage here; --run starts it"),
    "verdict": ("verdict", "the last run's outcome: AUC, accuracy, balanced accuracy, p-value against the reference"),
    "plots-page": ("plots_template", "write the offline page `dvc plots show` fills (no network needed)"),
}


def version() -> str:
    try:
        return metadata.version(PROGRAM)
    except metadata.PackageNotFoundError:    # run from a checkout that was never installed
        return "not installed"


def overview() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "subcommands:\n" + "\n".join(lines) + f"\n\n`{PROGRAM} <subcommand> --help` tells more."


def use_this_environment() -> None:
    """Put this Python's bin folder first on PATH: `dvc`, and the `python` of dvc.yaml's stage commands,
    are then this environment's even when it is not activated (a venv's facegender called by its path)."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def run_pipeline(argv: Sequence[str]) -> None:
    """dvc repro (options passed on), then the verdict: `make run` after the install."""
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} run", description="Run the whole pipeline (dvc repro), then print its verdict.",
        epilog="Every other option and target goes to dvc repro: `facegender run --glob 'train@baseline-*'` "
               "brings only the baseline's training runs (one per seed) up to date; with `--force --single-item` "
               "it retrains them even when nothing changed.")
    _, options = parser.parse_known_args(argv)
    if not Path("dvc.yaml").is_file():
        raise UserError(f"no dvc.yaml in {Path.cwd()}: run `{PROGRAM} run` in the project's folder")
    done = subprocess.call([sys.executable, "-m", "dvc", "repro", *options])
    if done != 0:
        sys.exit(done)
    importlib.import_module("stages.verdict").main([])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.splitlines()[0].split(": ", 1)[1].capitalize() + " (one subcommand "
                                  "for each thing people run by hand; DVC runs the stages)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=overview())
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("subcommand", choices=SUBCOMMANDS, metavar="subcommand",
                        help="one of: " + ", ".join(SUBCOMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_this_environment()
    module_name = SUBCOMMANDS[args.subcommand][0]
    if module_name is None:
        run_pipeline(args.arguments)
        return
    # argparse names a program after sys.argv[0]: each subcommand's --help says `facegender <subcommand>`.
    sys.argv[0] = f"{PROGRAM} {args.subcommand}"
    importlib.import_module(f"stages.{module_name}").main(args.arguments)


def entry() -> None:
    """The console script pyproject.toml installs as `facegender`."""
    cli.run(main, stage=False)


if __name__ == "__main__":
    cli.run(main, stage=False)
