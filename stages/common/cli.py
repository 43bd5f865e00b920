"""The thin command-line shell every stage shares: one-line errors, no tracebacks for user mistakes."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from stages.common.atomic_files import sweep_stale
from stages.common.errors import UserError

# What a full or read-only disk, or missing permissions, raise: the user's to fix, shown as one line.
DISK_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None,
        stage: bool = True) -> None:
    """Call a stage's main() and turn UserError, disk trouble and Ctrl-C into a one-line message and an
    exit code (a closed pipe into a quiet exit 0). A stage (run from the project's root) first removes what killed runs left behind."""
    name_the_program()
    try:
        if stage and Path("dvc.yaml").is_file():
            sweep_stale([Path(".")])
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        # The reader of our output left (`... | head`): nothing more to say, and no traceback for it.
        # Standard output is pointed at /dev/null so that Python's own flush at exit stays quiet.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):     # standard output is no file (a test's capture, say)
            pass
        sys.exit(0)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror}; free space or fix the permissions, then rerun "
              "(earlier outputs are unchanged)", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted_outputs()}", file=sys.stderr)
        sys.exit(130)


def name_the_program() -> None:
    """Make argparse's usage line say how the command was called: `python -m stages.predict`, not
    `predict.py` (argparse names the program after sys.argv[0]; `facegender <subcommand>` sets its own)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("stages."):
        sys.argv[0] = f"python -m {spec.name.removesuffix('.__main__')}"


def interrupted_outputs() -> str:
    """What became of the stage's outputs: under `dvc repro` DVC removed them before the run (the
    next repro restores or rebuilds them); run by hand, the stage had not replaced them yet."""
    if os.environ.get("DVC_STAGE"):
        return (f"DVC had removed {os.environ['DVC_STAGE']}'s outputs before running it (persistent ones "
                "aside); the next `dvc repro` restores them from its cache or runs the stage again")
    return "earlier outputs are left as they were"


def quiet_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up chatter. TF_CPP_MIN_LOG_LEVEL silences its logging,
    but a few lines (oneDNN, CUDA probing on CPU machines) come before that logging is set up, so
    standard error is closed for the import itself; a failing import still raises as usual."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
            tensorflow.config.list_physical_devices("GPU")   # the CUDA probe, once, quietly
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def parse_run_arguments(argv: Sequence[str] | None, description: str, model_names: list[str],
                        seeds: list[int]) -> tuple[str, int]:
    """The `model` and `--seed` arguments of the per-run stages (train@<model>-<seed>,
    evaluate@<model>-<seed>, and export@<model>, given the first seed), with --help. Without --seed:
    params.yaml's first seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", choices=model_names, help="a model named in params.yaml's train section")
    parser.add_argument("--seed", type=int, default=seeds[0],
                        help=f"the training seed, one of params.yaml's seeds (default: the first, {seeds[0]})")
    arguments = parser.parse_args(argv)
    if arguments.seed not in seeds:
        parser.error(f"--seed {arguments.seed} is not in params.yaml's seeds {seeds}; add it there first")
    return arguments.model, arguments.seed


def parse_model_argument(argv: Sequence[str] | None, description: str, model_names: list[str]) -> str:
    """The `model` argument of the per-model stages (cards@<model>), with --help; a name
    outside params.yaml's train section is one line naming the known ones."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help="a model name from params.yaml's train section")
    model = parser.parse_args(argv).model
    if model not in model_names:
        raise UserError(f"{model}: not a model of params.yaml's train section ({', '.join(model_names)})")
    return model
