"""Training rows that repeat an evaluation row, exactly or nearly, and the near-duplicate finder behind them.

A score on a test item whose text the model was trained on measures recall, not skill, so
:func:`drop_train_overlap` removes from a training split every row whose normalised text
(:func:`backbone.text.normalise`) equals a row of an evaluation split, and with ``near`` every row that is a near
twin of one (word 8-gram Jaccard >= 0.8: the same story lightly edited). The loaders call it before any split
is used; the evaluation splits stay as they are, so a reported test set does not change. ``overlap.py``
(``gptsuite data overlap``) reports what is left.

Near duplicates are found exactly, without sampling, by prefix filtering (Chaudhuri et al. 2006; Bayardo
et al. 2007): with the shingles of every text ordered rarest first, two sets with Jaccard >= t share a
shingle among the first ``|A| - ceil(t |A|) + 1`` of each, so only pairs sharing such a prefix shingle are
compared in full. Shingles are the stable hashes of word n-grams (``ngrams.py``) over
:func:`backbone.text.ascii_words`, so the result does not depend on Python's hash seed. A text shorter than n
words is one shingle: it can only match exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from backbone.text import ascii_words, normalise

from .ngrams import whole_hash, window_hashes, word_hashes

N = 8
THRESHOLD = 0.8
TRAIN = "train"


def drop_train_overlap(splits: Mapping[str, Any], key: Callable[[dict], str], train: str = TRAIN,
                       near: bool = False) -> Any:
    """``splits`` with every training row whose normalised ``key(row)`` equals an evaluation row's dropped,
    and with ``near`` every training row that is a near twin of one (word n-gram Jaccard >= THRESHOLD: the same
    story lightly edited).

    ``splits`` maps split names to lists of records or ``datasets.Dataset`` (a DatasetDict comes back as
    one); evaluation splits are returned untouched, and ``splits`` itself when nothing is dropped.
    """
    if train not in splits:
        return splits
    held_out = [normalise(key(row)) for name, rows in splits.items() if name != train for row in rows]
    rows = splits[train]
    texts = [normalise(key(row)) for row in rows]
    # near_twins pairs each of its second argument's texts with its likeliest twin in the first: the training
    # texts go second, so every training row with a twin is found
    twins = near_twins(held_out, texts) if near and held_out else {}
    exact = set(held_out)
    keep = [i for i, text in enumerate(texts) if text not in exact and i not in twins]
    if len(keep) == len(rows):
        return splits
    kept = rows.select(keep) if hasattr(rows, "select") else [rows[i] for i in keep]
    return type(splits)({**splits, train: kept})


class Shingles(NamedTuple):
    """Distinct shingle hashes of each text, CSR-style: text i owns ``hashes[start[i]:start[i + 1]]``."""

    start: np.ndarray
    hashes: np.ndarray

    def size(self) -> np.ndarray:
        return np.diff(self.start)


def shingles(texts: Sequence[str], n: int = N) -> Shingles:
    """Sorted distinct word n-gram hashes of every text, computed over all texts at once (numpy)."""
    # word hashes text by text (no list of every word kept: SQuAD's contexts hold 11M of them)
    per_text = [word_hashes(ws) for ws in map(ascii_words, texts)]
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    ends = np.cumsum(lengths)
    ids = np.concatenate(per_text) if per_text else np.empty(0, dtype=np.uint64)
    h = window_hashes(ids, n)
    k = len(h)
    doc = np.repeat(np.arange(len(texts)), lengths)[:k]
    valid = np.arange(k) + n <= ends[doc]  # n-grams inside one text only
    short = [i for i, w in enumerate(per_text) if 0 < len(w) < n]
    doc = np.concatenate([doc[valid], np.array(short, dtype=np.int64)])
    h = np.concatenate([h[valid], np.array([whole_hash(per_text[i]) for i in short], dtype=np.uint64)])
    order = np.lexsort((h, doc))
    doc, h = doc[order], h[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (doc[1:] != doc[:-1]) | (h[1:] != h[:-1])
    doc, h = doc[first], h[first]
    return Shingles(np.searchsorted(doc, np.arange(len(texts) + 1)), h)


def _prefix(sh: Shingles, rank: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(text, shingle rank) of each text's prefix: its rarest ``s - ceil(t s) + 1`` shingles."""
    size = sh.size()
    doc = np.repeat(np.arange(len(size)), size)
    order = np.lexsort((rank, doc))
    pos = np.arange(len(doc)) - sh.start[doc[order]]
    keep = np.ceil(threshold * size - 1e-9).astype(np.int64)
    in_prefix = pos < (size - keep + 1)[doc[order]]
    return doc[order][in_prefix], rank[order][in_prefix]


def near_twins(train: Sequence[str], evals: Sequence[str], n: int = N,
               threshold: float = THRESHOLD) -> dict[int, tuple[int, float]]:
    """Eval index -> (train index, Jaccard) of its most similar training text, for every eval text with a
    training text at word n-gram Jaccard >= ``threshold``."""
    # each distinct text once: boilerplate repeated on both sides ("<unk>", ".") would pair every copy
    first_train: dict[str, int] = {}
    for i, t in enumerate(train):
        first_train.setdefault(t, i)
    distinct_evals = list(dict.fromkeys(evals))
    found = _near_distinct(list(first_train), distinct_evals, n, threshold)
    train_index = list(first_train.values())
    by_text = {distinct_evals[i]: (train_index[j], jac) for i, (j, jac) in found.items()}
    return {i: by_text[t] for i, t in enumerate(evals) if t in by_text}


def _near_distinct(train: Sequence[str], evals: Sequence[str], n: int,
                   threshold: float) -> dict[int, tuple[int, float]]:
    """:func:`near_twins` on texts that are all distinct (prefix filtering, then exact Jaccard)."""
    a, b = shingles(evals, n), shingles(train, n)
    if not len(a.hashes) or not len(b.hashes):
        return {}
    # rank of every shingle, rarest first (ties by hash): prefixes then hold rare shingles, few candidates
    uniq, inverse, counts = np.unique(np.concatenate([a.hashes, b.hashes]), return_inverse=True, return_counts=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.lexsort((uniq, counts))] = np.arange(len(uniq))
    rank = rank[inverse.reshape(-1)]
    ea, ra = _prefix(a, rank[:len(a.hashes)], threshold)
    eb, rb = _prefix(b, rank[len(a.hashes):], threshold)
    order = np.argsort(rb, kind="stable")
    eb, rb = eb[order], rb[order]
    lo, hi = np.searchsorted(rb, ra, "left"), np.searchsorted(rb, ra, "right")
    reps = hi - lo
    left = np.repeat(ea, reps)
    right = eb[np.repeat(hi - reps.cumsum(), reps) + np.arange(reps.sum())] if reps.sum() else left
    pairs = np.unique(left * len(train) + right) if len(left) else left
    return _verify(a, b, pairs // max(len(train), 1), pairs % max(len(train), 1), threshold)


def _verify(a: Shingles, b: Shingles, left: np.ndarray, right: np.ndarray,
            threshold: float) -> dict[int, tuple[int, float]]:
    """The candidate pairs' exact Jaccard; the best training twin of each eval text that reaches ``threshold``."""
    size_a, size_b = a.size(), b.size()
    best: dict[int, tuple[int, float]] = {}
    for i, j in zip(left.tolist(), right.tolist()):
        sa, sb = size_a[i], size_b[j]
        if min(sa, sb) < threshold * max(sa, sb):  # Jaccard <= min/max: too different in size
            continue
        inter = len(np.intersect1d(a.hashes[a.start[i]:a.start[i + 1]], b.hashes[b.start[j]:b.start[j + 1]],
                                   assume_unique=True))
        jac = float(inter / (sa + sb - inter))
        if jac >= threshold and jac > best.get(i, (-1, -1.0))[1]:
            best[i] = (j, jac)
    return best
