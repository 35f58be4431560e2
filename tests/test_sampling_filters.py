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
    from backbone.logits import filter_min_p, filter_top_p

    torch.manual_seed(0)
    scores = torch.randn(3, 64) * 3 / 2.0
    ours = torch.isfinite(filter_min_p(filter_top_p(scores, 0.3), 0.2))
    swapped = torch.isfinite(filter_top_p(filter_min_p(scores, 0.2), 0.3))
    assert not torch.equal(ours, swapped)


@pytest.mark.parametrize("spread, p", [(3.0, 0.9), (3.0, 0.5), (0.05, 0.9)], ids=["peaked", "tight", "flat"])
def test_top_p_on_a_large_vocabulary_matches_transformers(spread, p):
    """A 5,000-token vocabulary: the nucleus is found among the top candidates (peaked), or needs the full
    sort when the distribution is so flat that the top 256 tokens do not reach p (flat); the same set either way."""
    from backbone.logits import TOP_P_CANDIDATES, filter_top_p

    torch.manual_seed(0)
    scores = torch.randn(4, 5000) * spread
    ours = filter_top_p(scores.clone(), p)
    theirs = transformers.TopPLogitsWarper(top_p=p)(None, scores.clone())
    assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    kept = torch.isfinite(ours).sum(-1)
    assert (kept < 5000).all()
    assert bool((kept > TOP_P_CANDIDATES).all()) == (spread < 1)  # the flat case really took the full sort


def test_draw_samples_the_filtered_distribution():
    """Draws over the few candidates left by a filter follow softmax(scores); -inf tokens never come up, and
    a row with every token alive takes the full multinomial."""
    from backbone.logits import DRAW_CANDIDATES, draw

    scores = torch.full((2, 3000), float("-inf"))
    scores[0, [7, 1500, 2999]] = torch.tensor([0.0, 1.0, 2.0])
    scores[1, [3, 4]] = torch.tensor([0.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(2, 3000)
    for _ in range(4000):
        counts[torch.arange(2), draw(scores, generator)] += 1
    assert counts[:, torch.isinf(scores).all(0)].sum() == 0 and (counts[torch.isinf(scores)] == 0).all()
    expected = torch.tensor([0.0, 1.0, 2.0]).softmax(-1)
    torch.testing.assert_close(counts[0, [7, 1500, 2999]] / 4000, expected, atol=0.03, rtol=0)
    assert abs(counts[1, 3] / 4000 - 0.5) < 0.03
    dense = torch.zeros(1, DRAW_CANDIDATES + 10)  # every token alive: the whole-vocabulary multinomial
    dense[0, 5] = 3.0
    drawn = torch.stack([draw(dense, generator) for _ in range(3000)]).squeeze(1)
    expected = float(dense.softmax(-1)[0, 5])
    assert abs(float((drawn == 5).float().mean()) - expected) < 0.03
