"""Write-then-rename: an interrupted or failed stage leaves the previous output exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from stages import fsutil
from stages.fsutil import recover_interrupted, replace_dir, staged_dir, write_bytes_atomic, write_json_atomic


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


def test_write_bytes_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_bytes_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
