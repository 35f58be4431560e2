"""Retrieval over the training pairs: Okapi BM25 on the source side.

It serves twice: the translator's retrieved demonstrations (the k training pairs whose sources are most like
the one to translate, put in the prompt) and the translation-memory baseline (the target of the single most
similar training source, returned as the translation).

BM25 score of document d for query q, over the query's distinct words w:
    sum_w idf(w) * f(w, d) * (k1 + 1) / (f(w, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(w) = ln(1 + (N - n(w) + 0.5) / (n(w) + 0.5))
with f(w, d) the count of w in d, n(w) the documents holding w, N the documents, avgdl their mean length.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from backbone.text import words_without_punctuation


class BM25:
    """An inverted index of `documents`; top(query, k) -> the indices of the k best-scoring documents."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75):
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self.documents = list(documents)
        tokenized = [words_without_punctuation(d) for d in self.documents]
        self.lengths = [len(t) for t in tokenized]
        n_docs, avgdl = len(tokenized), max(sum(self.lengths) / len(tokenized), 1e-9)
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)  # word -> (doc, its term weight)
        for i, tokens in enumerate(tokenized):
            norm = k1 * (1 - b + b * self.lengths[i] / avgdl)
            for word, f in Counter(tokens).items():
                self.postings[word].append((i, f * (k1 + 1) / (f + norm)))
        self.idf = {w: math.log(1 + (n_docs - len(p) + 0.5) / (len(p) + 0.5)) for w, p in self.postings.items()}

    def top(self, query: str, k: int, skip_text: str | None = None) -> list[int]:
        """The k best documents, best first (ties: the earlier document); documents equal to `skip_text`
        are left out (a training pair must not be its own demonstration)."""
        scores: Counter = Counter()
        for word in set(words_without_punctuation(query)):
            idf = self.idf.get(word)
            if idf is None:
                continue
            for doc, weight in self.postings[word]:
                scores[doc] += idf * weight
        skip = skip_text.strip() if skip_text is not None else None
        if skip is not None:
            scores = Counter({d: v for d, v in scores.items() if self.documents[d].strip() != skip})
        return [doc for doc, _ in heapq.nsmallest(k, scores.items(), key=lambda item: (-item[1], item[0]))]


def translation_memory(train_sources: Sequence[str], train_targets: Sequence[str], sources: Sequence[str]) -> list[str]:
    """Baseline: for each source, the target of the most similar training source (an empty string when no
    word is shared)."""
    index = BM25(train_sources)
    out = []
    for source in sources:
        best = index.top(source, 1)
        out.append(train_targets[best[0]] if best else "")
    return out
