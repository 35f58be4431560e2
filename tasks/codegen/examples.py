"""A problem's own worked examples, read from its prompt, as tests that choose among sampled completions.

HumanEval docstrings show how the function behaves, and this module reads the examples of 129 of the 164: 70
as doctest lines (`>>> f(3)` and, below, `6`), 59 more only as a call and its value on one line
(`f("abAB") => 131`, `f(3) ➞ 6`, `f(x) == y`). Bulleted or prose examples (`* f(x) => y`, `for f(x) == y`) and
Input:/Output: blocks are not read. Each example becomes a check (`def check(candidate)`) that runs in the
sandbox like the problem's hidden tests. Running every sample against its problem's examples and submitting the
one that passes most is the choice a programmer makes from the docstring alone: the hidden tests never take
part in it.

An example's expected value is compared the way doctest would (the repr of the value equals the text
shown), or, where the text is a Python expression, by value (floats within 1e-6 relative).

Where the prompt shows the hidden tests themselves (MBPP's standard prompt shows 3 of its asserts), choosing
by them would choose by the answers: such a run is not chosen (CodeGenerator refuses the pair).
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

BUILTINS = frozenset(dir(builtins))
# what may stand between a call and its value on an example line, longest first ("==>" before "==")
SEPARATORS = ("should return", "==>", "==", "=>", "->", "➞", "→", "returns", "return", "=", ":")

# the test process's comparison; it reads only the problem's own text, never the completion's
COMPARE = '''
def _same(got, shown):
    if repr(got) == shown or str(got) == shown:
        return True
    try:
        want = eval(shown, {})
    except Exception:
        return False
    if isinstance(got, float) or isinstance(want, float):
        try:
            return abs(got - want) <= 1e-6 * max(1.0, abs(want))
        except TypeError:
            return False
    return got == want
'''


@dataclass(frozen=True)
class WorkedExample:
    """One call shown in a prompt (`source`, calling the entry point by name) and the value shown for it."""

    source: str
    expected: str

    def check_code(self, entry_point: str) -> str:
        """A HumanEval-style check of this example: the entry point is called as `candidate`."""
        call = re.sub(rf"\b{re.escape(entry_point)}\s*\(", "candidate(", self.source)
        return f"{COMPARE}\n\ndef check(candidate):\n    assert _same({call}, {self.expected!r})\n"


@functools.lru_cache(maxsize=1024)
def _expression(text: str) -> ast.Expression | None:
    """The text parsed as one Python expression, or None; each text is parsed once (an example's call and
    value are read by several of the checks below)."""
    if not text.strip():
        return None
    try:
        return ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None


def _is_expression(text: str) -> bool:
    return _expression(text) is not None


def _calls(source: str, entry_point: str) -> bool:
    """Whether the expression calls the entry point (an example of some other helper is not one of ours)."""
    tree = _expression(source)
    return tree is not None and any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                                    and node.func.id == entry_point for node in ast.walk(tree))


def _stripped_lines(prompt: str) -> list[str]:
    """The prompt's lines without their indentation (examples sit in the docstring, read line by line)."""
    return [line.strip() for line in prompt.splitlines()]


def _without_comment(source: str) -> str:
    """`round(f([1, 2]), 2) # f(x) = 1 + 2x` -> `round(f([1, 2]), 2)`: the shortest cut at a `#` that parses
    (a `#` inside a string leaves a cut that does not)."""
    for m in re.finditer("#", source):
        if _is_expression(source[:m.start()]):
            return source[:m.start()].strip()
    return source


@functools.lru_cache(maxsize=64)
def _known_names(prompt: str) -> frozenset[str]:
    """The names an example may use: builtins and what the prompt defines or imports at its top level (read
    once per prompt, however many examples it shows)."""
    names = set(BUILTINS)
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return frozenset(names)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def _free_names(source: str) -> set[str]:
    """The names an expression reads without binding them itself (comprehension and lambda variables bind)."""
    tree = _expression(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.Lambda) for a in n.args.args}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound


def example(source: str, shown: str, prompt: str, entry_point: str) -> WorkedExample | None:
    """A WorkedExample where the call can run as written and the value is a plain value; else None (an example
    that names a variable it never sets, `f(n)`, or whose value is a formula, `f(n-1) + f(n-2)`)."""
    source, shown = _without_comment(source.strip()), shown.strip()
    shown = {"true": "True", "false": "False"}.get(shown, shown)  # a docstring written in another language
    if not (shown and _calls(source, entry_point)):
        return None
    if not _free_names(source) <= _known_names(prompt):
        return None
    if _is_expression(shown) and _free_names(shown) - BUILTINS:
        return None  # e.g. a formula in the function's own terms; a value shown as text stays (repr compare)
    if _calls(shown, entry_point):
        return None
    return WorkedExample(source, shown)


def doctest_examples(prompt: str, entry_point: str) -> list[WorkedExample]:
    """`>>> expression` (with `... ` continuations) and the lines below it up to a blank line, the next `>>>`
    or the docstring's end: doctest's own reading."""
    lines, found, i = _stripped_lines(prompt), [], 0
    while i < len(lines):
        if not lines[i].startswith(">>>"):
            i += 1
            continue
        source = [lines[i][3:].strip()]
        i += 1
        while i < len(lines) and lines[i].startswith("..."):
            source.append(lines[i][3:].strip())
            i += 1
        expected = []
        while i < len(lines) and lines[i] and not lines[i].startswith((">>>", '"""', "'''")):
            expected.append(lines[i].removesuffix('"""').removesuffix("'''").strip())
            i += 1
        found.append(example("\n".join(source), "\n".join(expected), prompt, entry_point))
    return [e for e in found if e is not None]


def _value_after(rest: str) -> str | None:
    """The value in what follows a call on an example line: a separator, then an expression (where the line
    works it out first, `-> 19 - 5 - 6 = 8`, the value after its last `=`)."""
    rest = rest.strip()
    for sep in SEPARATORS:
        if rest.startswith(sep):
            rest = rest[len(sep):].strip().rstrip(".,;")
            break
    else:
        return None
    if _is_expression(rest):
        return rest
    tail = rest.rsplit("= ", 1)[-1].strip()
    return tail if tail != rest and _is_expression(tail) else None


def inline_examples(prompt: str, entry_point: str) -> list[WorkedExample]:
    """Lines that begin with a call of the entry point and go on to its value: `f(2) => 4`, `f(2) ➞ 4`."""
    found = []
    for line in _stripped_lines(prompt):
        if not line.startswith(entry_point) or line.startswith(">>>"):
            continue
        # the call is the shortest prefix that parses as a call of the entry point
        for end in (m.end() for m in re.finditer(r"\)", line)):
            call = line[:end]
            if _calls(call, entry_point):
                value = _value_after(line[end:])
                if value is not None:
                    found.append(example(call, value, prompt, entry_point))
                break
    return [e for e in found if e is not None]


def worked_examples(prompt: str, entry_point: str, limit: int | None = None) -> list[WorkedExample]:
    """Every example a prompt shows for its entry point, doctest lines first, without repeats."""
    unique = list(dict.fromkeys([*doctest_examples(prompt, entry_point), *inline_examples(prompt, entry_point)]))
    return unique[:limit] if limit is not None else unique


def choose(passed: Sequence[int], completions: Sequence[str | None], preferred: int | None = None) -> int:
    """The index of the completion to submit: the one that passes most examples; among equals the preferred
    one (the greedy completion) if it is one of them, else the completion written most often (several samples
    agreeing), else the first. Completions that are None (not decoded) are never chosen while another is."""
    candidates = [i for i, text in enumerate(completions) if text is not None] or list(range(len(completions)))
    best = max(passed[i] for i in candidates)
    tied = [i for i in candidates if passed[i] == best]
    if preferred is not None and preferred in tied:
        return preferred
    votes = Counter(completions[i] for i in tied)
    return max(tied, key=lambda i: (votes[completions[i]], -i))
