"""Sampling filters (temperature, top-k, top-p, min-p, repetition penalty) and the order they apply in,
against the logits processors transformers' own `generate` builds for the same settings."""

from __future__ import annotations

import pytest
import torch

from backbone.generate import GenerationConfig, process_scores

transformers = pytest.importorskip("transformers")

SETTINGS = [
    dict(temperature=0.7, top_k=10),
    dict(temperature=1.3, top_p=0.8),
    dict(temperature=0.9, min_p=0.05),
    dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02),  # every filter at once: the order decides
    dict(temperature=1.5, top_k=5, top_p=0.5, repetition_penalty=1.4),
    dict(temperature=2.0, top_p=0.3, min_p=0.2),
]


def hf_processors(settings: dict):
    """The processor list transformers' generate() uses for these settings, in its order."""
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=64))
    config = transformers.GenerationConfig(do_sample=True, top_k=settings.get("top_k", 0), **{
        k: v for k, v in settings.items() if k != "top_k"})
    return hf._get_logits_processor(generation_config=config, input_ids_seq_length=4,
                                    logits_processor=transformers.LogitsProcessorList())


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_filters_match_transformers(settings):
    torch.manual_seed(0)
    scores = torch.randn(3, 64) * 3  # continuous values: no ties at a filter's boundary
    tokens = torch.randint(0, 64, (3, 9))
    ours = process_scores(scores.clone(), tokens, torch.ones_like(tokens), GenerationConfig(**settings))
    theirs = hf_processors(settings)(tokens, scores.clone())
    kept = torch.isfinite(ours)
    assert torch.equal(kept, torch.isfinite(theirs)), "a different set of tokens survives"
    assert 0 < kept.sum(-1).min() and (kept.sum(-1) < 64).all()  # each case really filters
    torch.testing.assert_close(ours[kept], theirs[kept])  # same scaled scores for the survivors


def test_order_matters_for_these_settings():
    """Applying min-p before top-p would keep another set here: the match above pins the order down."""
    from backbone.generate import filter_min_p, filter_top_p

    torch.manual_seed(0)
    scores = torch.randn(3, 64) * 3 / 2.0
    ours = torch.isfinite(filter_min_p(filter_top_p(scores, 0.3), 0.2))
    swapped = torch.isfinite(filter_top_p(filter_min_p(scores, 0.2), 0.3))
    assert not torch.equal(ours, swapped)
