"""`dvc plots show` / `dvc plots diff` offline: the inlined-vega page and the custom plot templates.

Real `dvc` on a small temporary git + DVC project with the repository's .dvc/config and
.dvc/plots/*.json; the rendering itself is checked with vl-convert (no browser needed).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages import plots_template
from stages.common.errors import UserError
from tests.helpers import ROOT

CUSTOM_TEMPLATES = ["confusion_counts", "roc_by_model"]
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]

CONFUSION_V1 = "actual,predicted,count\nFemale,Female,40\nFemale,Male,10\nMale,Female,5\nMale,Male,45\n"
# Two rows for one cell (summed) and the Male -> Female cell missing (imputed as 0).
CONFUSION_V2 = "actual,predicted,count\nFemale,Female,30\nFemale,Female,15\nFemale,Male,5\nMale,Male,48\n"
ROC_V1 = ("model,fpr,tpr\nbaseline,0,0\nbaseline,0.2,0.6\nbaseline,1,1\n"
          "improved,0,0\nimproved,0.1,0.8\nimproved,1,1\n")
ROC_V2 = ROC_V1 + "transfer,0,0\ntransfer,0.05,0.9\ntransfer,1,1\n"
HISTORY = "epoch,loss,val_loss\n0,0.69,0.68\n1,0.55,0.60\n2,0.45,0.55\n"

PLOTS_YAML = """\
plots:
  - confusion counted:
      template: confusion_counts
      x: predicted
      y:
        data/confusion.csv: actual
  - ROC by model:
      template: roc_by_model
      x: fpr
      y:
        data/roc.csv: tpr
      x_label: false positive rate
      y_label: true positive rate
  - learning curve:
      template: linear
      x: epoch
      y:
        data/history.csv: [loss, val_loss]
"""
TITLES = ["confusion counted", "ROC by model", "learning curve"]


def run(args: list[str], cwd: Path) -> str:
    """Run a command with the test's Python environment first on PATH; return its stdout."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return result.stdout


def configured_template(dvc_dir: Path) -> str | None:
    """plots.html_template as DVC reads it from a project's .dvc/config and .dvc/config.local (relative
    to .dvc/), or None."""
    config = configparser.ConfigParser()
    config.read([dvc_dir / "config", dvc_dir / "config.local"])
    return config.get("plots", "html_template", fallback=None)


def network_references(page: str) -> list[str]:
    """Every src/href attribute of a tag that points at http(s): what a browser would fetch."""
    tags = re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", page, re.IGNORECASE)
    return [tag for tag in tags if re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", tag, re.I)]


def vega_specs(shown: str) -> dict[str, dict]:
    """`dvc plots show/diff --json` output: each plot's filled vega-lite spec, by plot name."""
    data = json.loads(shown)["data"]
    return {name: next(item["content"] for item in items if item["type"] == "vega") for name, items in data.items()}


def svg_texts(spec: dict) -> tuple[list[str], str]:
    """The text labels of the spec rendered to SVG by vl-convert, and the SVG."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(spec, vl_version=plots_template.VEGA_LITE_VERSION)
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg), svg


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The offline page, written by the generator's command line."""
    path = tmp_path_factory.mktemp("page") / "offline.html"
    plots_template.main(["--output", str(path)])
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory, page) -> Path:
    """A git + DVC project with the repository's plots config and templates, data committed at v1."""
    project = tmp_path_factory.mktemp("plots-project")
    run(["git", "init", "-q"], project)
    run(["dvc", "init", "-q"], project)
    shutil.copy2(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    (project / ".dvc" / "plots").mkdir()
    for name in CUSTOM_TEMPLATES:
        shutil.copy2(ROOT / ".dvc" / "plots" / f"{name}.json", project / ".dvc" / "plots" / f"{name}.json")
    shutil.copy2(page, project / plots_template.TEMPLATE_PATH)
    plots_template.use_page_in_this_clone(project / ".dvc")
    (project / "data").mkdir()
    (project / "data/confusion.csv").write_text(CONFUSION_V1)
    (project / "data/roc.csv").write_text(ROC_V1)
    (project / "data/history.csv").write_text(HISTORY)
    (project / "dvc.yaml").write_text(PLOTS_YAML)
    run([*GIT, "add", "-A"], project)
    run([*GIT, "commit", "-qm", "v1"], project)
    run([*GIT, "tag", "v1"], project)
    return project


def test_the_committed_config_names_no_page_and_the_generated_files_stay_out_of_git():
    """A fresh clone has no page yet: a template named in .dvc/config would break `dvc plots show`."""
    committed = configparser.ConfigParser()
    committed.read(ROOT / ".dvc" / "config")
    assert not committed.has_option("plots", "html_template")
    if (ROOT / ".git").exists():
        for generated in (plots_template.TEMPLATE_PATH, plots_template.DVC_DIR / "config.local"):
            ignored = subprocess.run(["git", "check-ignore", "-q", str(generated)], cwd=ROOT)
            assert ignored.returncode == 0, f"{generated} is written per clone: it must be gitignored"
    for name in CUSTOM_TEMPLATES:
        template = json.loads((ROOT / ".dvc" / "plots" / f"{name}.json").read_text())
        assert template["data"] == {"values": "<DVC_METRIC_DATA>"}


def test_the_command_writes_the_page_and_points_this_clone_at_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no \.dvc/ in .*: run this in the project's folder"):
        plots_template.main([])
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    plots_template.main([])
    assert configured_template(tmp_path / ".dvc") == "plots/offline.html"
    assert "{plot_divs}" in (tmp_path / ".dvc" / "plots" / "offline.html").read_text(encoding="utf-8")
    assert "html_template" not in (tmp_path / ".dvc" / "config").read_text()


def test_the_page_inlines_vega_and_has_dvc_placeholders(page):
    text = page.read_text(encoding="utf-8")
    assert plots_template.PLOTS_PLACEHOLDER in text and "{refresh_tag}" in text
    assert "{scripts}" not in text  # where DVC would put its CDN <script src=...> tags
    assert network_references(text) == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    assert len(text) > 300_000 and "window.vegaEmbed" in text


def test_page_html_refuses_a_bundle_that_breaks_the_page():
    assert "window.vegaEmbed=1" in plots_template.page_html("window.vegaEmbed=1")
    for bad in ("vegaEmbed; '</script>'", "vegaEmbed; '{plot_divs}'", "var x = 1;"):
        with pytest.raises(ValueError):
            plots_template.page_html(bad)


@pytest.mark.e2e
def test_dvc_plots_show_works_on_a_fresh_clone_before_any_make(tmp_path):
    """Before `make` there is no offline page: DVC's own page (from the CDN) instead of DVC's error
    "HTML template has to contain '{plot_divs}'", for the repository's own plots."""
    clone = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, tracked):
        if (ROOT / relative).is_file():
            (clone / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, clone / relative)
    run(["git", "init", "-q"], clone)
    assert not (clone / plots_template.TEMPLATE_PATH).exists() and configured_template(clone / ".dvc") is None
    run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], clone)
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r"vegaEmbed\('#", page)) >= 10


@pytest.mark.e2e
def test_dvc_plots_show_writes_a_self_contained_page(project, tmp_path):
    run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], project)
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert network_references(page) == []
    assert "cdn.jsdelivr" not in page
    assert len(re.findall(r"vegaEmbed\('#", page)) == len(TITLES)
    for title in TITLES:
        assert title in page


@pytest.mark.e2e
def test_custom_templates_render_the_rows(project):
    specs = vega_specs(run(["dvc", "plots", "show", "--json"], project))
    confusion = specs["confusion counted"]
    assert {(row["actual"], row["predicted"], row["count"]) for row in confusion["data"]["values"]} == {
        ("Female", "Female", "40"), ("Female", "Male", "10"), ("Male", "Female", "5"), ("Male", "Male", "45")}
    texts, _ = svg_texts(confusion)
    assert {"40", "10", "5", "45", "predicted", "actual"} <= set(texts)

    roc = specs["ROC by model"]
    assert len(roc["data"]["values"]) == 6 and {row["model"] for row in roc["data"]["values"]} == {
        "baseline", "improved"}
    texts, svg = svg_texts(roc)
    assert {"baseline", "improved", "false positive rate", "true positive rate"} <= set(texts)
    assert svg.count('aria-roledescription="line mark"') == 2  # one line per model


@pytest.mark.e2e
def test_dvc_plots_diff_separates_revisions(project, tmp_path):
    (project / "data/confusion.csv").write_text(CONFUSION_V2)
    (project / "data/roc.csv").write_text(ROC_V2)
    try:
        specs = vega_specs(run(["dvc", "plots", "diff", "v1", "--json"], project))
        run(["dvc", "plots", "diff", "v1", "-o", str(tmp_path / "html")], project)
    finally:
        run(["git", "checkout", "-q", "--", "data"], project)
    page = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert network_references(page) == [] and len(re.findall(r"vegaEmbed\('#", page)) == len(TITLES)

    confusion = specs["confusion counted"]
    assert {row["rev"] for row in confusion["data"]["values"]} == {"v1", "workspace"}
    texts, _ = svg_texts(confusion)
    # workspace: 30 + 15 summed, the missing Male -> Female cell shown as 0; v1 as committed.
    assert {"v1", "workspace", "45", "5", "48", "0", "40", "10"} <= set(texts)

    roc = specs["ROC by model"]
    assert {(row["rev"], row["model"]) for row in roc["data"]["values"]} == {
        ("v1", "baseline"), ("v1", "improved"),
        ("workspace", "baseline"), ("workspace", "improved"), ("workspace", "transfer")}
    texts, svg = svg_texts(roc)
    assert {"v1", "workspace", "transfer"} <= set(texts)
    assert svg.count('aria-roledescription="line mark"') == 5  # one line per model and revision
