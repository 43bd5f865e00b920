"""Tables for a terminal: fixed-width columns, numbers right-aligned, at most as wide as their content."""

from __future__ import annotations

from typing import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> list[str]:
    """The lines of a table; `right[i]` right-aligns column i (numbers), the rest are left-aligned."""
    right = right or [False] * len(header)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{cell:>{width}}" if align else f"{cell:<{width}}"
                         for cell, width, align in zip(cells, widths, right)).rstrip()

    return [line(header), *(line(row) for row in rows)]
