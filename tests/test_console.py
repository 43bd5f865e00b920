"""The `facegender` console command (stages/__main__.py): subcommands named as people call them, each
the module's own command line under its own name, and `facegender run` as make run's recipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stages import __main__ as console
from tests.helpers import ROOT, run_cli


def test_help_lists_every_subcommand(capsys):
    assert run_cli(console.main, ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: facegender ")
    for name in console.SUBCOMMANDS:
        assert f"\n  {name} " in out


@pytest.mark.parametrize("name", [name for name, (module, _) in console.SUBCOMMANDS.items() if module])
def test_each_subcommand_has_help_under_its_own_name(name, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", list(sys.argv))     # the subcommand renames the program in sys.argv[0]
    assert run_cli(console.main, [name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: facegender {name} ")


def test_python_dash_m_names_the_module(monkeypatch):
    """`python -m stages.predict --help` says so, not `predict.py`."""
    from stages.common import cli

    monkeypatch.setattr(sys, "argv", ["/somewhere/stages/predict.py", "--help"])
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", type("Spec", (), {"name": "stages.predict"})())
    cli.name_the_program()
    assert sys.argv[0] == "python -m stages.predict"


def test_unknown_subcommand_is_one_line(capsys):
    assert run_cli(console.main, ["trian"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'trian'" in err and "predict" in err


def test_run_is_dvc_repro_then_the_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin")
    calls = []
    monkeypatch.setattr(console.subprocess, "call", lambda command: calls.append(command) or 0)
    import stages.verdict

    monkeypatch.setattr(stages.verdict, "main", lambda argv: calls.append(["verdict", *argv]))
    assert run_cli(console.main, ["run"]) == 1          # no dvc.yaml here
    assert "no dvc.yaml in" in capsys.readouterr().err and calls == []
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert run_cli(console.main, ["run", "--force", "train@baseline"]) == 0
    assert calls == [[sys.executable, "-m", "dvc", "repro", "--force", "train@baseline"], ["verdict"]]
    # dvc.yaml's `python` and `dvc` are this environment's, activated or not.
    assert os.environ["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_run_stops_when_dvc_repro_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setattr(console.subprocess, "call", lambda command: 3)
    import stages.verdict

    monkeypatch.setattr(stages.verdict, "main", lambda argv: pytest.fail("the verdict of a failed run"))
    assert run_cli(console.main, ["run"]) == 3


def test_make_uses_the_console_command():
    makefile = (ROOT / "Makefile").read_text()
    recipe = {target: makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0].strip().splitlines()[-1].strip()
              for target in ("run", "compare")}
    assert recipe == {"run": "facegender run", "compare": "facegender compare"}
