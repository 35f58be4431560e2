"""The NER task's baseline: each word's most frequent training tag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.baselines import BaselineScores, most_frequent_tag

if TYPE_CHECKING:  # the data module only types the argument (importing it would pull in datasets)
    from tasks.ner.data import TokenTaggingData


def score_baselines(dm: TokenTaggingData) -> BaselineScores:
    """Each word's most frequent training tag."""
    train, test = dm.splits["train"], dm.splits["test"]
    tags = lambda rows: [[dm.label_index(t) for t in row] for row in rows[dm.tags_column]]  # noqa: E731
    return {"most-frequent-tag": most_frequent_tag(train[dm.tokens_column], tags(train), test[dm.tokens_column],
                                                   tags(test), dm.label_names)}
