"""The thin command-line shell every stage shares: one-line errors, no tracebacks for user mistakes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from stages.errors import UserError


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Call a stage's main() and turn UserError / Ctrl-C into a one-line message and exit code."""
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: earlier outputs are left as they were", file=sys.stderr)
        sys.exit(130)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (CUDA probing on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_model_argument(argv: Sequence[str] | None, description: str, model_names: list[str]) -> str:
    """The `model` argument of the per-model stages (train@<model>, evaluate@<model>), with --help."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", choices=model_names, help="a model named in params.yaml's train section")
    return parser.parse_args(argv).model
