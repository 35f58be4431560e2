"""CopySpans: constrained decoding copies a span of each row's source, whatever the model prefers."""

from __future__ import annotations

import pytest
import torch

from backbone.constraints import CopySpans
from backbone.generate import GenerationConfig, generate, generate_text

SOURCES = ["the cat sat on the mat near the door", "a dog ran to the park and back again"]


def test_spans_are_copied_by_greedy_and_sampled_decoding(nano_model, tiny_tokenizer):
    prompts = ["question: where?\nanswer:", "what ran?"]
    for cfg in (GenerationConfig(max_new_tokens=8), GenerationConfig(max_new_tokens=8, temperature=2.0, seed=3)):
        texts = generate_text(nano_model, tiny_tokenizer, prompts, cfg, allow_fn=CopySpans(tiny_tokenizer, SOURCES))
        for text, source in zip(texts, SOURCES):
            assert text.strip() and text.strip() in source
        free = generate_text(nano_model, tiny_tokenizer, prompts, cfg)  # the random model unconstrained
        assert any(t.strip() not in s for t, s in zip(free, SOURCES))


def test_allowed_tokens_follow_every_matched_start(tiny_tokenizer):
    spans = CopySpans(tiny_tokenizer, ["the cat and the dog"])
    source = spans.sources[0].tolist()
    the = source[0]
    first = spans(torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]))[0]
    assert first[source].all() and not first[spans.ends].any()  # a span starts; nothing ends before it
    after_the = spans(torch.tensor([[the]]), torch.tensor([0]))[0]
    followers = {source[j + 1] for j, t in enumerate(source[:-1]) if t == the}
    assert set(after_the.nonzero().squeeze(1).tolist()) == followers | set(spans.ends.tolist())
    stray = spans(torch.tensor([[the, the]]), torch.tensor([0]))[0]  # "the the" is nowhere in the source
    assert set(stray.nonzero().squeeze(1).tolist()) == set(spans.ends.tolist())


def test_a_span_may_start_without_its_leading_space(tiny_tokenizer):
    words = [w for w in ("the", "he", "in", "a", "of", "to", "and") if len(tiny_tokenizer.encode(w)) == 1
             and len(tiny_tokenizer.encode(" " + w)) == 1]
    assert words, "the tiny tokenizer has no word with one-token spellings with and without a space"
    word = words[0]
    bare, spaced = tiny_tokenizer.encode(word)[0], tiny_tokenizer.encode(" " + word)[0]
    spans = CopySpans(tiny_tokenizer, [f"over {word} hills"])
    assert spaced in spans.sources[0].tolist() and bare not in spans.sources[0].tolist()
    allowed = spans(torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]))[0]
    assert allowed[bare] and allowed[spaced]


def test_beam_search_refuses_a_constraint(nano_model, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer.encode("hello", add_bos=True)])
    with pytest.raises(ValueError, match="greedy or sampled"):
        generate(nano_model, ids, config=GenerationConfig(num_beams=2), allow_fn=CopySpans(tiny_tokenizer, ["x"]))
