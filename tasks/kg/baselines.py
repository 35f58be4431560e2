"""The relation task's baselines, each scored by micro F1 without "none" like the model:

    majority            "none" for every pair (micro F1 0: the floor)
    bow-logreg          bag-of-words logistic regression on the pair's text (sentence + pair)
    type signature      each pair gets the relation most often seen in training for its (head type, tail
                        type), "none" left out (with it, "none" wins everywhere): what the entity types alone
                        say, all recall and little precision
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores, bow_logreg, classification_scores, majority

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.classification.data import TextClassificationData


def signature(text: str) -> tuple[str, str]:
    """The (head type, tail type) of a pair's text ("... \\nX (PER) -> Y (ORG)")."""
    types = re.findall(r"\((\w+)\)", text.rsplit("\n", 1)[-1])
    return (types[0], types[-1]) if types else ("", "")


def score_baselines(dm: TextClassificationData) -> BaselineScores:
    """Majority, bag-of-words logistic regression and the type signature, by micro F1 without "none"."""
    train, test, n = dm.splits["train"], dm.splits["test"], len(dm.label_names)
    y_train = [dm.label_index(v) for v in train[dm.label_column]]
    y_test = [dm.label_index(v) for v in test[dm.label_column]]
    negative = dm.label_names.index("none")
    by_signature: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for text, y in zip(train[dm.text_column], y_train):
        if y != negative:
            by_signature[signature(text)][y] += 1
    pred = [by_signature[signature(t)].most_common(1)[0][0] if by_signature[signature(t)] else negative
            for t in test[dm.text_column]]
    return {"majority": majority(y_train, y_test, n, negative),
            "bow-logreg": bow_logreg(train[dm.text_column], y_train, test[dm.text_column], y_test, n,
                                     negative=negative),
            "type signature": classification_scores(pred, y_test, n, negative)}
