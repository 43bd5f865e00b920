"""What the contracts share: CSV tables with promised columns, and one training run's folder of a per-run
output: <parent>/<model>/<seed>/ (train@<model>-<seed>, evaluate@<model>-<seed>)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from stages.common.atomic_files import atomic_file
from stages.common.errors import UserError
from stages.contracts.jsonfile import missing


def read_csv(path: Path, columns: tuple[str, ...], stage: str) -> pd.DataFrame:
    """A CSV another stage wrote, checked for the columns this contract promises."""
    if not path.is_file():
        raise missing(path, stage)
    table = pd.read_csv(path)
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise UserError(f"{path}: no column {', '.join(absent)}; rerun the {stage} stage (dvc repro -f {stage})")
    return table


def write_csv(path: Path, table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """The contract's columns, in order, written atomically with "\n" line ends (the same bytes everywhere)."""
    with atomic_file(path, "w") as handle:
        table[list(columns)].to_csv(handle, index=False, lineterminator="\n")


@dataclass(frozen=True)
class ModelOutputs:
    """One training run's folder of a per-run stage's output, <parent>/<model>/<seed>/: a model trained
    with one of params.yaml's seeds."""

    root: Path
    parent: ClassVar[Path]

    @classmethod
    def of(cls, name: str, seed: int, parent: Path | None = None):
        return cls(Path(parent or cls.parent) / name / str(seed))


def run_file(root: Path, name: str, seed: int) -> Path:
    """<root>/<model>/<seed>.json: a per-run JSON file (metrics/evaluate, metrics/train, metrics)."""
    return Path(root) / name / f"{seed}.json"
