"""`pip install .` into a fresh virtual environment: the wheel builds, holds the package and its licence
files, installs the `facegender` command, and its declared dependencies are met by the pinned lock.

Offline: the wheel is built without build isolation (setuptools is in requirements-dev.txt), installed
with --no-deps --no-index, and the fresh environment sees the dependencies already installed in this
one through a .pth file (a path entry only: this environment's editable install of the checkout is
not processed there, so `stages` comes from the wheel alone).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.e2e


def run(command: list, cwd: Path, timeout: int = 300) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout


def source_copy(target: Path) -> Path:
    """The files git would commit (tracked, and new ones not ignored): what a clone builds from."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT).split("\0")
    for relative in filter(None, listed):
        if (ROOT / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target / relative)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the fresh environment's bin folder)."""
    work = tmp_path_factory.mktemp("wheel")
    source = source_copy(work / "source")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", work / "dist", source], work)
    (wheel,) = (work / "dist").glob("facegender-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", work / "fresh"], work)
    fresh_python = work / "fresh" / "bin" / "python"
    purelib = run([fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "dependencies-of-this-test.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    run([sys.executable, "-m", "pip", "--python", fresh_python, "install", "--quiet", "--no-deps", "--no-index",
         wheel], work)
    return wheel, work / "fresh" / "bin"


def test_the_wheel_holds_the_package_and_the_licences_only(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"stages"}
    assert "stages/__main__.py" in names and "stages/models/transfer.py" in names
    # The page `facegender serve` serves is package data: an installed serve without it would answer 404.
    assert {"stages/serving/page/index.html", "stages/serving/page/page.js", "stages/serving/page/page.css"} <= set(names)
    licences = {Path(name).name for name in names if "/licenses/" in name}
    assert licences == {"LICENSE", "THIRD_PARTY.md"}


def test_facegender_and_its_subcommands_answer_help(installed, tmp_path):
    _, bin_dir = installed
    out = run([bin_dir / "facegender", "--help"], tmp_path)
    assert out.startswith("usage: facegender ") and "predict" in out
    assert run([bin_dir / "facegender", "--version"], tmp_path).strip() == "facegender 0.1.0"
    out = run([bin_dir / "facegender", "predict", "--help"], tmp_path, timeout=600)
    assert out.startswith("usage: facegender predict ")
    where = run([bin_dir / "python", "-c", "import stages; print(stages.__file__)"], tmp_path)
    assert "site-packages" in where and str(ROOT) not in where


def test_the_declared_dependencies_are_met_by_the_lock(installed, tmp_path):
    """What pip would resolve for the wheel is what make installs: every requirement of its metadata
    (the dev extra aside) satisfied by the version installed here."""
    _, bin_dir = installed
    script = (
        "from importlib.metadata import requires, version\n"
        "from packaging.requirements import Requirement\n"
        "for line in requires('facegender'):\n"
        "    r = Requirement(line)\n"
        "    if r.marker is None and not r.specifier.contains(version(r.name)):\n"
        "        print(r, version(r.name))\n"
        "print(len(requires('facegender')))\n")
    out = run([bin_dir / "python", "-c", script], tmp_path).split()
    assert out[:-1] == [] and int(out[-1]) >= 20
