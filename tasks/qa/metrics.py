"""SQuAD v1.1 scoring, as the official evaluate-v1.1.py computes it.

Normalisation: lower-case, drop punctuation (string.punctuation), drop the articles a / an / the, collapse
whitespace. Exact match: the normalised prediction equals a normalised gold answer. F1: bag-of-tokens
overlap of the normalised texts. Each question takes the maximum over its gold answers; the corpus score
is the mean over questions, on a 0-100 scale (torchmetrics.text.SQuAD gives the same numbers).
"""

from __future__ import annotations

import re
import string
from collections import Counter

import torch
from torchmetrics import Metric

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction, each the best over the gold answers, on a 0-1 scale."""
    if not golds:
        raise ValueError("a question needs at least one gold answer to be scored")
    return max(exact_match(prediction, g) for g in golds), max(f1(prediction, g) for g in golds)


class SquadScore(Metric):
    """Mean exact match and F1 (0-100) over questions; compute() -> {"exact_match": .., "f1": ..}."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("exact", default=torch.tensor(0.0, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("overlap", default=torch.tensor(0.0, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: list[str], golds: list[list[str]]) -> None:
        if len(predictions) != len(golds):
            raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
        for prediction, answers in zip(predictions, golds):
            em, overlap = squad_scores(prediction, answers)
            self.exact += em
            self.overlap += overlap
            self.total += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.clamp(min=1).float()
        return {"exact_match": 100.0 * self.exact / n, "f1": 100.0 * self.overlap / n}
