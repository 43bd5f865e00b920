"""Every command the README, docs/ and the commands' --help show works as shown: its stage targets
resolve, its make targets and variables exist, its subcommands and flags parse, its -S keys are params
keys (tests/commands.py says how each kind is checked; `python -m tests.commands` lists them all)."""

from __future__ import annotations

import textwrap

import pytest

from tests import commands
from tests.commands import Command, Wrong, check, markdown_commands, parse_line, problems


def test_every_command_in_the_readme_and_docs_code_blocks_works():
    found = [command for path in commands.documents() for command in markdown_commands(path)]
    assert any(command.where.startswith("README.md") for command in found)
    wrong = problems(found)
    assert not wrong, "commands shown in code blocks that do not work:\n" + "\n".join(wrong)


def test_every_command_named_in_the_docs_prose_works():
    found = [command for path in commands.documents() for command in markdown_commands(path, spans=True)]
    wrong = problems(found, prose=True)
    assert not wrong, "commands named in the docs' prose that do not work:\n" + "\n".join(wrong)


def test_every_command_in_the_commands_help_works():
    found = commands.help_commands()
    assert any(command.where == "facegender run --help" for command in found)
    wrong = problems(found, prose=True)
    assert not wrong, "commands shown in --help texts that do not work:\n" + "\n".join(wrong)


def one(line: str) -> Command:
    (command,) = parse_line(line, "here")
    return command


@pytest.mark.parametrize("line, why", [
    ("dvc repro train@improved", "not found"),                      # stage names carry the seed
    ("facegender run --force train@baseline", "not found"),         # the same, through facegender run
    ("dvc repro --glob 'train@improved'", "no stage matches"),      # a glob without its wildcard
    ("dvc exp run -S train.baseline.epoch=20", "no key train.baseline.epoch"),
    ("dvc exp run -S trian.baseline.epochs=20", "no section trian.baseline"),
    ("dvc exp run -S train.baseline.epochs=many", "epochs"),          # params.yaml's typed loader refuses it
    ("dvc exp run --queue -S 'train.improved.epochs=2,lots'", "epochs"),     # each value of a sweep
    ("dvc exp run --run-all --jobs 2", "FACEGENDER_JOBS=2"),         # two jobs, each on every core
    ("dvc exp shwo", "invalid choice"),
    ("make nonesuch", "no target nonesuch"),
    ("make bench SCLAE=0.1", "no variable SCLAE"),
    ("make docs --check", "no option --check"),
    ("facegender predcit improved photo.jpg", "invalid choice"),
    ("facegender predict improved photo.jpg --no-such-flag", "unrecognized arguments"),
    ("facegender <subcommand> --no-such-flag", "unrecognized arguments"),
    ("python -m stages.nonesuch", "no module named stages.nonesuch"),
    ("python -m stages.train mine", "invalid choice: 'mine'"),
    ("python -m benchmarks.timings --installed -- make nonesuch", "no target nonesuch"),
    ("python -m pytest tests/test_nonesuch.py", "no test file"),
    ("tensorboard --logdir logs", "not run in tests"),               # a kind the test cannot check, unmarked
])
def test_a_wrong_command_is_refused_saying_why(line, why):
    with pytest.raises(Wrong, match=why.replace(".", r"\.").replace("(", r"\(")):
        check(one(line))


@pytest.mark.parametrize("line", [
    "dvc repro --glob 'train@improved-*'",
    "dvc repro train evaluate@<model>-<seed>",                      # a placeholder is a pattern
    "dvc exp run -S 'seeds=[2021,1,2,3,4]' train@improved-3",         # the override's seeds make the stage
    "dvc exp run --queue -S 'train.improved.dropout=0.2,0.4' -S 'train.improved.l2=0,0.001'",
    "FACEGENDER_JOBS=2 dvc queue start --jobs 2",
    "dvc plots diff HEAD~1",
    "make",
    "make bench SCALE=0.1",
    "make queue JOBS=2",
    "make -n run",
    "facegender run --glob 'train@baseline-*'",
    "facegender <subcommand> --help",
    "facegender predict improved photos/ --csv predictions.csv",
    "python -m stages.train <model> --seed <seed>",
    "python -m benchmarks.bench --scale S --precisions float32 float16",    # a usage line's S
    "python -m stages.<name> --help",
    "python -m benchmarks.timings --installed -- make test-fast",
    "tensorboard --logdir logs   # not run in tests: needs TensorBoard",
    "git push",
    "python -c 'import stages'",
])
def test_a_right_command_passes(line):
    check(one(line))


def test_in_prose_a_command_may_leave_out_its_required_arguments():
    named = [one("facegender predict"), one("dvc remote modify")]
    assert problems(named, prose=True) == []
    assert len(problems(named)) == 2


def test_commands_are_found_in_every_kind_of_block_and_span(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        Run `make run`, then `dvc exp run -S train.baseline.epochs=2`; `dvc` alone is a name, and a span may
        run over a line's end: `dvc repro
        --glob 'train@*'`.

        ```bash
        # a comment line
        make test   # a comment
        git add x && git commit -m 'a # not a comment' \\
            --quiet
        FACEGENDER_JOBS=2 dvc queue start --jobs 2
        ```

        ```console
        $ facegender verdict
        model  AUC
        make believe: output, not a command
        ```

        ```
        stages/     a folder, not a command
        make docs
        ```

        ```python
        make = "not shell"
        ```
        """))
    blocks = [(command.where, command.words) for command in markdown_commands(page)]
    assert blocks == [
        (f"{page}:7", ("make", "test")),
        (f"{page}:8", ("git", "add", "x")),
        (f"{page}:8", ("git", "commit", "-m", "a # not a comment", "--quiet")),
        (f"{page}:10", ("dvc", "queue", "start", "--jobs", "2")),
        (f"{page}:14", ("facegender", "verdict")),
        (f"{page}:21", ("make", "docs")),
    ]
    assert markdown_commands(page)[3].env == ("FACEGENDER_JOBS=2",)
    spans = [(command.where, command.words) for command in markdown_commands(page, spans=True)]
    assert spans == [(f"{page}:1", ("make", "run")),
                     (f"{page}:1", ("dvc", "exp", "run", "-S", "train.baseline.epochs=2")),
                     (f"{page}:2", ("dvc", "repro", "--glob", "train@*"))]


def test_the_marker_says_why_a_command_is_not_checked():
    command = one("kaggle datasets download x   # not run in tests: needs a Kaggle login")
    assert command.marked == "needs a Kaggle login"
