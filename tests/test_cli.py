"""The command-line shell: one line for every user-caused failure, honest interruption, stale staging swept."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stages.common import cli
from stages.common.atomic_files import atomic_file, staged_dir, sweep_stale
from tests.helpers import run_cli


def raising(error: BaseException):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system"),
                                        (errno.EACCES, "Permission denied")])
def test_disk_trouble_is_one_line_naming_the_file(capsys, code, text):
    assert run_cli(raising(OSError(code, text, "metrics/prepare.json"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: metrics/prepare.json: {text}; ")


def test_a_reader_that_left_is_a_quiet_exit(capsys, monkeypatch):
    """`python -m stages.verdict | head`: the pipe closes, the command ends without a traceback."""
    redirected = []

    class Stdout:
        def fileno(self) -> int:
            return 99

    monkeypatch.setattr(cli.os, "dup2", lambda source, target: redirected.append(target))
    monkeypatch.setattr(cli.sys, "stdout", Stdout())
    assert run_cli(raising(BrokenPipeError(32, "Broken pipe"))) == 0
    assert capsys.readouterr().err == "" and redirected == [99]


def test_other_os_errors_are_not_hidden():
    with pytest.raises(OSError):
        run_cli(raising(OSError(errno.EIO, "Input/output error")))


def test_interruption_says_what_dvc_did(capsys, monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert run_cli(raising(KeyboardInterrupt())) == 130
    assert "earlier outputs are left as they were" in capsys.readouterr().err
    monkeypatch.setenv("DVC_STAGE", "train@baseline")
    assert run_cli(raising(KeyboardInterrupt())) == 130
    err = capsys.readouterr().err
    assert "DVC had removed train@baseline's outputs" in err and "left as they were" not in err


def test_a_stage_sweeps_what_killed_runs_left(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    dead, alive = 2 ** 22 + 12345, os.getpid()   # above Linux's pid_max default: no such process
    stale = [tmp_path / "data" / f".prepared.tmp-{dead}-x1", tmp_path / "plots" / "roc" / f".baseline.tmp-{dead}-x2"]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"half")
    stale_file = tmp_path / "metrics" / f".prepare.json.tmp-{dead}-x3"
    stale_file.parent.mkdir()
    stale_file.write_text("{")
    running = tmp_path / "data" / f".features.tmp-{alive}-x4"
    running.mkdir()
    assert run_cli(lambda argv: None) == 0
    assert not any(path.exists() for path in [*stale, stale_file])
    assert running.exists()   # its writer is alive


def test_sweep_leaves_other_files_alone(tmp_path):
    keep = [tmp_path / "data" / ".prepared.tmp-notapid", tmp_path / "data" / "prepared.tmp-1-x", tmp_path / ".git"]
    for path in keep:
        path.mkdir(parents=True)
    assert sweep_stale([tmp_path]) == []
    assert all(path.exists() for path in keep)


def test_outputs_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "x.json", "w") as handle:
            handle.write("{}")
        with staged_dir(tmp_path / "folder") as staging:
            (staging / "y").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_metrics_that_cannot_be_written_leave_the_data_alone(tmp_path, monkeypatch):
    """prepare opens its metrics file before replacing data/prepared: a failure there changes nothing."""
    from stages import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "old.png").write_bytes(b"old")
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    real_mkstemp = __import__("tempfile").mkstemp

    def read_only_metrics(*args, **kwargs):
        if str(kwargs.get("dir", "")).endswith("metrics"):
            raise OSError(errno.EROFS, "Read-only file system", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr("tempfile.mkstemp", read_only_metrics)
    monkeypatch.setattr(prepare, "prepare", lambda *a, **k: pytest.fail("prepared before the metrics could be written"))
    assert run_cli(prepare.main, []) == 1
    assert (tmp_path / "data" / "prepared" / "old.png").read_bytes() == b"old"
    assert not any(path.name.startswith(".") for path in (tmp_path / "data").iterdir())


@pytest.mark.e2e
def test_tensorflow_starts_quietly():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", "from stages.common import cli; cli.quiet_tensorflow(); "
                             "import tensorflow as tf; print(tf.constant(2) * 3)"],
                            cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "6" in result.stdout
    assert result.stderr == ""   # no oneDNN, cudart or absl lines


def test_a_run_is_a_model_and_one_of_the_seeds(capsys):
    assert cli.parse_run_arguments(["baseline"], "d", ["baseline"], [2021, 1]) == ("baseline", 2021)
    assert cli.parse_run_arguments(["baseline", "--seed", "1"], "d", ["baseline"], [2021, 1]) == ("baseline", 1)
    with pytest.raises(SystemExit):
        cli.parse_run_arguments(["baseline", "--seed", "5"], "d", ["baseline"], [2021, 1])
    assert "--seed 5 is not in params.yaml's seeds [2021, 1]; add it there first" in capsys.readouterr().err
