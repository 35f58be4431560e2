"""The structure docs/architecture.md describes holds in the code: three layers that import only downwards, no
import cycle (imports inside functions included), imports at the top unless a comment says why not, and every
path, module and command the page names exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ("backbone", "tasks", "demos")  # each may import only those before it
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the three layers."""
    out = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> list[tuple[ast.stmt, str]]:
    """(import statement, project module it imports) for every import anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        out += [(node, t) for t in targets if t in known and t != name]
    return out


def test_layers_import_only_downwards_and_nothing_imports_in_a_circle():
    known = modules()
    graph = {name: {target for _, target in imported(name, path, known)} for name, path in known.items()}
    for name, targets in graph.items():
        rank = LAYERS.index(name.split(".")[0])
        upward = sorted(t for t in targets if LAYERS.index(t.split(".")[0]) > rank)
        assert not upward, f"{name} imports a layer above it: {upward}"
    # a cycle: a module that can reach itself (depth-first search, colours white / grey / black)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_imports_are_at_the_top_unless_a_comment_says_why():
    """An import inside a function (an optional or heavy dependency, or the sandbox's child) carries a comment
    on its line or the line before it that says why it is there."""
    unexplained = []
    for path in modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        nearby = lines[inner.lineno - 2: inner.end_lineno]
                        if not any("#" in line for line in nearby):
                            unexplained.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not unexplained, f"imports inside functions without a reason: {unexplained}"


def named_in_architecture() -> tuple[set[str], set[str], set[str]]:
    """(paths, dotted names, gptsuite commands) that docs/architecture.md names in backticks."""
    text = re.sub(r"^```.*?^```", "", ARCHITECTURE.read_text(encoding="utf-8"), flags=re.S | re.M)  # no fences
    spans = [s for s in re.findall(r"`([^`]+)`", text)
             if "summarisation" not in s.lower()]  # "Adding a task" walks through a task that does not exist
    paths = {s for s in spans if re.fullmatch(r"(backbone|tasks|demos|docs|configs|benchmarks|tests)/[\w./-]*", s)
             and "<" not in s}
    dotted = {s for s in spans if re.fullmatch(r"(backbone|tasks|demos)(\.\w+)+", s)}
    commands = {m for s in spans for m in re.findall(r"^gptsuite (\w+)", s)}
    return paths, dotted, commands


def test_every_path_module_and_command_the_architecture_page_names_exists():
    from tasks.cli import build_parser

    paths, dotted, commands = named_in_architecture()
    assert len(paths) > 40 and len(dotted) > 5 and len(commands) > 10  # the page names them: the test reads them
    assert not [p for p in paths if not (ROOT / p.split(" ")[0]).exists()], "paths the page names that do not exist"
    for name in sorted(dotted):  # a module, or an attribute of one
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attribute in parts[cut:]:
                assert hasattr(obj, attribute), f"docs/architecture.md names {name}: no {attribute}"
                obj = getattr(obj, attribute)
            break
        else:
            pytest.fail(f"docs/architecture.md names {name}, which is not a module")
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert sorted(commands - set(subcommands)) == []


def test_every_module_is_on_the_architecture_page_map():
    """The page's module table lists every module file (packages' __init__ aside), so a new file is placed."""
    paths, _, _ = named_in_architecture()
    listed = {p for p in paths if p.endswith(".py")}
    folders = {p.rstrip("/") for p in paths if p.endswith("/")}
    missing = []
    for path in modules().values():
        rel = path.relative_to(ROOT).as_posix()
        if path.name == "__init__.py" or rel in listed or any(rel.startswith(f + "/") for f in folders):
            continue
        if path.name in ("module.py", "data.py", "baselines.py") and path.parent.parent.name == "tasks":
            continue  # a task package's usual three files: the "Adding a task" section's shape
        missing.append(rel)
    assert not missing, f"modules docs/architecture.md does not place: {missing}"
