"""The QA task's baseline: the sliding window (tasks.baselines.sliding_window), scored as the task scores."""

from __future__ import annotations

from tasks.baselines import BaselineScores, sliding_window
from tasks.qa.data import QAData, gold_answers, iter_rows, question_rows
from tasks.qa.metrics import SquadScore


def score_baselines(dm: QAData) -> BaselineScores:
    """The sliding window: the span whose surroundings share most words with the question."""
    test, _ = question_rows(list(iter_rows(dm.splits["test"])))  # SQuAD's dev set (QAData scores it as `test`)
    metric = SquadScore()  # scored as the task scores them: the gold texts that are not empty
    metric.update([sliding_window(r["question"], r["context"]) for r in test],
                  [[t for t, _ in gold_answers(r["answers"]) if isinstance(t, str) and t.strip()] for r in test])
    return {"sliding-window": {k: float(v) for k, v in metric.compute().items()}}
