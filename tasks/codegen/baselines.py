"""The code-generation task's baseline: the prompt alone (a function without a body) run against the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores
from tasks.codegen.module import prompt_only_pass_at_1

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.codegen.data import CodeData


def score_baselines(dm: CodeData) -> BaselineScores:
    """The prompt alone (a function without a body) run against each problem's tests."""
    return {"prompt-only": {"pass@1": prompt_only_pass_at_1(dm.splits["test"])}}
