"""Words of a text, and its normalised form: the one place that says what a "word" is.

    words                       lower-cased words, each punctuation mark a word of its own: "end." -> end, .
                                (baselines' bag of words, the generated-text statistics)
    words_without_punctuation   lower-cased ``\\w+`` runs, punctuation dropped (BM25 retrieval, the Dice lexicon)
    ascii_words                 lower-cased ``[a-z0-9]+`` runs (the n-gram hashes of decontamination and of the
                                train/eval overlap)
    normalise                   lower-cased, whitespace collapsed: what "the same text" means for exact duplicates

Three splitters, not one, because each was fixed where a number depends on it; the two beside ``words`` say
in their docstrings what would change with ``words`` in their place.
"""

from __future__ import annotations

import re

WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation split off, each mark a word: "The end." -> ["the", "end", "."]."""
    return WORD_OR_MARK.findall(text.lower())


def words_without_punctuation(text: str) -> list[str]:
    """Lower-cased ``\\w+`` runs (letters, digits, underscore in any script); punctuation is not a word.

    Kept apart from :func:`words` for BM25 (tasks.translation.retrieval) and the Dice lexicon
    (tasks.translation.lattice): a full stop or comma would become a term of every verse and an entry of the
    lexicon, changing which demonstrations are retrieved and the dictionary baselines' and lattice's BLEU.
    """
    return _WORD.findall(text.lower())


def ascii_words(text: str) -> list[str]:
    """Lower-cased runs of ASCII letters and digits: "naïve_x" -> ["na", "ve", "x"].

    Kept apart from :func:`words` for the word n-gram hashes (backbone.data.ngrams): the cached 13-gram index
    of the evaluation splits, the corpus documents it drops and the training rows the loaders drop as near
    duplicates (which fix the benchmarks' splits) were all computed over these words.
    """
    return _ASCII_WORD.findall(text.lower())


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed: what "the same text" means for exact duplicates."""
    return " ".join(text.lower().split())
