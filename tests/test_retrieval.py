"""BM25 retrieval over training sources and the translation-memory baseline."""

from __future__ import annotations

import math

import pytest

from tasks.translation.retrieval import BM25, translation_memory

DOCS = ["the lord is my shepherd", "in the beginning was the word", "the word was with god", "a shepherd and his sheep"]


def test_the_most_similar_document_ranks_first():
    index = BM25(DOCS)
    assert index.top("my shepherd", 2) == [0, 3]
    assert index.top("the word", 2)[0] in (1, 2) and set(index.top("the word", 2)) == {1, 2}
    assert index.top("nothing shared", 3) == []


def test_scores_follow_the_formula():
    index = BM25(DOCS, k1=1.2, b=0.75)
    avgdl = sum(len(d.split()) for d in DOCS) / len(DOCS)
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # "shepherd" is in 2 of 4 documents
    weight = dict(index.postings["shepherd"])[0]
    assert weight == pytest.approx(1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * 5 / avgdl)))
    assert index.idf["shepherd"] == pytest.approx(idf)


def test_skip_text_leaves_a_pair_out_of_its_own_demonstrations():
    index = BM25(DOCS)
    assert 0 not in index.top("the lord is my shepherd", 4, skip_text="the lord is my shepherd ")
    assert index.top("the lord is my shepherd", 1) == [0]


def test_translation_memory_returns_the_nearest_target():
    targets = ["el señor es mi pastor", "en el principio era el verbo", "el verbo era con dios", "un pastor"]
    assert translation_memory(DOCS, targets, ["my shepherd lord", "zzz"]) == ["el señor es mi pastor", ""]


def test_an_empty_pool_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        BM25([])
