"""Render the measured figures in README.md and docs/*.md from the committed results files.

    python -m docs.render            # make docs: rewrite README.md and docs/*.md in place
    python -m docs.render --check    # list every figure that differs from its results file; exit 1 if any

A figure sits between two HTML comments, which GitHub does not show; the text between them is
what the renderer writes:

    inline:  <!--fig EXPR|FORMAT-->VALUE<!--/fig-->
    block:   <!--block NAME [KEY=VALUE ...]-->   (own line; the lines up to <!--/block--> are generated)

EXPR is a source (SOURCES) followed by `.key`, `["key"]` or `[index]` steps, with + - * / and the
functions in FUNCTIONS; a list of records takes the record's name (its "stage", "id" or "command")
as key: `bench1.stages["train@improved"].wall_s / 60`. FORMAT is a Python format spec (`.1f`,
`,`, `.0e`); strings need none. NAME is one of BLOCKS. An inline marker never starts a line
(GitHub would read the line as raw HTML). docs/development.md says how to add a figure.
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
from typing import Any, Callable

from docs.blocks import block, shows
from docs.sources import ROOT, RenderError, Sources, cpu, date, disk, formatted, step, took

FIG = re.compile(r"<!--fig (?P<expr>.*?)-->(?P<value>.*?)<!--/fig-->")
BLOCK = re.compile(r"^<!--block (?P<name>[\w-]+)(?P<args>[^>\n]*)-->\n(?P<body>.*?)^<!--/block-->$", re.S | re.M)


def documents(root: Path = ROOT) -> list[Path]:
    """The files the renderer owns: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "cpu": lambda sources, record: cpu(record),
    "took": took,
    "disk": disk,
    "date": lambda sources, record: date(record),
    "shows": lambda sources, entry: shows(entry),
}


# ---------------------------------------------------------------- expressions

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
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
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and not node.keywords):
            return FUNCTIONS[node.func.id](sources, *map(value, node.args))
        raise RenderError(f"not allowed in a figure: {ast.unparse(node)}")

    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as error:
        raise RenderError(f"cannot read {expr!r}: {error.msg}") from None
    return value(tree.body)


def figure(marker: str, sources: Sources) -> str:
    """The text an inline marker's expression and format give. A value read as it stands needs no
    format (it prints as written in its file, less trailing zeros); a computed one does."""
    expr, _, spec = marker.rpartition("|") if "|" in marker else (marker, "", "")
    value = evaluate(expr, sources)
    computed = any(isinstance(node, ast.BinOp) for node in ast.walk(ast.parse(expr.strip(), mode="eval")))
    return formatted(value, spec.strip() or ("" if not computed else "needs a format"))


# ---------------------------------------------------------------- documents

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
            diff = difflib.unified_diff(self.found.splitlines(), self.expected.splitlines(), "doc", "results", lineterm="", n=0)
            return f"{self.path}:{self.line}: {self.marker} differs:\n  " + "\n  ".join(list(diff)[2:])
        return f"{self.path}:{self.line}: {self.marker}: the doc says {self.found!r}, the results give {self.expected!r}"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def render_text(text: str, sources: Sources, path: str = "<text>") -> tuple[str, list[Difference]]:
    """text with every marker rendered, and the markers whose text changed (or failed)."""
    differences: list[Difference] = []
    out: list[str] = []

    def inline(chunk: str, start: int) -> str:
        def replace(match: re.Match) -> str:
            line, marker = _line(text, start + match.start()), f"<!--fig {match['expr']}-->"
            line_start = text.rfind("\n", 0, start + match.start()) + 1
            try:
                if not text[line_start:start + match.start()].strip():
                    raise RenderError("an inline figure must not start a line (GitHub reads that line as raw HTML)")
                if "--" in match["expr"]:
                    raise RenderError("'--' cannot stand inside an HTML comment")
                value = figure(match["expr"], sources)
            except RenderError as error:
                differences.append(Difference(path, line, marker, match["value"], f"error: {error}"))
                return match[0]
            if value != match["value"]:
                differences.append(Difference(path, line, marker, match["value"], value))
            return f"<!--fig {match['expr']}-->{value}<!--/fig-->"

        return FIG.sub(replace, chunk)

    position = 0
    for match in BLOCK.finditer(text):
        out.append(inline(text[position:match.start()], position))
        line, marker = _line(text, match.start()), f"<!--block {match['name']}{match['args']}-->"
        try:
            body = block(match["name"], match["args"], sources)
        except RenderError as error:
            differences.append(Difference(path, line, marker, "", f"error: {error}"))
            body = match["body"]
        if body != match["body"]:
            differences.append(Difference(path, line, marker, match["body"].strip("\n"), body.strip("\n")))
        out.append(f"<!--block {match['name']}{match['args']}-->\n{body}<!--/block-->")
        position = match.end()
    out.append(inline(text[position:], position))
    return "".join(out), differences


def check(paths: list[Path] | None = None, sources: Sources | None = None) -> list[Difference]:
    """Every difference between the docs and their results files; changes nothing."""
    sources = sources or Sources()
    found: list[Difference] = []
    for path in paths or documents():
        found += render_text(path.read_text(), sources, _shown(path))[1]
    return found


def write(paths: list[Path] | None = None, sources: Sources | None = None) -> list[Difference]:
    """Rewrite the docs with their figures rendered; the differences it fixed, or the errors it could not."""
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
    parser.add_argument("--check", action="store_true", help="list every difference, exit 1 if any; change nothing")
    parser.add_argument("paths", nargs="*", type=Path, help="documents (default: README.md and docs/*.md)")
    args = parser.parse_args(argv)
    if args.check:
        differences = check(args.paths or None)
        for difference in differences:
            print(difference)
        if differences:
            print(f"{len(differences)} difference(s); `make docs` renders them from the results files", file=sys.stderr)
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
