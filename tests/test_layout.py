"""The code's shape: a module directly in stages/ is a command, what commands import lives in subpackages;
commands import libraries, never each other; dvc.yaml lists exactly the code each stage runs; train and
evaluate know no model by name."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import (ROOT, has_code, import_closure, imported_project_modules, module_name, output_code,
                           pipeline_code, run_cli)

STAGES = ROOT / "stages"
# The commands that are not DVC stages (__main__: the `facegender` console command, stages/__main__.py).
OTHER_COMMANDS = {"predict", "serve", "plan", "plots_template", "verdict", "experiments", "__main__"}
# Modules allowed over MAX_LINES, and why.
MAX_LINES = 300
LONGER_MODULES = {
    "stages/common/config.py": "params.yaml's one typed loader: a schema class per section, each beside the "
                               "others it checks against (prepare's classes, download's datasets)",
}


def commands() -> list[str]:
    """The modules directly in stages/: every one is a command."""
    return sorted(path.stem for path in STAGES.glob("*.py") if path.name != "__init__.py")


def library_files() -> list:
    """Every module file in stages/'s subpackages: what commands import."""
    return sorted(STAGES.glob("*/**/*.py"))


def dvc_stage_modules() -> set[str]:
    """The modules dvc.yaml runs (`python -m stages.<name>`)."""
    return set(re.findall(r"python -m stages\.(\w+)", (ROOT / "dvc.yaml").read_text()))


def main_block(path) -> ast.If | None:
    """The module's `if __name__ == "__main__":` block, if it has one."""
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            return node
    return None


def runs_as_a_command(path) -> bool:
    """`if __name__ == "__main__":` calling cli.run(main, ...) at the end of the module."""
    block = main_block(path)
    return block is not None and "cli.run(main" in ast.unparse(block)


def test_stages_holds_only_commands_and_subpackages():
    assert set(commands()) == dvc_stage_modules() | OTHER_COMMANDS
    loose = [path.name for path in STAGES.iterdir()
             if not (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file())
                     or path.name == "__pycache__")]
    assert loose == []


def test_every_command_runs_as_one_and_no_library_module_does():
    assert [name for name in commands() if not runs_as_a_command(STAGES / f"{name}.py")] == []
    assert [module_name(path) for path in library_files() if main_block(path)] == []


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help_naming_itself(name, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)       # train and evaluate read the model names from params.yaml first
    module = importlib.import_module(f"stages.{name}")
    assert run_cli(module.main, ["--help"]) == 0
    out = capsys.readouterr().out
    described = module.__doc__.splitlines()[0].split(":", 1)[1].strip()[:30].lower()
    assert out.startswith("usage: ") and described in " ".join(out.lower().split())


def test_every_package_init_holds_only_its_docstring():
    """dvc.yaml leaves them out of the code deps: that is safe only while they hold no code."""
    inits = sorted(STAGES.rglob("__init__.py"))
    assert len(inits) >= 7
    assert [str(path.relative_to(ROOT)) for path in inits if has_code(path)] == []
    assert all(ast.get_docstring(ast.parse(path.read_text())) for path in inits)


def test_models_holds_one_module_per_model_and_nothing_else():
    names = list(yaml.safe_load((ROOT / "params.yaml").read_text())["train"])
    assert sorted(path.stem for path in (STAGES / "models").glob("*.py") if path.name != "__init__.py") == sorted(names)


def test_no_module_over_the_size_limit_without_a_reason():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in STAGES.rglob("*.py")}
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES and path not in LONGER_MODULES} == {}
    assert all(path in sizes for path in LONGER_MODULES)


def test_no_module_imports_a_command():
    commands_ = {f"stages.{name}" for name in commands()}
    offenders = {}
    for path in sorted(STAGES.rglob("*.py")):
        imported = imported_project_modules(path) & commands_
        if imported:
            offenders[module_name(path)] = sorted(imported)
    assert offenders == {}, "commands and libraries must import libraries only"


def test_the_shared_libraries_import_no_model():
    """A model builds on stages/modelkit, never the reverse (the registry finds models by name)."""
    offenders = {module_name(path): sorted(name for name in imported_project_modules(path)
                                           if name.startswith("stages.models"))
                 for path in sorted(STAGES.glob("*/*.py")) if path.parent.name != "models"}
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_check_sees_function_level_imports(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from stages import compare, report\n    import stages.common.cli\n")
    assert {"stages.compare", "stages.report", "stages.common.cli"} <= imported_project_modules(path)


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
    """A stage of a foreach or matrix (`train@<model>-<seed>`) shares one deps list with its template's
    other stages but its model's module: it declares the code any of them runs. (So a change to the
    transfer model's VGG16 kit retrains the CNNs too, to byte-identical models: nothing after reruns.)"""
    code = {stage: (output_code(needed, ROOT), declared) for stage, (needed, declared) in pipeline_code(ROOT).items()}
    shared: dict[str, set[str]] = {}
    for stage, (needed, _) in code.items():
        if "@" in stage:
            shared.setdefault(stage.split("@")[0], set()).update(
                name for name in needed if not name.startswith("stages.models."))
    problems = {}
    for stage, (needed, declared) in code.items():
        needed = needed | shared.get(stage.split("@")[0], set()) if "@" in stage else needed
        if needed != declared:
            problems[stage] = {"missing": sorted(needed - declared), "not imported": sorted(declared - needed)}
    assert problems == {}, "dvc.yaml's code deps differ from the imports"


def test_the_closure_follows_lazy_and_transitive_imports():
    closure = import_closure({"stages.train", "stages.models.baseline"})
    assert {"stages.modelkit.registry", "stages.modelkit.family", "stages.contracts.tfrecord_io",
            "stages.contracts.training", "stages.common.config"} <= closure
    assert "stages.models.transfer" not in closure and "stages.analysis.figures" not in closure


def test_plumbing_and_docstring_packages_are_left_out():
    closure = import_closure({"stages.compare"})
    assert {"stages.common", "stages.common.cli", "stages.contracts"} <= closure
    assert not {"stages", "stages.common", "stages.common.cli", "stages.common.errors"} & output_code(closure, ROOT)


def test_a_missing_code_dep_is_caught(tmp_path):
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    shutil.copytree(STAGES, tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)   # DVC wants its repository in git
    text = (tmp_path / "dvc.yaml").read_text()
    start = text.index("  tfrecords:")
    text = text[:start] + text[start:].replace("      - stages/contracts/tfrecord_io.py\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(text)
    needed, declared = pipeline_code(tmp_path)["tfrecords"]
    assert "stages.contracts.tfrecord_io" in output_code(needed, tmp_path) - declared


def test_code_in_a_package_init_would_be_seen(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text('"""A package."""\n\nfrom __future__ import annotations\n')
    assert not has_code(init)
    init.write_text('"""A package."""\n\nTHRESHOLD = 0.5\n')
    assert has_code(init)
