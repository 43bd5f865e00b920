"""Render the measured figures in README.md and docs/*.md from the results files.

    python -m docs.render            # make docs: rewrite the figures from the workspace's results files
    python -m docs.render --check    # compare the docs with the committed results files; exit 1 if any differs

A figure sits between two HTML comments, which GitHub does not show; the text between them is
what the renderer writes:

    inline:  <!--fig EXPR|FORMAT-->VALUE<!--/fig-->
    block:   <!--block NAME [ARG ...]-->   (own line; the lines up to <!--/block--> are generated)

EXPR is a source (docs/sources.py SOURCES) followed by `.key`, `["key"]` or `[index]` steps, with
+ - * / and the functions cpu(record), date(record), shows(entry) and disk(path); a list of records takes a
record's name ("stage", "id", "command" or "name") as key: `bench1.stages["features"].wall_s / 60`.
FORMAT is a Python format spec (`.1f`, `,`); a value read as it stands needs none. NAME is one of
docs/blocks.py BLOCKS.

The check reads the results files as the last commit has them, so a `make run` of yours on another
CPU, which changes metrics/ slightly, does not make the docs wrong: they quote the committed run.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import operator
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docs.blocks import FUNCTIONS, NEEDS_SOURCES, block
from docs.sources import ROOT, RenderError, Sources, committed, formatted, step

FIG = re.compile(r"<!--fig (?P<expr>.*?)-->(?P<value>.*?)<!--/fig-->")
BLOCK = re.compile(r"^<!--block (?P<name>[\w-]+)(?P<args>[^>\n]*)-->\n(?P<body>.*?)^<!--/block-->$", re.S | re.M)
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def documents(root: Path = ROOT) -> list[Path]:
    """The files the renderer owns: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def evaluate(expr: str, sources: Sources) -> Any:
    """The value of a figure's expression (a small, safe subset of Python)."""
    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            return node.value
        if isinstance(node, ast.Name):
            return sources[node.id]
        if isinstance(node, ast.Attribute):
            return step(value(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            return step(value(node.value), value(node.slice))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            given = [sources] if node.func.id in NEEDS_SOURCES else []
            return FUNCTIONS[node.func.id](*given, *map(value, node.args))
        raise RenderError(f"not allowed in a figure: {ast.unparse(node)}")

    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as error:
        raise RenderError(f"cannot read {expr!r}: {error.msg}") from None
    spec_needed = any(isinstance(node, ast.BinOp) for node in ast.walk(tree))
    return value(tree.body), spec_needed


def figure(marker: str, sources: Sources) -> str:
    """The text of an inline marker: its expression's value in its format (a computed value needs one)."""
    expr, _, spec = marker.rpartition("|") if "|" in marker else (marker, "", "")
    value, computed = evaluate(expr, sources)
    return formatted(value, spec.strip() or ("needs a format" if computed else ""))


@dataclass(frozen=True)
class Difference:
    """A figure or block whose text differs from what its results file gives, or cannot be rendered."""
    path: str
    line: int
    marker: str
    found: str
    expected: str

    def __str__(self) -> str:
        if "\n" in self.found or "\n" in self.expected:
            diff = difflib.unified_diff(self.found.splitlines(), self.expected.splitlines(), "doc", "results",
                                        lineterm="", n=0)
            return f"{self.path}:{self.line}: {self.marker} differs:\n  " + "\n  ".join(list(diff)[2:])
        return f"{self.path}:{self.line}: {self.marker}: the doc says {self.found!r}, the results give {self.expected!r}"


def render_text(text: str, sources: Sources, path: str = "<text>") -> tuple[str, list[Difference]]:
    """text with every marker rendered, and the markers whose text changed (or failed)."""
    differences: list[Difference] = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def inline(match: re.Match) -> str:
        marker, start = f"<!--fig {match['expr']}-->", match.start()
        try:
            if not text[text.rfind("\n", 0, start) + 1:start].strip():
                raise RenderError("an inline figure must not start a line (GitHub reads that line as raw HTML)")
            value = figure(match["expr"], sources)
        except RenderError as error:
            differences.append(Difference(path, line_of(start), marker, match["value"], f"error: {error}"))
            return match[0]
        if value != match["value"]:
            differences.append(Difference(path, line_of(start), marker, match["value"], value))
        return f"{marker}{value}<!--/fig-->"

    def whole(match: re.Match) -> str:
        marker = f"<!--block {match['name']}{match['args']}-->"
        try:
            body = block(match["name"], match["args"], sources)
        except RenderError as error:
            differences.append(Difference(path, line_of(match.start()), marker, "", f"error: {error}"))
            return match[0]
        if body != match["body"]:
            differences.append(Difference(path, line_of(match.start()), marker, match["body"].strip("\n"),
                                          body.strip("\n")))
        return f"{marker}\n{body}<!--/block-->"

    # Blocks first, then the inline figures outside them (a block's body is generated whole).
    def figures(start: int, end: int) -> str:      # offsets stay the whole text's, for line numbers
        pieces, position = [], start
        for match in FIG.finditer(text, start, end):
            pieces += [text[position:match.start()], inline(match)]
            position = match.end()
        return "".join(pieces) + text[position:end]

    parts, position = [], 0
    for match in BLOCK.finditer(text):
        parts += [figures(position, match.start()), whole(match)]
        position = match.end()
    parts.append(figures(position, len(text)))
    return "".join(parts), differences


def check(paths: list[Path] | None = None, sources: Sources | None = None) -> list[Difference]:
    """Every difference between the docs and the committed results files; changes nothing."""
    sources = sources or Sources(committed())
    return [found for path in paths or documents() for found in render_text(path.read_text(), sources, _shown(path))[1]]


def write(paths: list[Path] | None = None, sources: Sources | None = None) -> list[Difference]:
    """Rewrite the docs from the workspace's results files; the differences it fixed, or could not."""
    sources = sources or Sources()
    found: list[Difference] = []
    for path in paths or documents():
        text, differences = render_text(path.read_text(), sources, _shown(path))
        found += differences
        if text != path.read_text():
            path.write_text(text)
    return found


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed results files; list every difference, exit 1 if any")
    parser.add_argument("paths", nargs="*", type=Path, help="documents (default: README.md and docs/*.md)")
    args = parser.parse_args(argv)
    if args.check:
        differences = check(args.paths or None)
        for difference in differences:
            print(difference)
        if differences:
            print(f"{len(differences)} difference(s) with the committed results; `make docs` renders the "
                  "workspace's, commit them together", file=sys.stderr)
        return 1 if differences else 0
    differences = write(args.paths or None)
    errors = [difference for difference in differences if difference.expected.startswith("error: ")]
    for difference in errors:
        print(difference, file=sys.stderr)
    print(f"docs: {len(differences) - len(errors)} figure(s) or block(s) rendered"
          + (f", {len(errors)} error(s)" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
