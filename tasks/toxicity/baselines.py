"""The toxicity task's baselines: the classification ones, and alt-profanity-check (a maintained linear SVM
on word n-grams, trained on its authors' toxic-comment data) when it is installed (`pip install -e .[safety]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores, classification_scores
from tasks.classification.baselines import score_baselines as classification_baselines

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.classification.data import TextClassificationData


def profanity_check_scores(texts: list[str]) -> list[float] | None:
    """alt-profanity-check's P(profane) per text, or None when the package is missing."""
    try:
        from profanity_check import predict_prob  # why: optional (the `safety` extra)
    except ImportError:
        return None
    return [float(p) for p in predict_prob(list(texts))]


def score_baselines(dm: TextClassificationData) -> BaselineScores:
    """The classification baselines, plus alt-profanity-check at P >= 0.5 when it is installed."""
    out = classification_baselines(dm)
    test = dm.splits["test"]
    probs = profanity_check_scores(test[dm.text_column])
    if probs is not None:
        gold = [dm.label_index(v) for v in test[dm.label_column]]
        out["alt-profanity-check"] = classification_scores([int(p >= 0.5) for p in probs], gold, 2)
    return out
