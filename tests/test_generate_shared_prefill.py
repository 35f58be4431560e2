"""Decoding a batch whose rows repeat a prompt (the n samples of one problem): each distinct prompt is
prefilled once and its keys and values copied to its rows (backbone.generate.distinct_prompts)."""

from __future__ import annotations

import pytest
import torch

from backbone.generate import generate


@pytest.fixture
def model(make_model):
    return make_model(seed=0, positions="rope", n_kv_head=2)


def prompt(length: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 512, (1, length), generator=torch.Generator().manual_seed(seed))


def test_repeated_prompts_run_once_and_decode_as_if_each_ran(model):
    """n samples of one prompt (and another prompt, left-padded) prefill each distinct prompt once; greedy
    rows of a repeated prompt agree with each other and with decoding without the cache."""
    short = torch.cat([torch.zeros(1, 2, dtype=torch.long), prompt(4, seed=1)], dim=1)
    ids = torch.cat([prompt(), prompt(), short, prompt()])
    mask = torch.ones_like(ids)
    mask[2, :2] = 0
    batch_sizes = []
    handle = model.register_forward_pre_hook(lambda _, args: batch_sizes.append(args[0].size(0)))
    try:
        cached = generate(model, ids, mask, max_new_tokens=8)
    finally:
        handle.remove()
    assert batch_sizes[0] == 2 and batch_sizes[1] == 4  # the prefill saw 2 distinct prompts, then 4 rows decode
    assert torch.equal(cached, generate(model, ids, mask, max_new_tokens=8, use_cache=False))
    assert torch.equal(cached[0], cached[1]) and torch.equal(cached[0], cached[3])
    sampled = generate(model, ids, mask, max_new_tokens=12, temperature=1.0, seed=5)
    assert not (torch.equal(sampled[0], sampled[1]) and torch.equal(sampled[0], sampled[3]))  # rows draw apart
