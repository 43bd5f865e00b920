"""Progress of long work, fitted to where it shows: on a terminal a tqdm bar with rate and ETA; in a
log or CI (output not a terminal) a plain line every LOG_EVERY_S seconds and one at the end, not
every refresh of a bar."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0


class LogLines:
    """tqdm's update/close for a log: `title: done/total unit (pct), rate, about N s left` lines."""

    def __init__(self, total: int | None, title: str, unit: str, stream: TextIO, every_s: float = LOG_EVERY_S):
        self.total, self.title, self.unit, self.stream, self.every_s = total, title, unit, stream, every_s
        self.done = 0
        self.started = self.last = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= self.every_s and (self.total is None or self.done < self.total):
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            if self.total is None:      # a count of unknown end: how far and how fast, no estimate
                self._line(f"{self.done:,} {self.unit}, {rate:,.0f} {self.unit}/s")
                return
            left = (self.total - self.done) / rate if rate else float("inf")
            self._line(f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), "
                       f"{rate:,.0f} {self.unit}/s, about {left:,.0f} s left")

    def close(self) -> None:
        seconds = time.monotonic() - self.started
        self._line(f"{self.done:,} {self.unit} in {seconds:,.0f} s ({self.done / max(seconds, 1e-9):,.0f} {self.unit}/s)")

    def _line(self, text: str) -> None:
        print(f"{self.title}: {text}", file=self.stream, flush=True)

    def __enter__(self) -> "LogLines":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


class Silent:
    def update(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "Silent":
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int | None, title: str | None, unit: str = "img", stream: TextIO | None = None):
    """A progress display for `total` steps (None: not known in advance), a context manager with
    update(n) and close(); title None shows nothing."""
    if title is None:
        return Silent()
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=title, unit=unit, file=stream, dynamic_ncols=True)
    return LogLines(total, title, unit, stream)
