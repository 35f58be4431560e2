"""Code chosen by its own worked examples: the prompt's examples read as tests, run in the real sandbox, the
choice among completions, and chosen_pass@1 through CodeGenerator, where the hidden tests never choose."""

from __future__ import annotations

import pytest

from tasks.codegen.examples import WorkedExample, choose, worked_examples
from tasks.codegen.sandbox import check_program
from tests.test_codegen import GEN, backbone_dir, generator, score_canned  # noqa: F401 - the backbone fixture

DOCTEST = '''def add(a, b):
    """Sum of two numbers.
    >>> add(2, 3)
    5
    >>> add(
    ...     -1, 1)
    0
    >>> [add(i, i) for i in range(3)]
    [0, 2, 4]
    >>> add(n, 1)
    4
    >>> add(1, 1) # a comment, not code
    2
    """
'''

INLINE = '''def score(text, n):
    """Examples:
        score("ab", 1) => 3
        score("a#b", 2) ➞ 4
        score("", 0) == 0
        score("x", 19) ->19 - 5 - 6 = 8
        score("y", 3) = score("y", 2) + 1
        score("z", 1) returns true
    Not an example: other("a") => 1
    """
'''


def test_doctest_lines_become_examples_with_their_continuations():
    found = worked_examples(DOCTEST, "add")
    assert [e.source for e in found] == ["add(2, 3)", "add(\n-1, 1)", "[add(i, i) for i in range(3)]", "add(1, 1)"]
    assert [e.expected for e in found] == ["5", "0", "[0, 2, 4]", "2"]  # add(n, 1): n is set nowhere, dropped


def test_a_docstring_in_single_quotes_ends_the_expected_value():
    prompt = "def inc(x):\n    '''\n    >>> inc(1)\n    2'''\n"
    assert [(e.source, e.expected) for e in worked_examples(prompt, "inc")] == [("inc(1)", "2")]


def test_inline_examples_take_the_value_after_the_separator():
    found = {e.source: e.expected for e in worked_examples(INLINE, "score")}
    assert found == {'score("ab", 1)': "3", 'score("a#b", 2)': "4", 'score("", 0)': "0", 'score("x", 19)': "8",
                     'score("z", 1)': "True"}  # a formula in the function's own terms is not a value


def test_an_example_runs_as_a_check_in_the_sandbox():
    example = WorkedExample("add(2, 3)", "5")
    right = check_program(DOCTEST + "    return a + b\n", example.check_code("add"), "add", prompt=DOCTEST)
    wrong = check_program(DOCTEST + "    return a - b\n", example.check_code("add"), "add", prompt=DOCTEST)
    assert right.passed and not wrong.passed, (right.reason, wrong.reason)
    # a value shown as text compares by repr (doctest's reading); floats by value within 1e-6
    shout = "def shout(s):\n    return s.upper()\n"
    assert check_program(shout, WorkedExample("shout('a')", "'A'").check_code("shout"), "shout").passed
    assert not check_program(shout, WorkedExample("shout('a')", "'a'").check_code("shout"), "shout").passed
    half = "def half(x):\n    return x / 3 * 1.5\n"
    assert check_program(half, WorkedExample("half(1)", "0.5").check_code("half"), "half").passed


def test_choose_takes_most_examples_then_greedy_then_the_most_frequent():
    assert choose([1, 3, 2], ["a", "b", "c"], preferred=2) == 1
    assert choose([2, 2, 2], ["a", "b", "c"], preferred=2) == 2  # a tie: the greedy one
    assert choose([1, 2, 2, 2, 0], ["a", "b", "c", "c", "g"], preferred=4) == 2  # the tied text written twice
    assert choose([0, 0], [None, "x"], preferred=0) == 1  # what was never decoded is never submitted


PROBLEM = {"task_id": "t/double", "entry_point": "double",
           "prompt": 'def double(x):\n    """\n    >>> double(2)\n    4\n    >>> double(0)\n    0\n    """\n',
           # the hidden tests disagree with the docstring on purpose: the choice must follow the examples
           "test": "def check(candidate):\n    assert candidate(5) == 11\n"}
NO_EXAMPLES = {"task_id": "t/id", "entry_point": "ident", "prompt": 'def ident(x):\n    """Itself."""\n',
               "test": "def check(candidate):\n    assert candidate(3) == 3\n"}


def test_chosen_pass_at_1_follows_the_examples_never_the_hidden_tests(backbone_dir):  # noqa: F811

    task = generator(backbone_dir, num_samples=3, ks=[1], choose_by_examples=True)
    # double: samples 0 and 1 pass both examples, but only sample 1 the hidden test; sample 2 fails the examples
    # and passes the hidden test. A choice that peeked at the hidden tests would submit 1 or 2.
    canned = {PROBLEM["prompt"]: ["    return x * 2\n", "    return 2 * x + (x == 5)\n",
                                  "    return 11 if x == 5 else -1\n"],
              NO_EXAMPLES["prompt"]: ["    return x\n", "    return -x\n", "    return 0\n"]}
    greedy = {PROBLEM["prompt"]: "    return x + 2\n", NO_EXAMPLES["prompt"]: "    return x\n"}
    score_canned(task, [PROBLEM, NO_EXAMPLES], canned, greedy)
    double = next(r for r in task.scored_examples.records if r["task_id"] == "t/double")
    # the greedy x + 2 passes double(2) only; samples 0 and 1 tie on both examples: the first is submitted
    assert double["examples_passed"] == [2, 2, 0, 1] and double["chosen"] == 0
    assert double["chosen_passed"] is False and double["passed"] == 2  # two samples pass the hidden test
    ident = next(r for r in task.scored_examples.records if r["task_id"] == "t/id")
    assert ident["examples_passed"] == [0, 0, 0, 0] and ident["chosen"] == 3  # no examples: the greedy one
    scores = task.stage_metrics["test"].compute()
    assert scores["chosen_pass@1"] == pytest.approx(0.5) and scores["greedy_pass@1"] == pytest.approx(0.5)
    assert set(task.test_intervals()) == {"pass@1", "greedy_pass@1", "chosen_pass@1"}
    assert "worked examples" in task.test_report()["test/choice"]


def test_choosing_by_examples_when_the_prompt_shows_the_tests_is_refused(backbone_dir):  # noqa: F811
    from tasks.codegen.module import CodeGenerator

    with pytest.raises(ValueError, match="hidden tests"):
        CodeGenerator(backbone=str(backbone_dir), show_tests=3, choose_by_examples=True)
    with pytest.raises(ValueError, match="two completions"):
        CodeGenerator(backbone=str(backbone_dir), num_samples=1, greedy=False, choose_by_examples=True)
    task = generator(backbone_dir, num_samples=2, show_tests=3)
    assert "would choose by the answers" in task.test_report()["test/choice"]


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_their_own_examples():
    """HumanEval's worked examples, read from its prompts, agree with its canonical solutions (a handful of
    docstrings are wrong in the data set itself: HumanEval/47's median, /130's tri, /148's tuple)."""
    from backbone.data.loaders import load_benchmark
    from tasks.codegen.sandbox import run_many

    problems = list(load_benchmark("openai_humaneval")["test"])
    checks = [{"solution": p["prompt"] + p["canonical_solution"], "prompt": p["prompt"],
               "entry_point": p["entry_point"], "test_code": e.check_code(p["entry_point"]), "timeout": 5.0}
              for p in problems for e in worked_examples(p["prompt"], p["entry_point"])]
    assert sum(bool(worked_examples(p["prompt"], p["entry_point"])) for p in problems) >= 125
    results = run_many(checks)
    assert sum(r.passed for r in results) >= 0.98 * len(checks)
