"""Progress output: a bar on a terminal, a few plain lines in a log."""

from __future__ import annotations

import io

from tqdm import tqdm

from stages.common import progress


class FakeClock:
    """Seconds in hundredths, exactly."""

    def __init__(self):
        self.hundredths = 100_000

    def __call__(self) -> float:
        return self.hundredths / 100


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_interval_and_one_at_the_end(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    log = io.StringIO()
    with progress.progress_bar(10_000, "prepare", stream=log) as bar:
        for _ in range(10_000):
            clock.hundredths += 1        # 100 s in all, 100 images a second
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 4               # at 30, 60 and 90 s, then the summary: not one per refresh
    assert lines[0] == "prepare: 3,000/10,000 img (30%), 100 img/s, about 70 s left"
    assert lines[-1] == "prepare: 10,000 img in 100 s (100 img/s)"
    assert "\r" not in log.getvalue()


def test_a_short_job_in_a_log_prints_one_line(monkeypatch):
    log = io.StringIO()
    with progress.progress_bar(5, "tfrecords val", stream=log) as bar:
        bar.update(5)
    assert log.getvalue().count("\n") == 1 and log.getvalue().startswith("tfrecords val: 5 img in ")


def test_a_terminal_gets_a_tqdm_bar_with_rate_and_eta():
    terminal = Terminal()
    with progress.progress_bar(3, "features val", stream=terminal) as bar:
        assert isinstance(bar, tqdm)
        bar.update(3)
    assert "features val: 100%" in terminal.getvalue() and "img/s" in terminal.getvalue()


def test_no_title_shows_nothing():
    log = io.StringIO()
    with progress.progress_bar(3, None, stream=log) as bar:
        bar.update(3)
    assert log.getvalue() == ""


def test_a_failure_midway_prints_no_summary():
    log = io.StringIO()
    try:
        with progress.progress_bar(3, "prepare", stream=log) as bar:
            bar.update()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert log.getvalue() == ""


def test_a_log_of_unknown_length_says_how_far_and_how_fast(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    log = io.StringIO()
    with progress.progress_bar(None, "predict", stream=log) as bar:
        for _ in range(4_000):
            clock.hundredths += 1        # 40 s in all
            bar.update()
    assert log.getvalue().splitlines() == ["predict: 3,000 img, 100 img/s", "predict: 4,000 img in 40 s (100 img/s)"]

