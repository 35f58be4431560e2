"""Stable 64-bit hashes of words and of word n-grams: the one hashing that decontamination (``decontam.py``)
and the train/eval near-duplicate finder (``dedupe.py``) share.

A word hashes to 8 bytes of blake2b, so a hash does not depend on Python's hash seed and an index of them can be
cached on disk. An n-gram of word hashes w1 .. wn hashes to the polynomial ``(..((w1 * M + w2) * M + w3)..) * M +
wn`` modulo 2**64, with ``M`` the 64-bit FNV prime, computed with numpy over all the n-grams of a text at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

NGRAM_MULT = np.uint64(0x100000001B3)  # M: the 64-bit FNV prime
_MASK = (1 << 64) - 1


@lru_cache(maxsize=2_000_000)
def word_hash(word: str) -> int:
    """Stable 64-bit hash of one word."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def word_hashes(words: Sequence[str]) -> np.ndarray:
    """(len(words),) uint64: each word's :func:`word_hash`."""
    return np.fromiter(map(word_hash, words), dtype=np.uint64, count=len(words))


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """(max(len(ids) - n + 1, 0),) uint64: the hash of every run of ``n`` consecutive word hashes in ``ids``."""
    k = max(len(ids) - n + 1, 0)
    h = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the polynomial is meant to wrap around modulo 2**64
        for j in range(n):
            h = h * NGRAM_MULT + ids[j:j + k]
    return h


def whole_hash(ids: np.ndarray) -> int:
    """The n-gram hash of all of ``ids`` (one window as long as the text), in Python integers."""
    h = 0
    for w in ids.tolist():
        h = (h * int(NGRAM_MULT) + w) & _MASK
    return h
