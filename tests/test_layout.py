"""The code's shape: stages import helpers, never each other; train and evaluate know no model by name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "stages"


def stage_modules() -> set[str]:
    """The modules dvc.yaml runs (`python -m stages.<name>`), and the predict command."""
    text = (ROOT / "dvc.yaml").read_text()
    return set(re.findall(r"python -m stages\.(\w+)", text)) | {"predict"}


def imported_project_modules(path: Path) -> set[str]:
    """Every stages.* module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            # `from stages import report` imports the module stages.report
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (STAGES.parent / node.module.replace(".", "/") / f"{alias.name}.py").is_file()}
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_the_stage_list_is_real():
    names = stage_modules()
    assert {"download", "prepare", "tfrecords", "features", "train", "evaluate", "compare", "report"} <= names
    assert all((STAGES / f"{name}.py").is_file() for name in names)


def test_no_module_imports_a_stage():
    stages = {f"stages.{name}" for name in stage_modules()}
    offenders = {}
    for path in sorted(STAGES.rglob("*.py")):
        imported = imported_project_modules(path) & stages
        if imported:
            offenders[module_name(path)] = sorted(imported)
    assert offenders == {}, "stages and helpers must import helpers only"


def test_the_check_sees_function_level_imports(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from stages import compare, cli\n    import stages.report\n")
    assert {"stages.compare", "stages.report"} <= imported_project_modules(path)


def test_train_and_evaluate_name_no_model():
    names = list(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    for stage in ("train", "evaluate"):
        text = (STAGES / f"{stage}.py").read_text()
        for name in names:
            assert not re.search(rf"\b{name}\b", text), f"stages/{stage}.py mentions the model {name}"


def test_every_model_has_its_module_and_dvc_entry():
    names = list(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    models_var = next(entry["models"] for entry in dvc["vars"] if "models" in entry)
    assert list(models_var) == names
    assert all((STAGES / "models" / f"{name}.py").is_file() for name in names)
