"""README.md and docs/*.md: every measured figure agrees with its committed results file (docs.render),
the README stays one screen of 120 columns, every relative link resolves, no internal tracker number
shows, and no time, memory or speed figure is written by hand outside a marker. No TensorFlow; git
only to read what is committed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from docs import render
from docs.sources import Sources, committed
from tests.helpers import GIT

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150
README_MAX_COLUMNS = 120

# A number with a time, memory or speed unit after it; a dimension such as 100×100 is not one.
UNIT = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:ms|s|sec|seconds?|min|minutes?|h|hours?|KB|kB|KiB|MB|MiB|GB|GiB|TB"
                  r"|x|×)(?![\w×])")
# Lines that quote a setting or a limit, not a measurement: (document, the words, why).
NOT_MEASUREMENTS = [
    ("docs/development.md", "stay under 3 minutes",
     "the fast tier's target, a limit the tests are kept under; its measured times are in the table below it"),
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def outside_code(text: str, inline_code: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks and generated blocks; inline code removed unless
    inline_code (then only its backticks are)."""
    lines, fenced, generated = [], False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!--block "):
            generated = True
        elif line.startswith("<!--/block-->"):
            generated = False
        elif line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not generated:
            lines.append((number, line.replace("`", "") if inline_code else re.sub(r"`[^`]*`", "", line)))
    return lines


def hand_written_figures(text: str, name: str) -> list[tuple[int, str]]:
    """Lines with a number and a time, memory or speed unit outside markers, code and the allowlist."""
    found = []
    for number, line in outside_code(text):
        line = render.FIG.sub("<figure>", line)
        for document, words, _why in NOT_MEASUREMENTS:
            if document == name:
                line = line.replace(words, "")
        if UNIT.search(line):
            found.append((number, line.strip()))
    return found


def slugs(path: Path) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for _number, line in outside_code(path.read_text(), inline_code=True):
        if line.startswith("#"):
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def broken_links(path: Path) -> list[str]:
    """Relative links in a document whose file (or heading) does not exist."""
    broken = []
    for number, line in outside_code(path.read_text()):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.name}:{number}: {target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in slugs(resolved):
                broken.append(f"{path.name}:{number}: {target}: no such heading in {resolved.name}")
    return broken


def test_every_figure_in_the_docs_agrees_with_its_results_file():
    differences = render.check()
    assert not differences, "\n".join(map(str, differences)) + "\n(make docs renders them)"


def test_the_check_reads_the_committed_results_not_a_run_of_yours(tmp_path):
    for name in ("params.yaml", "metrics/comparison.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "results"]):
        subprocess.run([*GIT, *args], cwd=tmp_path, check=True)
    comparison = tmp_path / "metrics/comparison.json"
    reference = re.search(r'"reference": "(\w+)"', comparison.read_text())[1]
    comparison.write_text(comparison.read_text().replace(f'"reference": "{reference}"', '"reference": "yours"'))
    text = f"The reference is <!--fig comparison.reference-->{reference}<!--/fig-->.\n"

    assert render.render_text(text, Sources(committed(tmp_path)))[1] == []
    assert [d.expected for d in render.render_text(text, Sources(tmp_path))[1]] == ["yours"]


def test_a_figure_changed_by_hand_is_reported_and_make_docs_puts_it_back(tmp_path):
    text = (ROOT / "docs" / "results.md").read_text()
    figure = next(match for match in render.FIG.finditer(text) if re.fullmatch(r"[\d.]+", match["value"]))
    changed = text[:figure.start("value")] + "999" + text[figure.end("value"):]
    doc = tmp_path / "results.md"
    doc.write_text(changed)

    differences = render.check([doc])

    assert len(differences) == 1
    assert differences[0].found == "999" and differences[0].expected == figure["value"]
    assert differences[0].line == text.count("\n", 0, figure.start()) + 1
    render.write([doc], Sources(committed()))
    assert doc.read_text() == text


def test_a_table_row_changed_by_hand_is_reported(tmp_path):
    text = (ROOT / "docs" / "results.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| baseline | val |"))
    doc = tmp_path / "results.md"
    doc.write_text(text.replace(row, row.replace(" | 0.", " | 1.", 1)))

    differences = render.check([doc])

    assert [difference.marker for difference in differences] == ["<!--block sample-results-->"]
    assert "| baseline | val |" in str(differences[0])


def test_a_figure_that_cannot_be_rendered_is_reported():
    text = "It took <!--fig bench1.stages.nowhere.wall_s|.0f-->31<!--/fig--> s."

    _, differences = render.render_text(text, render.Sources())

    assert len(differences) == 1 and "no record named 'nowhere'" in differences[0].expected


def test_the_readme_is_one_screen():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_fits_120_columns_outside_code_and_tables():
    wide = [f"README.md:{number}: {len(line)} columns" for number, line in
            outside_code((ROOT / "README.md").read_text(), inline_code=True)
            if len(line) > README_MAX_COLUMNS and not line.startswith("|")]
    assert not wide, "\n".join(wide)


def test_no_internal_tracker_number_shows_in_the_docs():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in render.documents()
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\b(issue|task)s? #?\d+", line, re.I)]
    assert not found, "\n".join(found)


def test_every_relative_link_in_the_docs_resolves():
    broken = [problem for path in render.documents() for problem in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_a_broken_link_is_reported(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("# Page\n\nSee [the pipeline](pipeline.md), [here](#page), [there](#nowhere).\n")
    (tmp_path / "other.md").write_text("# Other\n")

    assert broken_links(doc) == ["page.md:3: pipeline.md: no such file", "page.md:3: #nowhere: no such heading in page.md"]


def test_no_time_memory_or_speed_figure_is_written_by_hand():
    found = [f"{path.relative_to(ROOT)}:{number}: {line}" for path in render.documents()
             for number, line in hand_written_figures(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "write these through a marker (docs/development.md), or allowlist a setting:\n" + "\n".join(found)


def test_the_hand_written_figure_guard_catches_one_and_spares_markers_code_and_dimensions():
    assert hand_written_figures("The stage took 12 s here.\n", "x.md") == [(1, "The stage took 12 s here.")]
    assert hand_written_figures("Epochs are 1.8x faster.\n", "x.md")
    assert hand_written_figures("It peaked at 1.02 GiB.\n", "x.md")
    assert not hand_written_figures("It took <!--fig bench1.stages.prepare.wall_s|.0f-->31<!--/fig--> s.\n", "x.md")
    assert not hand_written_figures("```\nmake bench   # 30 min\n```\n", "x.md")
    assert not hand_written_figures("Resized to 100×100, a 3×3 map, `cmd --timeout 5s`.\n", "x.md")
    assert not hand_written_figures("The fast tier should stay under 3 minutes.\n", "docs/development.md")
