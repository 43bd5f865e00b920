"""A small document model with two renderers: Markdown (figures as files) and self-contained HTML.

The report builds one list of Sections; both files come from it, so they can never disagree.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str


@dataclass
class Banner:
    """A warning the reader must not miss, shown at the very top."""
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Code:
    text: str


@dataclass
class Figure:
    """A PNG file (already written) and what it shows."""
    path: Path
    caption: str


@dataclass
class Gallery:
    """Small images in a row, each with a short caption."""
    images: list[tuple[Path, str]]
    caption: str = ""


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2


# --- numbers as text ----------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 3) -> str:
    """A metric for a table: 3 decimals, or n/a where it is undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


# --- Markdown -----------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], relative_to: Path) -> str:
    """GitHub-flavoured Markdown; figures are linked relative to the .md file's folder."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block, relative_to) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _md_block(block, relative_to: Path) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Banner):
        return [f"> **{block.text}**"]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        lines = [f"*{block.caption}*", ""] if block.caption else []
        lines.append("| " + " | ".join(_md_cell(cell) for cell in block.header) + " |")
        lines.append("|" + "|".join("---" for _ in block.header) + "|")
        lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
        return lines
    if isinstance(block, Code):
        return ["```", block.text.rstrip("\n"), "```"]
    if isinstance(block, Figure):
        return [f"![{block.caption}]({block.path.relative_to(relative_to).as_posix()})", "", f"*{block.caption}*"]
    if isinstance(block, Gallery):
        images = " ".join(f"![{caption}]({path.relative_to(relative_to).as_posix()})" for path, caption in block.images)
        captions = "; ".join(f"{index + 1}: {caption}" for index, (_, caption) in enumerate(block.images))
        return [images, "", f"*{block.caption} {captions}*".strip()]
    raise TypeError(f"unknown block {type(block).__name__}")


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; max-width: 1080px;
       margin: 2em auto; padding: 0 1.5em; color: #1f2328; line-height: 1.5; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .8em; line-height: 1.3; }
figure { margin: 1em 0; display: inline-block; vertical-align: top; }
figure.half { width: 48%; margin-right: 1%; }
figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { font-style: italic; font-size: .9em; color: #57606a; }
.banner { background: #fff8c5; border: 2px solid #d4a72c; padding: .8em 1em; font-weight: 600; margin: 1em 0; }
.gallery { display: flex; flex-wrap: wrap; gap: .6em; }
.gallery figure { width: 120px; margin: 0; }
.gallery img { width: 100px; height: 100px; image-rendering: auto; }
.gallery figcaption { font-size: .75em; font-style: normal; }
"""


def _figure_class(path: Path) -> str:
    """Square-ish figures (ROC, confusion) go two to a row; wide ones take the whole width."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return ' class="half"' if width < 1.5 * height else ""


def data_uri(path: Path) -> str:
    """A PNG file as a data: URI, so the HTML needs no other file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(title: str, sections: list[Section]) -> str:
    """One HTML file with every figure embedded; opens offline in any browser."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", f"<h1>{e(title)}</h1>"]
    toc = [f'<li><a href="#{e(s.anchor)}">{e(s.title)}</a></li>' for s in sections if s.level == 2]
    for section in sections:
        if section.level == 2 and toc is not None and section.anchor != "banner":
            parts.append('<nav><strong>Contents</strong><ol>' + "".join(toc) + "</ol></nav>")
            toc = None
        parts.append(f'<section id="{e(section.anchor)}"><h{section.level}>{e(section.title)}</h{section.level}>')
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


NUMBER = re.compile(r"^(n/a|[-+]?[\d,]*\.?\d+%?)( \((n/a|[-+]?[\d,]*\.?\d+)\))?$")


def _html_cell(text: str) -> str:
    """A table cell; numbers (with an optional bracketed difference) align right."""
    numeric = ' class="num"' if NUMBER.match(text) else ""
    return f"<td{numeric}>{html.escape(text)}</td>"


def _html_block(block) -> str:
    e = html.escape
    if isinstance(block, Paragraph):
        return f"<p>{e(block.text)}</p>"
    if isinstance(block, Banner):
        return f'<div class="banner">{e(block.text)}</div>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        caption = f"<caption>{e(block.caption)}</caption>" if block.caption else ""
        head = "<tr>" + "".join(f"<th>{e(str(cell))}</th>" for cell in block.header) + "</tr>"
        body = "".join("<tr>" + "".join(_html_cell(str(cell)) for cell in row) + "</tr>" for row in block.rows)
        return f"<table>{caption}<thead>{head}</thead><tbody>{body}</tbody></table>"
    if isinstance(block, Code):
        return f"<pre>{e(block.text)}</pre>"
    if isinstance(block, Figure):
        return (f'<figure{_figure_class(block.path)}><img src="{data_uri(block.path)}" alt="{e(block.caption)}">'
                f"<figcaption>{e(block.caption)}</figcaption></figure>")
    if isinstance(block, Gallery):
        items = "".join(f'<figure><img src="{data_uri(path)}" alt="{e(caption)}"><figcaption>{e(caption)}'
                        "</figcaption></figure>" for path, caption in block.images)
        caption = f"<p><em>{e(block.caption)}</em></p>" if block.caption else ""
        return f'{caption}<div class="gallery">{items}</div>'
    raise TypeError(f"unknown block {type(block).__name__}")
