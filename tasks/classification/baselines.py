"""The classification task's baselines (sentiment reads the same ones): the majority label and bag-of-words
logistic regression, trained on train and scored on test."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores, bow_logreg, majority

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.classification.data import TextClassificationData


def score_baselines(dm: TextClassificationData) -> BaselineScores:
    """The majority label and bag-of-words logistic regression, trained on train and scored on test."""
    train, test, n = dm.splits["train"], dm.splits["test"], len(dm.label_names)
    y_train = [dm.label_index(v) for v in train[dm.label_column]]
    y_test = [dm.label_index(v) for v in test[dm.label_column]]
    return {"majority": majority(y_train, y_test, n),
            "bow-logreg": bow_logreg(train[dm.text_column], y_train, test[dm.text_column], y_test, n)}
