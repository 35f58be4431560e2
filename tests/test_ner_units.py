"""NER's pieces on their own: entity-level F1 against hand-counted entities, and word -> sub-token alignment."""

from __future__ import annotations

import pytest

from tasks.ner.data import align_words
from tasks.ner.module import EntityF1, merge_entities
from tasks.outputs import Entity

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
IDX = {name: i for i, name in enumerate(NAMES)}


def ids(*tags: str) -> list[int]:
    return [IDX[t] for t in tags]


def test_entity_f1_counts_whole_entities_with_both_boundaries():
    metric = EntityF1(NAMES)
    # gold: [John Smith]PER [Paris]LOC; predicted: [John]PER (wrong end) [Paris]LOC: 1 of 2 right each way
    metric.update([ids("B-PER", "O", "O", "B-LOC")], [ids("B-PER", "I-PER", "O", "B-LOC")])
    assert metric.compute() == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # a second batch: gold [Acme]ORG, predicted [Acme]ORG and a spurious [Bob]PER
    metric.update([ids("B-ORG", "O", "B-PER")], [ids("B-ORG", "O", "O")])
    # totals: 2 correct, 4 predicted, 3 gold
    assert metric.compute() == pytest.approx({"precision": 2 / 4, "recall": 2 / 3,
                                              "f1": 2 * (0.5 * 2 / 3) / (0.5 + 2 / 3)})


def test_entity_f1_wrong_type_is_a_miss_and_reset_forgets():
    metric = EntityF1(NAMES)
    metric.update([ids("B-ORG", "I-ORG")], [ids("B-PER", "I-PER")])
    assert metric.compute()["f1"] == 0.0
    metric.reset()
    metric.update([ids("B-PER", "I-PER")], [ids("B-PER", "I-PER")])
    assert metric.compute() == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_merge_entities_joins_runs_and_splits_at_type_changes():
    words = ["New", "York", "Times", "reporter", "Ann", "Lee", "met", "Bo"]
    tags = ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-PER"]
    assert merge_entities(words, tags) == [
        Entity("ORG", 0, 3, "New York Times"), Entity("PER", 4, 6, "Ann Lee"), Entity("PER", 7, 8, "Bo")]
    # an I- of another type starts a new entity (conlleval's reading of an ill-formed sequence)
    assert [e.type for e in merge_entities(["a", "b"], ["B-PER", "I-LOC"])] == ["PER", "LOC"]


def test_align_words_points_each_word_at_its_last_sub_token(tiny_tokenizer):
    words = ["The", "unbelievably", "tokenized", "words", "."]
    token_ids, ends = align_words(tiny_tokenizer, [words], max_tokens=1000)
    pieces = [tiny_tokenizer.encode((" " if i else "") + w) for i, w in enumerate(words)]
    assert token_ids[0] == [t for piece in pieces for t in piece]  # the sentence, word by word
    assert ends[0] == [sum(len(p) for p in pieces[: i + 1]) - 1 for i in range(len(words))]
    assert any(len(p) > 1 for p in pieces)  # the case that matters: a word of several sub-tokens
    for word, end, piece in zip(words, ends[0], pieces):
        assert token_ids[0][end] == piece[-1], word


def test_align_words_cuts_from_the_first_word_that_does_not_fit(tiny_tokenizer):
    words = ["a", "remarkably", "unbelievable", "a"]
    pieces = [tiny_tokenizer.encode((" " if i else "") + w) for i, w in enumerate(words)]
    budget = len(pieces[0]) + len(pieces[1]) + len(pieces[2]) - 1  # word 3 does not fit; word 4 alone would
    assert len(pieces[3]) <= len(pieces[2]) - 1
    token_ids, ends = align_words(tiny_tokenizer, [words], max_tokens=budget)
    assert ends[0][:2] == [len(pieces[0]) - 1, len(pieces[0]) + len(pieces[1]) - 1] and ends[0][2:] == [-1, -1]
    assert token_ids[0] == pieces[0] + pieces[1]


def test_align_words_keeps_sentences_apart(tiny_tokenizer):
    token_ids, ends = align_words(tiny_tokenizer, [["one", "two"], ["three"]], max_tokens=100)
    assert token_ids[1] == tiny_tokenizer.encode("three") and ends[1] == [len(token_ids[1]) - 1]
