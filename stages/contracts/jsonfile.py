"""A JSON file passed between stages: one typed definition, read with one-line errors, written atomically.

Its own small module, apart from the other contracts, so that the download stage, whose reruns cost a download,
depends on nothing that changes with the other stages' files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from stages.common.atomic_files import json_text, write_text_atomic
from stages.common.errors import UserError


def missing(path: Path, stage: str) -> UserError:
    """The one-line error for an input another stage should have written."""
    return UserError(f"{path}: not found; run the {stage} stage first (dvc repro {stage})")


def non_finite_fields(data: object, where: str = "") -> Iterator[str]:
    """The dotted paths of the NaN and infinite floats in JSON-ready data (dicts, lists, scalars)."""
    if isinstance(data, float) and not math.isfinite(data):
        yield where or "the value"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from non_finite_fields(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from non_finite_fields(value, f"{where}[{index}]")


class JsonFile(BaseModel):
    """A JSON file passed between stages; subclasses say which stage writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    written_by: ClassVar[str]

    @classmethod
    def read(cls, path: Path | str):
        path = Path(path)
        if not path.is_file():
            raise missing(path, cls.written_by)
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the file"
            raise UserError(f"{path}: {where}: {first['msg']}; rerun the {cls.written_by} stage "
                            f"(dvc repro -f {cls.written_by})") from None

    def text(self) -> str:
        """Pretty, key-sorted JSON: stable bytes for DVC and git. A NaN or infinity is a bug upstream
        (JSON has neither): it raises, naming the field, rather than reach a file."""
        data = self.model_dump(mode="json")
        bad = list(non_finite_fields(data))
        if bad:
            raise ValueError(f"{type(self).__name__}: {', '.join(bad)} is not a finite number (NaN or infinity), "
                             "which JSON cannot hold")
        return json_text(data)

    def write(self, path: Path | str) -> None:
        """Write the JSON atomically."""
        write_text_atomic(path, self.text())
