"""Every shell command that README.md, docs/*.md and the commands' --help texts show, found and checked
without running it (tests/test_commands.py; `python -m tests.commands` lists them all by kind).

Where commands are found:
- fenced code blocks: ```bash/sh/shell/zsh (every line), ```console (the lines after a `$ ` prompt),
  plain ``` or ```text (the lines that start with a command checked here, or a `$ ` prompt);
- `code spans` in the docs' prose and in the --help texts, when they start with a command's name;
- the --help texts of `facegender` and each subcommand, and of every `python -m stages|benchmarks|docs.X`.

What each is checked for (nothing runs; DVC's own code resolves the stage names):
- `dvc ...`: DVC's command line parses it; `dvc repro` and `dvc exp run` targets each name at least one
  stage (with `--glob` where the command has it); every `-S key=value` names a params.yaml key and the
  value passes params.yaml's typed loader;
- `make ...`: each target is a rule of the Makefile, each `NAME=value` a variable it uses;
- `facegender SUB ...`: the subcommand exists and its own parser takes the arguments; `facegender run`'s
  extra arguments are `dvc repro`'s, checked as above;
- `python -m X`: the module exists; the project's own (stages, benchmarks, docs) parse their arguments.
- git, pip, source, kaggle, ...: listed by kind, not checked. A command of any other kind fails unless
  its line carries the marker comment `# not run in tests: <why>`.
A word in angle brackets is a placeholder: `facegender <subcommand>` stands for every subcommand, a
stage target `train@<model>-<seed>` must match some stage as a pattern, and an argument `<seed>` (or a
usage line's `--scale S`) stands for any value the argument takes.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable, Iterator, Sequence
from unittest import mock

import yaml

from docs.render import documents
from tests.helpers import ROOT, raw_repo_params
MARK = "not run in tests"
JOBS_VARIABLE = "FACEGENDER_JOBS"     # stages/common/distribute.py: each stage's share of the cores
CHECKED = ("facegender", "dvc", "make", "python")
# Commands the test lists but does not check: the environment's tools and the shell's.
OTHERS = {"git", "pip", "pip3", "source", ".", "cd", "cp", "mv", "rm", "mkdir", "ls", "cat", "export", "curl",
          "wget", "apt-get", "apt", "sudo", "echo", "du", "df", "tar", "unzip", "chromium", "nproc", "lscpu"}
PROJECT_PACKAGES = ("stages", "benchmarks", "docs")
SHELL_LANGUAGES = {"bash", "sh", "shell", "zsh", "console", "shell-session"}
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
# GNU make's options a doc may show; those taking a value take the next word.
MAKE_FLAGS = {"-n", "--dry-run", "-k", "--keep-going", "-s", "--silent", "-B", "--always-make", "-p", "-q",
              "--question", "--no-print-directory", "-j", "--jobs"}
MAKE_FLAGS_WITH_VALUE = {"-C", "--directory", "-f", "--file", "-o", "-W", "-I"}


@dataclass(frozen=True)
class Command:
    """One command as shown: where, its words (after any NAME=value prefix), and the marker's reason."""

    where: str
    words: tuple[str, ...]
    marked: str | None = None
    env: tuple[str, ...] = ()       # the NAME=value words before it

    @property
    def kind(self) -> str:
        name = Path(self.words[0]).name if self.words else ""
        if name.startswith("python"):
            return "python"
        if name in CHECKED:
            return name
        return "other" if name in OTHERS else "unknown"


class Wrong(Exception):
    """What is wrong with a command, in one line."""

    @property
    def incomplete(self) -> bool:
        """Whether all that is wrong is a missing required argument: fine for a command named in prose."""
        return "the following arguments are required" in str(self)


# --- finding the commands --------------------------------------------------------------------------

def split_comment(line: str) -> tuple[str, str]:
    """A shell line's code and its comment (from the first # that starts a word outside quotes)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index + 1:].strip()
    return line, ""


def parse_line(text: str, where: str) -> list[Command]:
    """The commands of one shell line (`a && b; c | d` is four), each without its NAME=value prefix."""
    code, comment = split_comment(text)
    mark = re.search(re.escape(MARK) + r"\s*:?\s*(.*)", comment, re.I)
    marked = (mark.group(1) or MARK) if mark else None
    lexer = shlex.shlex(code, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as error:         # an unclosed quote
        return [Command(where, (f"<unparsable: {error}>",), marked)]
    commands, words = [], []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("&|;"):
            env = []
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                env.append(words.pop(0))
            if words:
                commands.append(Command(where, tuple(words), marked, tuple(env)))
            words = []
        else:
            words.append(token)
    return commands


def starts_a_command(text: str) -> bool:
    """Whether a line of a plain block, or a code span, starts with a command this test knows."""
    words = text.split()
    if not words:
        return False
    name = Path(words[0]).name
    if re.fullmatch(r"python3?", name):
        return len(words) > 2 and words[1] == "-m"
    return name in CHECKED or (name in OTHERS and len(words) > 1)


def block_commands(lines: list[str], language: str, first_line: int, source: str) -> list[Command]:
    """The commands of one fenced block's lines (first_line: the line number of lines[0])."""
    commands = []
    pending, start = "", first_line
    for number, line in enumerate(lines, first_line):
        prompt = re.match(r"\s*\$ (.*)", line)
        if pending:
            text = pending + " " + line.strip()
        elif prompt:
            text, start = prompt.group(1), number
        elif language in SHELL_LANGUAGES - {"console", "shell-session"}:
            text, start = line, number
        elif language in ("", "text", "txt") and starts_a_command(line):
            text, start = line, number
        else:
            continue
        code, _ = split_comment(text)
        if code.rstrip().endswith("\\"):
            pending = code.rstrip()[:-1]
            continue
        pending = ""
        if text.strip() and not text.lstrip().startswith("#"):
            commands.extend(parse_line(text, f"{source}:{start}"))
    return commands


def markdown_commands(path: Path, spans: bool = False) -> list[Command]:
    """The commands of a Markdown file's fenced blocks, or (spans=True) of its prose's code spans."""
    source = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    commands, fence, block, language, opened = [], None, [], "", 0
    paragraph, started = [], 1
    for number, line in enumerate([*lines, ""], 1):
        match = re.match(r"\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)", line)
        if fence is None and (match or not line.strip()):
            if spans:       # a paragraph ends: its code spans, which may run over a line's end
                commands.extend(span_commands("\n".join(paragraph), source, started))
            paragraph, started = [], number + 1
            if match:
                fence, language, block, opened = match.group(1), match.group(2).lower(), [], number
        elif fence is None:
            paragraph.append(line)
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            if not spans:
                commands.extend(block_commands(block, language, opened + 1, source))
            fence, started = None, number + 1
        else:
            block.append(line)
    return commands


def span_commands(text: str, source: str, first_line: int | None = None) -> list[Command]:
    """The commands in a text's `code spans`: a span that starts with a command's name and is more than
    the bare name of a tool (`dvc`, `kaggle`: a mention, not a command). With first_line, each is
    placed at its line of the source."""
    commands = []
    for match in re.finditer(r"`([^`]+)`", text):
        span = " ".join(match.group(1).split())
        if len(span.split()) > 1 and starts_a_command(span) or span == "make":
            where = source if first_line is None else f"{source}:{first_line + text.count(chr(10), 0, match.start())}"
            # A usage line's optional part, `[--port PORT]`, is checked as if given.
            commands.extend(parse_line(re.sub(r"\[(-[^\]]*)\]", r"\1", span), where))
    return commands


# --- the parsers of the project's commands, without running them ----------------------------------

_PARSE_ARGS = argparse.ArgumentParser.parse_args
_PARSE_KNOWN_ARGS = argparse.ArgumentParser.parse_known_args


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser, known: bool):
        super().__init__()
        self.parser, self.known = parser, known


def parser_of(main: Callable, argv: Sequence[str] = ()) -> tuple[argparse.ArgumentParser, bool]:
    """The parser a command's main() builds, caught when it is about to parse (nothing after runs), and
    whether it parses known arguments only (passing the rest on). TensorFlow is not imported for it."""
    from stages.common import cli

    def caught(known: bool):
        def parse(self, args=None, namespace=None):
            raise _Captured(self, known)
        return parse

    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.chdir(ROOT))
        stack.enter_context(mock.patch.object(argparse.ArgumentParser, "parse_args", caught(False)))
        stack.enter_context(mock.patch.object(argparse.ArgumentParser, "parse_known_args", caught(True)))
        stack.enter_context(mock.patch.object(cli, "quiet_tensorflow", lambda: None))
        try:
            main(list(argv)) if inspect.signature(main).parameters else main()
        except _Captured as captured:
            return captured.parser, captured.known
        except BaseException as error:
            raise Wrong(f"its main() stopped before parsing its arguments: {error!r}") from None
    raise Wrong("its main() returned without parsing any arguments")


def parse(parser: argparse.ArgumentParser, args: Sequence[str], known: bool = False):
    """(namespace, the rest) as the parser takes args, or Wrong with its error line; --help is fine. A
    placeholder (`<model>`) stands for any value its argument takes: its first choice, or its default."""
    args = list(args)
    for _ in range(len(args) + 1):
        out = io.StringIO()
        try:
            with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
                if known:
                    return _PARSE_KNOWN_ARGS(parser, args)
                return _PARSE_ARGS(parser, args), []
        except SystemExit as exit_:
            if exit_.code in (0, None):
                return None, []
            lines = [line for line in out.getvalue().splitlines() if line.strip()]
            message = lines[-1].split("error: ", 1)[-1] if lines else f"its parser exited with {exit_.code}"
        value = placeholder_value(parser, message)
        if value is None or value[0] not in args:
            raise Wrong(message)
        args[args.index(value[0])] = value[1]
    raise Wrong(message)


def placeholder_value(parser: argparse.ArgumentParser, message: str) -> tuple[str, str] | None:
    """(placeholder, a value its argument takes) when the parser's error is about a placeholder: `<seed>`,
    or a usage line's upper-case name (`--scale S`)."""
    choice = re.search(r"invalid choice: '(<[^']+>|[A-Z][A-Z0-9_]*)' \(choose from '([^']+)'", message)
    if choice:
        return choice.group(1), choice.group(2)
    typed = re.search(r"argument ([-\w/]+): invalid \w+ value: '(<[^']+>|[A-Z][A-Z0-9_]*)'", message)
    if typed:
        for option in typed.group(1).split("/"):
            action = parser._option_string_actions.get(option)
            if action is not None and action.default is not None:
                return typed.group(2), str(action.default)
    return None


def console():
    from stages import __main__ as console_module
    return console_module


def subcommand_parser(name: str) -> tuple[argparse.ArgumentParser, bool]:
    module_name = console().SUBCOMMANDS[name][0]
    if module_name is None:
        return parser_of(console().run_pipeline)
    return parser_of(importlib.import_module(f"stages.{module_name}").main)


def module_parser(module: str) -> tuple[argparse.ArgumentParser, bool] | None:
    """A project module's parser; None for one that parses no arguments (run as is)."""
    spec = importlib.util.find_spec(module)
    if spec.submodule_search_locations:         # a package: python -m runs its __main__
        module += ".__main__"
        spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text(encoding="utf-8")
    if not re.search(r"ArgumentParser|parse_run_arguments|parse_model_argument", source):
        return None
    return parser_of(importlib.import_module(module).main)


def command_modules() -> list[str]:
    """Every project module that runs as a command: `python -m stages.<name>` and its like."""
    names = []
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if path.stem not in ("__init__", "__main__") and "def main(" in text and "__main__" in text:
                names.append(f"{package}.{path.stem}")
    return names


# --- the checks -----------------------------------------------------------------------------------

def check(command: Command) -> None:
    """Raise Wrong saying what is wrong with the command; return for one that is right or not checked."""
    kind = command.kind
    if kind == "unknown":
        if command.marked is None:
            raise Wrong(f"the test cannot check a `{command.words[0]}` command: mark its line "
                        f"`# {MARK}: <why>` if it cannot be checked")
        return
    if kind == "other":
        return
    if kind == "dvc":
        return check_dvc(list(command.words[1:]), command.env)
    {"make": check_make, "facegender": check_facegender, "python": check_python}[kind](list(command.words[1:]))


def check_facegender(args: list[str]) -> None:
    """`facegender <subcommand> ...` stands for each subcommand."""
    if args and PLACEHOLDER.fullmatch(args[0]):
        for name in console().SUBCOMMANDS:
            check_facegender([name, *args[1:]])
        return
    top, _ = parser_of(console().main)
    namespace, _ = parse(top, args)
    if namespace is None:                       # --help, --version
        return
    parser, known = subcommand_parser(namespace.subcommand)
    _, rest = parse(parser, namespace.arguments, known)
    if known:                                   # facegender run: the rest goes to dvc repro
        check_dvc(["repro", *rest])


def check_python(args: list[str]) -> None:
    if args[:1] == ["-c"]:                      # a line of Python: not checked
        return
    if len(args) < 2 or args[0] != "-m":
        script = next((word for word in args if not word.startswith("-")), None)
        if script and not (ROOT / script).is_file():
            raise Wrong(f"no file {script}")
        return
    module, rest = args[1], args[2:]
    if module == "dvc":
        return check_dvc(rest)
    if module == "stages":                      # python -m stages: the facegender command
        return check_facegender(rest)
    if module == "pytest":
        for word in rest:
            if not word.startswith("-") and not (ROOT / word.split("::")[0]).exists():
                raise Wrong(f"pytest: no test file or folder {word.split('::')[0]}")
        return
    if not PLACEHOLDER.search(module):
        return check_module(module, rest)
    # python -m stages.<name> ...: right when some command module of that pattern takes the arguments.
    pattern = PLACEHOLDER.sub("*", module)
    wrongs = []
    for name in (name for name in command_modules() if fnmatch.fnmatchcase(name, pattern)):
        try:
            return check_module(name, rest)
        except Wrong as wrong:
            wrongs.append(wrong)
    if not wrongs:
        raise Wrong(f"no module matches {module}")
    raise wrongs[0]


def check_module(name: str, rest: list[str]) -> None:
    if name.split(".")[0] not in PROJECT_PACKAGES:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            raise Wrong(f"no module named {name}")
        return
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        raise Wrong(f"no module named {name}")
    parser = module_parser(name)
    if parser is None:
        if rest:
            raise Wrong(f"{name} takes no arguments")
        return
    namespace, _ = parse(parser[0], rest)
    nested = getattr(namespace, "command", None)
    if isinstance(nested, list) and nested:     # python -m benchmarks.timings -- make test
        check(Command("", tuple(nested)))


@cache
def makefile() -> tuple[frozenset[str], frozenset[str], str | None]:
    """The Makefile's rule targets, its variables (set or used), and its default target."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets, default = set(), None
    for line in text.splitlines():
        rule = re.match(r"([^\s#:=$][^:=]*?)\s*::?(?!=)", line)
        if rule and not line.startswith("\t"):
            names = rule.group(1).split()
            targets.update(names)
            default = default or next((name for name in names if not name.startswith(".")), None)
    variables = set(re.findall(r"^\s*(?:export\s+|override\s+)?([A-Za-z_]\w*)\s*[?:+!]?=", text, re.M))
    variables |= set(re.findall(r"\$[({]([A-Za-z_]\w*)[)}]", text))
    return frozenset(targets), frozenset(variables), default


def check_make(args: list[str]) -> None:
    targets, variables, default = makefile()
    words = iter(args)
    for word in words:
        if re.fullmatch(r"[A-Za-z_]\w*=.*", word):
            if word.split("=")[0] not in variables:
                raise Wrong(f"the Makefile has no variable {word.split('=')[0]}")
        elif word in MAKE_FLAGS_WITH_VALUE:
            next(words, None)
        elif word.startswith("-"):
            if word not in MAKE_FLAGS and not re.fullmatch(r"-j\d+|--jobs=\d+|-[CfoWI].+", word):
                raise Wrong(f"make has no option {word} this test knows")
        elif word not in targets:
            raise Wrong(f"the Makefile has no target {word}")
    if default is None:
        raise Wrong("the Makefile has no rule")


# --- dvc: its own parser, params.yaml's keys, and its own resolution of stage names ---------------

@cache
def dvc_parser():
    from dvc.cli.parser import get_main_parser
    return get_main_parser()


def check_dvc(args: list[str], env: Sequence[str] = ()) -> None:
    from dvc.cli import DvcParserError
    from dvc.cli.parser import DvcParser

    def error(self, message, cmd_cls=None):
        raise Wrong(f"dvc: {message}")

    out = io.StringIO()
    try:
        with mock.patch.object(DvcParser, "error", error), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            namespace = dvc_parser().parse_args(args)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return
        raise Wrong(f"dvc's parser exited with {exit_.code}: {out.getvalue().strip()[-200:]}") from None
    except DvcParserError:
        raise Wrong(f"dvc: {out.getvalue().strip()[-200:]}") from None
    jobs = getattr(namespace, "jobs", None)
    if (args[:2] in (["exp", "run"], ["queue", "start"]) and (jobs or 1) > 1
            and not any(word.startswith(f"{JOBS_VARIABLE}=") for word in env)):
        raise Wrong(f"{jobs} experiments at once, each stage taking every core: set {JOBS_VARIABLE}={jobs} "
                    f"as `make queue JOBS={jobs}` does")
    if args[:1] != ["repro"] and args[:2] != ["exp", "run"]:
        return
    raw = raw_repo_params()
    for override in getattr(namespace, "set_param", None) or []:
        raw = set_param(raw, override)
    glob = bool(getattr(namespace, "glob", False))
    for target in namespace.targets or []:
        if PLACEHOLDER.search(target):
            target, pattern = PLACEHOLDER.sub("*", target), True
        else:
            pattern = glob
        stages_named(target, pattern, yaml.safe_dump(raw, sort_keys=False))


def split_values(value: str) -> list[str]:
    """A -S value's sweep (`0.2,0.4`) as its values; commas inside brackets belong to one list value."""
    values, depth, current = [], 0, ""
    for char in value:
        depth += 1 if char in "[{(" else -1 if char in "]})" else 0
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    return [*values, current]


def set_param(raw: dict, override: str) -> dict:
    """params.yaml's content with one `dvc exp run -S` applied (its first value, for a sweep); Wrong
    when the key is no params.yaml key or a value fails params.yaml's typed loader."""
    from stages.common.config import parse_params, validate_section
    from stages.common.errors import UserError

    text = override.split(":", 1)[1] if re.match(r"[\w.-]+\.ya?ml:", override) else override
    if text.startswith("~"):
        key, value = text[1:].split("=")[0], None
    elif "=" not in text:
        raise Wrong(f"-S {override}: no `=value`")
    else:
        key, value = text.lstrip("+").split("=", 1)
    section = raw
    *parents, leaf = key.split(".")
    for part in parents:
        section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict):
            raise Wrong(f"-S {override}: params.yaml has no section {key.rsplit('.', 1)[0]}")
    if leaf not in section:
        raise Wrong(f"-S {override}: params.yaml has no key {key}")
    if value is None or PLACEHOLDER.search(value) or value in ("...", "") or re.match(r"\w+\(", value):
        return raw
    first = None
    for one in split_values(value):
        changed = yaml.safe_load(yaml.safe_dump(raw))
        target = changed
        for part in parents:
            target = target[part]
        target[leaf] = yaml.safe_load(one)
        try:
            params = parse_params(changed)
            if parents[:1] == ["train"] and len(parents) > 1:
                validate_section(shared_fit_params(), {**changed["train"][parents[1]], "seed": params.seeds[0]},
                                 f"train.{parents[1]}")
        except UserError as error:
            raise Wrong(f"-S {override}: {error}") from None
        first = first or changed
    return first


@cache
def shared_fit_params():
    """The keys every model's train.<name> section has, typed (a model's own keys are its module's, which
    imports Keras: their names are checked, their values not)."""
    from pydantic import ConfigDict

    from stages.common.config import FitParams

    class Shared(FitParams):
        model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    return Shared


_PROJECTS: dict[str, tempfile.TemporaryDirectory] = {}


def stages_named(target: str, glob: bool, params_text: str) -> list[str]:
    """The stages a `dvc repro` target names, resolved by DVC itself (the code `dvc repro` runs) in a
    scratch project holding only dvc.yaml and these params; Wrong for a target that names none."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if params_text not in _PROJECTS:
        folder = tempfile.TemporaryDirectory(prefix="facegender-commands-")
        project = Path(folder.name)
        (project / ".dvc").mkdir()
        (project / ".dvc" / "config").write_text("[core]\n    no_scm = true\n    analytics = false\n")
        (project / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
        (project / "params.yaml").write_text(params_text)
        _PROJECTS[params_text] = folder
    # DVC reads a target's dvc.yaml relative to the working directory, as on the command line.
    with contextlib.chdir(_PROJECTS[params_text].name), Repo(".") as repo:
        try:
            stages = [stage.addressing for stage in repo.stage.collect(target, glob=glob)]
        except DvcException as error:
            raise Wrong(f"dvc: {error}") from None
    if not stages:
        raise Wrong(f"dvc: no stage matches {target!r}")
    return stages


# --- the --help texts -----------------------------------------------------------------------------

def help_texts() -> Iterator[tuple[str, str]]:
    """(which help, its text) for `facegender` and each subcommand, and every project command module."""
    top, _ = parser_of(console().main)
    yield "facegender --help", top.format_help()
    for name in console().SUBCOMMANDS:
        yield f"facegender {name} --help", subcommand_parser(name)[0].format_help()
    for module in command_modules():
        parser = module_parser(module)
        if parser is not None:
            yield f"python -m {module} --help", parser[0].format_help()


def help_commands() -> list[Command]:
    commands = []
    for where, text in help_texts():
        commands.extend(span_commands(" ".join(text.split()), where))
    return commands


# --- all of it ------------------------------------------------------------------------------------

def problems(commands: Sequence[Command], prose: bool = False) -> list[str]:
    """One line per wrong command: where, the command, what is wrong. In prose (code spans, --help
    texts) a command may leave out required arguments: `facegender predict` names the command."""
    found = []
    for command in commands:
        try:
            check(command)
        except Wrong as wrong:
            if not (prose and wrong.incomplete):
                found.append(f"{command.where}: {shlex.join(command.words)}: {wrong}")
    return found


def main() -> None:
    """Print every command found, by kind, and what is wrong with each that is."""
    sources = {"code blocks": [c for path in documents() for c in markdown_commands(path)],
               "code spans in the docs' prose": [c for path in documents() for c in markdown_commands(path, True)],
               "--help texts": help_commands()}
    for title, commands in sources.items():
        print(f"== {title}: {len(commands)} commands")
        for kind in sorted({command.kind for command in commands}):
            members = [command for command in commands if command.kind == kind]
            print(f"  {kind} ({len(members)})")
            for command in members:
                note = f"  [marked: {command.marked}]" if command.marked else ""
                print(f"    {command.where}: {shlex.join(command.words)}{note}")
        wrong = problems(commands, prose=title != "code blocks")
        print(f"  wrong ({len(wrong)})" + "".join(f"\n    {line}" for line in wrong))


if __name__ == "__main__":
    main()
