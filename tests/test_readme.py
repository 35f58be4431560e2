"""The README: short; every `gptsuite` command it shows parses; it links only files of the repository; its
headline table is the one tasks.readme_table makes of the committed results; its set-up and test commands are
the ones .ci/run runs."""

from __future__ import annotations

import json
import re
import shlex
from argparse import ArgumentError

import pytest

from tasks.catalog import TASKS
from tasks.readme_table import RESULTS, headline_section, readme_section
from tests.helpers import ROOT

README = ROOT / "README.md"
MAX_LINES = 250
# the pages this README's split wrote; their links are held to the same rule
DOCS = ["results-and-ablations.md", "frozen-features.md", "decoding-and-quantisation.md", "applications.md",
        "sandbox.md", "precision-and-budgets.md", "training-options.md", "demo.md"]
PROGRAMS = ("gptsuite", ".venv/bin/gptsuite")
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block, backslash-continued lines joined."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, lines))
                language = None
            continue
        if language is not None:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line)
    return blocks


def readme_commands() -> list[list[str]]:
    """The argv (after the program) of every `gptsuite ...` command in the README's shell blocks: a line that
    starts with the program, or a part of an `&&` chain that does."""
    commands = []
    for language, lines in code_blocks(README.read_text()):
        if language == "python":
            continue
        for line in lines:
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not shell (the layout block's prose)
                continue
            part: list[str] = []
            for word in [*words, "&&"]:
                if word != "&&":
                    part.append(word)
                    continue
                if part and part[0] in PROGRAMS:
                    commands.append(part[1:])
                part = []
    return commands


COMMANDS = readme_commands()


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines, at most {MAX_LINES}: move the detail into docs/"


def test_readme_shows_the_essential_commands():
    shown = {" ".join(argv[:2]) for argv in COMMANDS}
    for command in ("import smollm2", "generate --backbone", "demo", "bench --preset", "classification fit",
                    "classification predict", "pretrain fit"):
        assert any(s.startswith(command) for s in shown), f"the README shows no `gptsuite {command} ...`"


def _absolute_config(argv: list[str]) -> list[str]:
    """The command with a relative --config made absolute (tests run in their own folder)."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == "--config" and not out[i + 1].startswith("/"):
            out[i + 1] = str(ROOT / out[i + 1])
    return out


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_readme_command_parses(argv, capsys):
    """The subcommand exists and its flags parse; nothing runs (files it names need not exist)."""
    command = "gptsuite " + shlex.join(argv)
    assert argv, "a bare `gptsuite`"
    name = argv[0]
    if name == "pretrain" or name in TASKS:
        allowed = LIGHTNING_SUBCOMMANDS if name == "pretrain" else (*LIGHTNING_SUBCOMMANDS, "predict")
        assert argv[1:2] and argv[1] in allowed, f"{command}: `gptsuite {name}` takes {' | '.join(allowed)}"
        if argv[1] == "predict":
            import tasks.cli

            assert name in TASKS, f"{command}: only a task has predict"
            build = getattr(tasks.cli, "build_predict_parser", None)
            assert build is not None, f"{command}: tasks.cli has no `predict` subcommand yet"
            try:
                build(name).parse_args(argv[2:])
            except SystemExit as exit_:
                pytest.fail(f"{command}: does not parse ({capsys.readouterr().err.strip()}; exit {exit_.code})")
            except ArgumentError as err:
                pytest.fail(f"{command}: does not parse ({err})")
            return
        # LightningCLI: --print_config prints the parsed config and exits 0 before anything is instantiated
        if name == "pretrain":
            from backbone.pretrain_cli import cli_main as run
        else:
            from tasks.task_cli import run_cli

            def run(args):
                return run_cli(name, args)
        try:
            run([*_absolute_config(argv[1:]), "--print_config"])
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                pytest.fail(f"{command}: does not parse ({capsys.readouterr().err.strip()}; exit {exit_.code})")
        except ArgumentError as err:
            pytest.fail(f"{command}: does not parse ({' '.join(str(err).split())})")
        else:
            pytest.fail(f"{command}: --print_config did not stop the command")
        return
    from tasks.cli import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{command}: does not parse ({capsys.readouterr().err.strip()}; exit {exit_.code})")
    except ArgumentError as err:
        pytest.fail(f"{command}: does not parse ({err})")
    assert getattr(args, "func", None) is not None, f"{command}: names no runnable subcommand"


def _links(path) -> list[str]:
    return LINK.findall(path.read_text())


def _anchors(text: str) -> set[str]:
    """GitHub's anchor for every heading of a markdown text."""
    out = set()
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{name}" for name in DOCS)])
def test_links_stay_in_the_repository(page):
    path = ROOT / page
    if not path.is_file():
        pytest.fail(f"{page} is missing")
    text = path.read_text()
    assert "http://" not in text and "https://" not in text, f"{page} links outside the repository"
    for target in _links(path):
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"{page} links outside the repository: {target}"
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.is_relative_to(ROOT), f"{page} links outside the repository: {target}"
        assert linked.exists(), f"{page} links to {target}, which is not in the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{page} links to {target}: no such heading"


def test_headline_is_generated_from_the_committed_results():
    expected = headline_section(json.loads(RESULTS.read_text()))
    assert readme_section(README.read_text()) == expected, \
        "the README's headline differs from benchmarks/results.json: run `python -m tasks.readme_table`"


def _ci_readme_commands() -> list[str]:
    """The commands .ci/run runs as the README's set-up and tests."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- README: set-up"))
    end = next(i for i, line in enumerate(lines) if line.startswith("# --- CI only"))
    return [line for line in lines[start:end] if line.strip() and not line.startswith("#")]


def test_setup_and_test_commands_are_what_ci_runs():
    ci = _ci_readme_commands()
    setup = [c for c in ci if c.startswith(("python3 -m venv", ".venv/bin/pip install"))]
    assert len(setup) == 2, ci
    shell_lines = [line for language, lines in code_blocks(README.read_text()) if language == "bash" for line in lines]
    main_job = " && ".join(setup) + " && .venv/bin/gptsuite bench --preset quick"
    assert main_job in shell_lines, f"the README's main job is not `{main_job}`"
    tests = [line for line in shell_lines if line.startswith(" && ".join(setup)) and line.endswith("pytest -q")]
    assert len(tests) == 1, "the README shows no single test command (set-up ... && .venv/bin/pytest -q)"
    for command in ci:
        assert command in tests[0], f"the README's test command lacks .ci/run's `{command}`"
