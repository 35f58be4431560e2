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


def test_top_k_and_top_p_choose_among_the_allowed_tokens(nano_model, tiny_tokenizer):
    spans = CopySpans(tiny_tokenizer, SOURCES)
    prompts = [tiny_tokenizer.encode(p, add_bos=True) for p in ("where?", "what ran?")]
    ids, mask = tiny_tokenizer.pad(prompts, side="left")
    for cfg in (GenerationConfig(max_new_tokens=6, temperature=1.0, top_k=2, seed=1),
                GenerationConfig(max_new_tokens=6, temperature=1.0, top_p=0.3, min_p=0.2, seed=2)):
        out = generate(nano_model, ids, mask, cfg.replace(eos_token_id=tiny_tokenizer.eos_id), allow_fn=spans)
        for row, source, bare in zip(out[:, ids.size(1):].tolist(), spans.sources, spans.first):
            ends = [i for i, t in enumerate(row) if t in spans.ends.tolist()]
            copied = row[: ends[0]] if ends else row  # the span, then only end tokens
            assert copied and all(t in spans.ends.tolist() for t in row[len(copied):])
            n, src = len(copied), source.tolist()
            assert any((src[j] == copied[0] or bare[j] == copied[0]) and src[j + 1:j + n] == copied[1:]
                       for j in range(len(src) - n + 1)), copied  # a token span of the source


def test_an_empty_source_can_only_end(tiny_tokenizer):
    spans = CopySpans(tiny_tokenizer, [""])
    allowed = spans(torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]))[0]
    assert set(allowed.nonzero().squeeze(1).tolist()) == set(spans.ends.tolist())


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
