"""Write-then-rename: an interrupted or failed stage leaves the previous output exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from stages.common import atomic_files
from stages.common.atomic_files import (recover_interrupted, replace_dir, staged_dir, write_bytes_atomic,
                                        write_json_atomic, write_zip)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root: sha256 for files, 'dir' for folders."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


def make_old(final: Path) -> dict[str, str]:
    (final / "sub" / "empty").mkdir(parents=True)
    (final / "a.txt").write_text("old a\n")
    (final / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4)
    (final / ".hidden").write_text("h")
    return snapshot(final)


def siblings(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir())


# --- staged_dir -------------------------------------------------------------------------------

def test_success_replaces_old_folder_whole(tmp_path):
    final = tmp_path / "out"
    make_old(final)
    with staged_dir(final) as staging:
        assert staging.parent == final.parent
        assert staging.name.startswith(".out.tmp-")
        assert staging.is_dir() and list(staging.iterdir()) == []
        assert (final / "a.txt").read_text() == "old a\n"  # old output still there meanwhile
        (staging / "new.txt").write_text("new\n")
        (staging / "deep").mkdir()
        (staging / "deep" / "x").write_bytes(b"x")
    assert snapshot(final) == {
        "deep": "dir",
        "deep/x": hashlib.sha256(b"x").hexdigest(),
        "new.txt": hashlib.sha256(b"new\n").hexdigest(),
    }
    assert siblings(final) == ["out"]  # no .out.tmp-*, no .out.old-*
    assert not staging.exists()


def test_success_without_previous_output(tmp_path):
    final = tmp_path / "a" / "b" / "out"
    with staged_dir(final) as staging:
        (staging / "f").write_text("1")
    assert (final / "f").read_text() == "1"
    assert siblings(final) == ["out"]


def test_success_with_str_path(tmp_path):
    final = tmp_path / "out"
    with staged_dir(str(final)) as staging:
        (staging / "f").write_text("1")
    assert (final / "f").read_text() == "1"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_old_folder_untouched(tmp_path, error):
    final = tmp_path / "out"
    before = make_old(final)
    with pytest.raises(type(error)):
        with staged_dir(final) as staging:
            (staging / "a.txt").write_text("half-written new a\n")
            (staging / "partial").mkdir()
            raise error
    assert snapshot(final) == before
    assert (final / "a.txt").read_text() == "old a\n"
    assert siblings(final) == ["out"]
    assert not staging.exists()


def test_failure_without_previous_output_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(ValueError):
        with staged_dir(final) as staging:
            (staging / "f").write_text("1")
            raise ValueError("bad")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_other_siblings_are_left_alone(tmp_path):
    final = tmp_path / "out"
    make_old(final)
    (tmp_path / "other").mkdir()
    (tmp_path / ".outer.tmp-1").mkdir()   # another output's staging folder
    (tmp_path / ".out2.old-1").mkdir()
    (tmp_path / "out.tmp-1").mkdir()     # not hidden: not ours
    with staged_dir(final) as staging:
        (staging / "f").write_text("1")
    assert siblings(final) == [".out2.old-1", ".outer.tmp-1", "other", "out", "out.tmp-1"]


def test_stale_staging_is_cleaned_on_next_run(tmp_path):
    final = tmp_path / "out"
    make_old(final)
    (tmp_path / ".out.tmp-dead").mkdir()
    (tmp_path / ".out.tmp-dead" / "junk").write_text("j")
    with staged_dir(final) as staging:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", staging.name])
        (staging / "f").write_text("1")
    assert siblings(final) == ["out"]


def test_replace_dir_over_a_file(tmp_path):
    final = tmp_path / "out"
    final.write_text("a file, once")
    new = tmp_path / "new"
    new.mkdir()
    (new / "f").write_text("1")
    replace_dir(new, final)
    assert (final / "f").read_text() == "1"
    assert siblings(final) == ["out"]


def test_replace_dir_over_a_symlink(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("k")
    final = tmp_path / "out"
    final.symlink_to(target)
    new = tmp_path / "new"
    new.mkdir()
    replace_dir(new, final)
    assert final.is_dir() and not final.is_symlink()
    assert (target / "keep").read_text() == "k"  # the link went, not what it pointed to
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "target"]


# --- recover_interrupted ----------------------------------------------------------------------

def test_recover_removes_staging_folders_and_files(tmp_path):
    final = tmp_path / "out"
    before = make_old(final)
    (tmp_path / ".out.tmp-abc" / "deep").mkdir(parents=True)
    (tmp_path / ".out.tmp-abc" / "deep" / "f").write_text("x")
    (tmp_path / ".out.tmp-file").write_text("a staging file")
    recover_interrupted(final)
    assert siblings(final) == ["out"]
    assert snapshot(final) == before


def test_recover_restores_old_when_final_missing(tmp_path):
    # Killed between the two renames of replace_dir: out -> .out.old-123 done, new -> out not.
    final = tmp_path / "out"
    before = make_old(final)
    os.replace(final, tmp_path / ".out.old-123")
    (tmp_path / ".out.tmp-xyz").mkdir()  # the new output, never moved in
    recover_interrupted(final)
    assert siblings(final) == ["out"]
    assert snapshot(final) == before


def test_recover_drops_old_when_final_present(tmp_path):
    # Killed after both renames, before the old copy was deleted: final is the new output.
    final = tmp_path / "out"
    final.mkdir()
    (final / "new").write_text("n")
    old = tmp_path / ".out.old-99"
    make_old(old)
    (tmp_path / ".out.old-file").write_text("old file")
    recover_interrupted(final)
    assert siblings(final) == ["out"]
    assert (final / "new").read_text() == "n"
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_recover_with_nothing_to_do(tmp_path):
    final = tmp_path / "out"
    before = make_old(final)
    (tmp_path / "unrelated").write_text("u")
    recover_interrupted(final)
    assert snapshot(final) == before
    assert siblings(final) == ["out", "unrelated"]
    recover_interrupted(tmp_path / "missing")  # no final, nothing stale: no error
    assert not (tmp_path / "missing").exists()


def test_staged_dir_recovers_before_staging(tmp_path):
    final = tmp_path / "out"
    before = make_old(final)
    os.replace(final, tmp_path / ".out.old-7")
    with pytest.raises(RuntimeError):
        with staged_dir(final):
            # The interrupted run's output was restored before this run began.
            assert snapshot(final) == before
            raise RuntimeError("fail again")
    assert snapshot(final) == before
    assert siblings(final) == ["out"]


# --- atomic files -----------------------------------------------------------------------------

def test_write_json_atomic_is_stable_and_sorted(tmp_path):
    path = tmp_path / "m" / "x.json"
    write_json_atomic(path, {"b": 1, "a": {"d": [1, 2], "c": None}})
    text = path.read_text()
    assert text == '{\n  "a": {\n    "c": null,\n    "d": [\n      1,\n      2\n    ]\n  },\n  "b": 1\n}\n'
    assert json.loads(text) == {"a": {"c": None, "d": [1, 2]}, "b": 1}
    write_json_atomic(path, {"z": 0})
    assert json.loads(path.read_text()) == {"z": 0}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_json_refuses_nan_and_infinity_loudly(tmp_path, value):
    """JSON has no NaN: json.dumps would write a bare NaN that strict readers reject. Writing fails
    instead, naming the field, and the old file stays."""
    from typing import ClassVar, Optional

    from stages.contracts.jsonfile import JsonFile

    class Scores(JsonFile):
        written_by: ClassVar[str] = "test"
        values: dict[str, Optional[float]]

    path = tmp_path / "scores.json"
    write_json_atomic(path, {"a": 1.0})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": value})
    with pytest.raises(ValueError, match=r"^Scores: values\.p_value is not a finite number"):
        Scores(values={"auc": 0.5, "p_value": value}).write(path)
    assert json.loads(path.read_text()) == {"a": 1.0}


def test_write_bytes_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(atomic_files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_bytes_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


# --- deterministic zip -------------------------------------------------------------------------------

@pytest.fixture
def later(monkeypatch):
    """A function that moves this process's clock (time.time, as zipfile and numpy read it) a day ahead."""
    def move():
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 86_400 + 3)
    return move


MEMBERS = {"b.txt": b"bee\n" * 100, "a/inner.bin": bytes(range(256)), "config.json": b'{"x": 1}'}


def test_write_zip_reads_back_with_fixed_headers(tmp_path):
    path = tmp_path / "out" / "x.zip"
    write_zip(path, MEMBERS)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == sorted(MEMBERS)  # a fixed order, whatever the dict's
        assert archive.comment == b""
        for info in archive.infolist():
            assert archive.read(info) == MEMBERS[info.filename]
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644  # a regular file, rw-r--r--
            assert info.create_system == 3
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.extra == b""
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.zip"]  # no temporary file left


def test_write_zip_same_members_same_bytes_any_time_any_order(tmp_path, later):
    write_zip(tmp_path / "first.zip", MEMBERS)
    later()
    write_zip(tmp_path / "second.zip", dict(reversed(MEMBERS.items())))
    assert (tmp_path / "first.zip").read_bytes() == (tmp_path / "second.zip").read_bytes()


def plain_zip(path: Path) -> bytes:
    """A zip written the ordinary way, zipfile's writestr with a name: its entry takes the time."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", b"a")
    return path.read_bytes()


def test_later_moves_the_clock_zipfile_reads(tmp_path, later):
    """The `later` fixture is effective: an ordinary zip of the same member changes with it."""
    before = plain_zip(tmp_path / "before.zip")
    later()
    assert plain_zip(tmp_path / "after.zip") != before


def test_write_zip_other_contents_other_bytes(tmp_path):
    write_zip(tmp_path / "a.zip", MEMBERS)
    write_zip(tmp_path / "b.zip", {**MEMBERS, "b.txt": b"bee\n" * 99 + b"bea\n"})
    write_zip(tmp_path / "c.zip", {**MEMBERS, "c.txt": b""})
    files = [(tmp_path / name).read_bytes() for name in ("a.zip", "b.zip", "c.zip")]
    assert len(set(files)) == 3


def test_write_zip_deflated(tmp_path, later):
    write_zip(tmp_path / "a.zip", MEMBERS, compression=zipfile.ZIP_DEFLATED)
    later()
    write_zip(tmp_path / "b.zip", MEMBERS, compression=zipfile.ZIP_DEFLATED)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert (tmp_path / "a.zip").stat().st_size < sum(map(len, MEMBERS.values()))
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert {i.filename: archive.read(i) for i in archive.infolist()} == MEMBERS
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def test_write_zip_folder_entries_and_empty_archive(tmp_path):
    write_zip(tmp_path / "d.zip", {"assets/": b"", "assets/x.txt": b"x"})
    with zipfile.ZipFile(tmp_path / "d.zip") as archive:
        folder = archive.getinfo("assets/")
        assert folder.is_dir() and folder.external_attr >> 16 == 0o40755
        assert archive.read("assets/x.txt") == b"x"
    write_zip(tmp_path / "empty.zip", {})
    with zipfile.ZipFile(tmp_path / "empty.zip") as archive:
        assert archive.namelist() == []


@pytest.mark.parametrize(("members", "error"), [
    ({"/abs.txt": b""}, ValueError),
    ({"a/../b.txt": b""}, ValueError),
    ({"a\\b.txt": b""}, ValueError),
    ({"": b""}, ValueError),
    ({"dir/": b"contents"}, ValueError),
    ({"a.txt": "text, not bytes"}, TypeError),
    ({"a.txt": 3}, TypeError),
])
def test_write_zip_refuses_bad_members_and_keeps_old_file(tmp_path, members, error):
    path = tmp_path / "x.zip"
    path.write_bytes(b"old")
    with pytest.raises(error):
        write_zip(path, {"ok.txt": b"fine", **members})
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]


def test_write_zip_failure_midway_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.zip"
    path.write_bytes(b"old")
    real = zipfile.ZipFile.writestr

    def failing(self, info, data, *args, **kwargs):
        if info.filename == "b.txt":
            raise OSError("disk full")
        return real(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="disk full"):
        write_zip(path, MEMBERS)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip"]
    with pytest.raises(ValueError, match="compression"):
        write_zip(path, MEMBERS, compression=zipfile.ZIP_BZIP2)
