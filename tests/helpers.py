"""Plain helpers shared by the test modules: `from tests.helpers import hashes, png_bytes, run_cli`.

Fixtures live in tests/conftest.py; pytest finds those by itself and they are never imported.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import plots_template
from stages.common import cli, machine

ROOT = Path(__file__).resolve().parents[1]  # the repository: params.yaml, dvc.yaml, stages/

# With ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (an older CPU emulated) oneDNN has no bfloat16 kernel and
# Keras stops at the first bfloat16 convolution; a real AVX2-only CPU runs bfloat16 (emulated, slowly).
needs_onednn_bfloat16 = pytest.mark.skipif(
    not machine.onednn_allows("bfloat16"),
    reason="ONEDNN_MAX_CPU_ISA caps oneDNN below its bfloat16 kernels: Keras cannot compute in bfloat16 here")


def raw_repo_params() -> dict:
    """The repository's params.yaml as a plain dict, a fresh copy each call (safe to edit)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def write_params(raw: dict) -> None:
    """params.yaml in the current folder, from a plain dict."""
    Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (recursively), keyed by its path relative to root in posix form.

    Folders are not listed (a flat folder gives {file name: digest}). Compare two trees with ==.
    """
    root = Path(root)
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def png_bytes(image: Image.Image, **options) -> bytes:
    """The image encoded as PNG (lossless), as it would be stored in a file.

    options go to PIL's Image.save, e.g. transparency=1 for a palette image.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] = ()) -> int:
    """A stage's command line in this process, as `python -m stages.<stage>` runs it; the exit code.

    Goes through stages.cli.run, so a UserError becomes "error: ..." on stderr and exit code 1,
    as for a user; read the output with capsys.
    """
    try:
        cli.run(main, list(argv))
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1  # sys.exit("message") exits with 1
    return 0


# --- a tiny prepared tree and its TFRecords, as the tfrecords stage reads and writes them --------------

SIZE = 100
CLASSES = ["Female", "Male"]
RECORD_COUNTS = {"train": {"Female": 7, "Male": 6}, "val": {"Female": 3, "Male": 2}, "test": {"Female": 2, "Male": 4}}
SHARD_SIZE = 4
RECORD_SEED = 2021


def face_png(split: str, label: int, index: int) -> bytes:
    """A PNG whose pixels say where it came from: R = 200*label + index, G = split, B a gradient."""
    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[..., 0] = 200 * label + index
    pixels[..., 1] = {"train": 10, "val": 20, "test": 30}[split]
    pixels[..., 2] = np.arange(SIZE, dtype=np.uint8)[None, :] * 2
    return png_bytes(Image.fromarray(pixels))


def make_prepared(root: Path) -> None:
    """data/prepared/<split>.zip with <Class>/imgNNN.png, RECORD_COUNTS images."""
    from stages.contracts.prepared import PreparedWriter

    root.mkdir(parents=True, exist_ok=True)
    with PreparedWriter(root, list(CLASSES)) as out:
        for split, per_class in RECORD_COUNTS.items():
            for label, name in enumerate(CLASSES):
                for index in range(per_class[name]):
                    out.add(split, name, f"img{index:03d}.png", face_png(split, label, index))


def unzip_prepared(root: Path, tree: Path) -> Path:
    """data/prepared's split archives in `root` unpacked as folders, tree/<split>/<Class>/*.png; returns tree."""
    import zipfile

    for archive in sorted(Path(root).glob("*.zip")):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(tree / archive.stem)
    return tree


def make_tfrecords_project(folder: Path, shard_size: int = SHARD_SIZE) -> Path:
    """A working directory with params.yaml (small shards) and data/prepared, as the tfrecords stage expects."""
    raw = raw_repo_params()
    raw["tfrecords"]["shard_size"] = shard_size
    raw["tfrecords"]["seed"] = RECORD_SEED
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    make_prepared(folder / "data" / "prepared")
    return folder


def run_tfrecords(folder: Path) -> Path:
    """The tfrecords stage in `folder`; its output folder."""
    from stages import tfrecords

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        tfrecords.main([])
    return folder / "data" / "tfrecords"


# --- the code each pipeline stage runs, from its imports ----------------------------------------------

# Argument parsing and error display: they cannot change an output, so no stage lists them.
PLUMBING = {"stages.common.cli", "stages.common.errors"}


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def module_file(name: str, root: Path = ROOT) -> Path:
    path = root / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_project_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every stages.* module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            # `from stages import report` imports the module stages.report
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_file(f"{node.module}.{alias.name}", root).is_file()}
    return found


def import_closure(modules: set[str], root: Path = ROOT) -> set[str]:
    """Every project module the given ones import, transitively (packages' __init__ included)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or not module_file(name, root).is_file():
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]   # importing a.b.c runs a and a.b
        todo += sorted(imported_project_modules(module_file(name, root), root))
    return seen


def has_code(path: Path) -> bool:
    """Whether a module holds anything but its docstring (and `from __future__` imports)."""
    for node in ast.parse(path.read_text()).body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (docstring or future):
            return True
    return False


def output_code(modules: set[str], root: Path = ROOT) -> set[str]:
    """The modules of `modules` that can change a stage's output: all but the plumbing and the packages'
    __init__ files that hold only a docstring (tests/test_layout.py checks that every one does)."""
    return {name for name in modules - PLUMBING
            if not (module_file(name, root).name == "__init__.py" and not has_code(module_file(name, root)))}


def pipeline_code(root: Path) -> dict[str, tuple[set[str], set[str]]]:
    """Per DVC stage of the project at root: (the modules its command runs, the modules dvc.yaml lists).

    A command `python -m stages.<module> [<model>]` runs its module and, where it loads models by name
    (stages.modelkit.registry: train@<model>-<seed>, evaluate@<model>-<seed>), the model's module.
    """
    from dvc.repo import Repo

    code = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            found = re.search(r"python -m (stages\.\w+)(?: (\w+))?", stage.cmd)
            imported = import_closure({found.group(1)}, root)
            if found.group(2) and "stages.modelkit.registry" in imported:
                imported = import_closure({found.group(1), f"stages.models.{found.group(2)}"}, root)
            declared = {module_name(root / dep.def_path, root) for dep in stage.deps if dep.def_path.endswith(".py")}
            code[stage.name] = (imported, declared)
    return code


# --- a hostile raw tree: the odd things scraped data and careless hands produce ----------------------

def noise_photo(seed: int, size: tuple[int, int] = (120, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def hostile_tree(raw: Path, outside: Path) -> dict[str, str]:
    """data/raw/{trainval,test} with the odd things scraped data and careless hands produce. Returns
    {kind: file} for the hostile ones (relative to raw)."""
    train, val, test = raw / "trainval/Train", raw / "trainval/Test", raw / "test/faces"
    for folder, seeds in ((train / "Female", 0), (train / "Male", 10), (val / "Female", 20), (val / "Male", 30),
                          (test / "woman", 40), (test / "man", 50)):
        for i in range(3):
            write(folder / f"img{i}.jpg", jpeg(noise_photo(seeds + i)))
    (outside / "secret.jpg").write_bytes(jpeg(noise_photo(99)))
    kinds = {
        "case-variant class folder": write(train / "female" / "lower.jpg", jpeg(noise_photo(60))),
        "unknown folder": write(train / "Other" / "who.jpg", jpeg(noise_photo(61))),
        "file beside the class folders": write(train / "stray.jpg", jpeg(noise_photo(62))),
        "hidden folder": write(train / "Male" / ".ipynb_checkpoints" / "img0-checkpoint.jpg", jpeg(noise_photo(63))),
        "empty file": write(train / "Male" / "empty.jpg", b""),
        "truncated JPEG": write(train / "Male" / "cut.jpg", jpeg(noise_photo(64))[:300]),
        "text with an image name": write(train / "Male" / "notes.png", b"hello, not a PNG"),
        "Thumbs.db": write(train / "Female" / "Thumbs.db", b"\x00" * 64),
        ".DS_Store": write(train / "Female" / ".DS_Store", b"\x00" * 64),
        "upper-case extension": write(train / "Female" / "LOUD.JPG", jpeg(noise_photo(65))),
        "unicode and spaces": write(train / "Female" / "żółw é 1.jpg", jpeg(noise_photo(66))),
        "long nested name": write(train / "Female" / ("a" * 120) / ("b" * 120) / ("c" * 100 + ".jpg"), jpeg(noise_photo(67))),
        "16-bit PNG": write(train / "Male" / "deep.png", png_bytes(Image.fromarray(
            (np.tile(np.linspace(0, 65535, 120), (120, 1))).astype(np.uint16)))),
        "CMYK JPEG": write(train / "Male" / "cmyk.jpg", jpeg(noise_photo(68).convert("CMYK"))),
        "palette with transparency": write(train / "Female" / "pal.png", png_bytes(noise_photo(69).convert("P"), transparency=0)),
        "grey with alpha": write(train / "Female" / "la.png", png_bytes(noise_photo(70).convert("LA"))),
        "huge declared size": write(train / "Male" / "bomb.png", png_bytes(Image.new("L", (6000, 5000)))),
        "same picture in train and test": write(train / "Male" / "leak.jpg", (test / "man" / "img0.jpg").read_bytes()),
        "directory named like an image": (train / "Male" / "folder.jpg"),
    }
    kinds["directory named like an image"].mkdir()
    write(kinds["directory named like an image"] / "inner.jpg", jpeg(noise_photo(71)))
    links = {
        "link out of data/raw": (train / "Male" / "escape.jpg", outside / "secret.jpg"),
        "broken link": (train / "Male" / "gone.jpg", outside / "nothing.jpg"),
        "link loop": (train / "Male" / "loop", train / "Male"),
        "link to a folder outside": (train / "Female" / "elsewhere", outside),
    }
    for kind, (link, target) in links.items():
        os.symlink(target, link)
        kinds[kind] = link
    return {kind: str(path.relative_to(raw)) for kind, path in kinds.items()}


def files_under_split_folders(raw: Path) -> list[Path]:
    """Every file and every link under the three split folders, links not followed."""
    found = []
    for folder in (raw / "trainval/Train", raw / "trainval/Test", raw / "test/faces"):
        for current, folders, files in os.walk(folder):
            found += [Path(current) / name for name in files]
            found += [Path(current) / name for name in folders if (Path(current) / name).is_symlink()]
    return found




# --- a tiny copy of the project, for end-to-end tests (real git, DVC, TensorFlow) -----------------

PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots", "faces",
                 "stages"]
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def run(args: list[str], cwd: Path, timeout: int = 900, env: dict[str, str] | None = None) -> str:
    """Run a command with the test's Python environment first on PATH; return its output."""
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def set_params(project: Path, changes: dict[str, object]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        section = params
        for key in parents:
            section = section[key]
        section[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# Small enough for seconds per stage, large enough that every model learns something.
TINY_PARAMS = {
    "download.sample.train_per_class": 60,
    "download.sample.val_per_class": 20,
    "download.sample.unlabeled": 2,
    "download.sample.test_images": 50,
    "train.baseline.epochs": 1,
    "train.baseline.batch_size": 16,
    "train.improved.epochs": 2,
    "train.improved.filters": [8, 16],
    "train.transfer.epochs": 2,
    "train.transfer.weights": "none",   # random VGG16: the same code path, no weights file
    "train.transfer.head_units": [16],
    "tfrecords.shard_size": 50,
    "export.latency_images": 4,
}


def make_tiny_project(project: Path) -> Path:
    """A fresh git + DVC copy of the project's code in `project`, set up for a tiny, fast run
    (TINY_PARAMS), committed."""
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)
    set_params(project, TINY_PARAMS)
    if (project / plots_template.TEMPLATE_PATH).is_file():    # the offline plots page, as make env sets it up
        plots_template.use_page_in_this_clone(project / plots_template.DVC_DIR)
    run(["git", "init", "-q"], project)
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "project"], project)
    return project


def record_explainer_thresholds(monkeypatch) -> list:
    """Swap heatmaps.Explainer for a subclass that records the threshold each one is made with; the list."""
    from stages.analysis import heatmaps

    thresholds = []

    class Recording(heatmaps.Explainer):
        def __init__(self, *args, **options):
            thresholds.append(options.get("threshold"))
            super().__init__(*args, **options)

    monkeypatch.setattr(heatmaps, "Explainer", Recording)
    return thresholds


# --- your own data (download.source: own) ------------------------------------------------------------

def write_own_faces(root: Path, layout: str, per_class: int = 12, seed: int = 7) -> Path:
    """A folder of labelled faces as a user would bring it: layout "classes" (female/, male/), "splits"
    (train/ and val/, each with female/ and male/; no test/) or "csv" (img/*.jpg listed in labels.csv, every
    other row with split train, each with the face's skin-tone group)."""
    from stages.images.offline_sample import TONE_GROUPS, TRAINVAL_STUDIO, draw_face

    rows = ["path,label,split,group"]
    for label in ("female", "male"):
        for index in range(per_class):
            traits: dict = {}
            image = draw_face(np.random.default_rng([seed, index, label == "male"]), label.capitalize(),
                              TRAINVAL_STUDIO, traits)
            if layout == "classes":
                path = root / label / f"{index:03d}.jpg"
            elif layout == "splits":
                path = root / ("train" if index < per_class * 0.7 else "val") / label / f"{index:03d}.jpg"
            else:
                path = root / "img" / f"{label}_{index:03d}.jpg"
                rows.append(f"img/{path.name},{label},{'train' if index % 2 else ''},"
                            f"{TONE_GROUPS[traits['skin_tone']]}")
            write(path, jpeg(image, quality=90))
    if layout == "csv":
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
