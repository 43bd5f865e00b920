"""The project as a Python package: pyproject.toml's ranges against the locks make installs, every import
declared, the Python versions said alike everywhere, the CI workflow for forks valid, the licence files.
(Building and installing the wheel: tests/e2e/test_wheel.py.)"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
# Imported outside stages/ but deliberately not required: the benchmark of face detectors compares
# OpenCV's when it happens to be installed (benchmarks/face_detectors.py).
OPTIONAL_IMPORTS = {"cv2"}


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line in a requirements file (not following -r)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            found[canonicalize_name(requirement.name)] = spec.version
    return found


def ranges(declared: list[str]) -> dict[str, SpecifierSet]:
    return {canonicalize_name(Requirement(item).name): Requirement(item).specifier for item in declared}


RUNTIME_RANGES = ranges(PYPROJECT["project"]["dependencies"])
DEV_RANGES = ranges(PYPROJECT["project"]["optional-dependencies"]["dev"])


@pytest.mark.parametrize("lock, declared", [("requirements.txt", RUNTIME_RANGES),
                                            ("requirements-dev.txt", DEV_RANGES)])
def test_every_pin_lies_in_its_declared_range(lock, declared):
    pinned = pins(ROOT / lock)
    assert sorted(pinned) == sorted(declared), f"{lock} and pyproject.toml name different packages"
    outside = {name: (version, str(declared[name])) for name, version in pinned.items()
               if not declared[name].contains(version)}
    assert outside == {}


def test_the_dev_lock_builds_on_the_runtime_lock():
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "pytest" not in pins(ROOT / "requirements.txt")


def third_party_imports(folder: str) -> set[str]:
    """The distributions that the modules under `folder` import (top-level names mapped by
    importlib.metadata), besides the standard library and the project's own packages."""
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    names -= set(sys.stdlib_module_names) | {"stages", "tests", "benchmarks", "docs", "__future__"} | OPTIONAL_IMPORTS
    distributions = packages_distributions()
    unknown = sorted(name for name in names if name not in distributions)
    assert unknown == [], f"{folder}/ imports modules no installed distribution provides: {unknown}"
    return {canonicalize_name(distributions[name][0]) for name in names}


def test_every_import_is_declared():
    """The package's own code needs only its runtime dependencies; tests, benchmarks and docs may use
    the dev extra too (scipy was once imported and not pinned)."""
    assert third_party_imports("stages") - set(RUNTIME_RANGES) == set()
    for folder in ("tests", "benchmarks", "docs"):
        assert third_party_imports(folder) - set(RUNTIME_RANGES) - set(DEV_RANGES) == set(), folder


def test_the_checked_python_versions_are_said_alike_everywhere():
    """requires-python covers exactly what is checked: the suite here (3.11), and for the others the
    wheel check of make test and the suite in the fork workflow."""
    makefile = (ROOT / "Makefile").read_text()
    others = re.search(r"^OTHER_PYTHONS \?= (.+)$", makefile, re.MULTILINE).group(1).split()
    checked = ["3.11", *others]
    allowed = SpecifierSet(PYPROJECT["project"]["requires-python"])
    minors = [f"3.{minor}" for minor in range(8, 20) if allowed.contains(f"3.{minor}.0")]
    assert minors == checked
    classifiers = [c.rsplit(" :: ", 1)[1] for c in PYPROJECT["project"]["classifiers"]
                   if c.startswith("Programming Language :: Python :: 3.")]
    assert classifiers == checked
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python"] == checked
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in checked


def test_the_workflow_runs_the_readme_test_command_and_the_fast_tier():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = {job: [step.get("run") for step in spec["steps"] if "run" in step] for job, spec in workflow["jobs"].items()}
    assert runs == {"fast": ["make test-fast"], "test": ["make test"]}
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
    for job in workflow["jobs"].values():
        setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
        assert setup["with"]["cache"] == "pip"


def validate_workflow(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema against the GitHub Actions workflow schema it ships (no network)."""
    command = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert command, "check-jsonschema is not installed: make env installs requirements-dev.txt"
    return subprocess.run([command, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_workflow_is_valid_and_a_broken_one_is_not(tmp_path):
    done = validate_workflow(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:"))
    done = validate_workflow(broken)
    assert done.returncode != 0 and "'runs-on' is a required property" in done.stdout


def test_the_licence_files_are_there_and_named_in_the_metadata():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license-files"] == ["LICENSE", "THIRD_PARTY.md"]


def test_third_party_lists_every_runtime_dependency():
    listed = {canonicalize_name(name) for name in re.findall(r"^\| `?([A-Za-z0-9_.\-]+)`? \|",
                                                                (ROOT / "THIRD_PARTY.md").read_text(), re.MULTILINE)}
    assert set(RUNTIME_RANGES) - listed == set()
