"""The code's shape: stages import helpers, never each other; train and evaluate know no model by name."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.helpers import PLUMBING, ROOT, import_closure, imported_project_modules, module_name, pipeline_code

STAGES = ROOT / "stages"


def stage_modules() -> set[str]:
    """The modules dvc.yaml runs (`python -m stages.<name>`), and the predict command."""
    text = (ROOT / "dvc.yaml").read_text()
    return set(re.findall(r"python -m stages\.(\w+)", text)) | {"predict"}


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


def test_every_stage_declares_exactly_the_code_it_runs():
    problems = {}
    for stage, (needed, declared) in pipeline_code(ROOT).items():
        needed = needed - PLUMBING
        if needed != declared:
            problems[stage] = {"missing": sorted(needed - declared), "not imported": sorted(declared - needed)}
    assert problems == {}, "dvc.yaml's code deps differ from the imports"


def test_the_closure_follows_lazy_and_transitive_imports():
    closure = import_closure({"stages.train", "stages.models.baseline"})
    assert {"stages.models", "stages.models.family", "stages.records", "stages.contracts", "stages.config"} <= closure
    assert "stages.models.transfer" not in closure and "stages.figures" not in closure


def test_a_missing_code_dep_is_caught(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    shutil.copytree(STAGES, tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)   # DVC wants its repository in git
    text = (tmp_path / "dvc.yaml").read_text()
    start = text.index("  tfrecords:")
    text = text[:start] + text[start:].replace("      - stages/records.py\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(text)
    needed, declared = pipeline_code(tmp_path)["tfrecords"]
    assert "stages.records" in needed - declared
