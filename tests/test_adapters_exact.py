"""Each adapter computes exactly what its paper says, checked against an independent computation:
LoRA with a non-zero update equals the merged weight W + (alpha/r) B A; a soft prompt equals prepending real
token embeddings; a prefix equals the keys and values a real prefix leaves in the KV cache (positions too)."""

from __future__ import annotations

import copy

import pytest
import torch

from backbone.kv_cache import KVCache
from tasks.adapters import LoRA, PrefixTuning, PromptTuning


@pytest.fixture(params=["learned", "rope"])
def backbone(request, make_model):
    overrides = {} if request.param == "learned" else dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                                                            n_kv_head=2)
    return make_model(seed=3, dropout=0.0, **overrides)


def test_lora_with_a_nonzero_update_equals_the_merged_weight(backbone):
    merged, original = copy.deepcopy(backbone), copy.deepcopy(backbone)
    adapter = LoRA(rank=2, alpha=6.0, targets=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"])
    adapter.attach(backbone)
    torch.manual_seed(1)
    for layer in adapter.layers:  # B starts at zero (a no-op); make the update real
        torch.nn.init.normal_(layer.lora_B, std=0.2)
    with torch.no_grad():
        for block, merged_block in zip(backbone.transformer.h, merged.transformer.h):
            for attr_path in (("attn", "c_attn"), ("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj")):
                lora = getattr(getattr(block, attr_path[0]), attr_path[1])
                target = getattr(getattr(merged_block, attr_path[0]), attr_path[1])
                target.weight += (6.0 / 2) * lora.lora_B @ lora.lora_A  # W + (alpha / r) B A
    idx = torch.randint(0, backbone.config.vocab_size, (2, 10))
    mask = torch.ones_like(idx)
    with torch.no_grad():
        torch.testing.assert_close(backbone(idx, mask), merged(idx, mask), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(backbone(idx, mask), original(idx, mask), atol=1e-3)  # the update is real


def test_lora_trains_only_a_and_b(backbone):
    adapter = LoRA(rank=2)
    adapter.attach(backbone)
    trainable = {id(p) for p in adapter.adapter_params()}
    assert trainable == {id(p) for layer in adapter.layers for p in (layer.lora_A, layer.lora_B)}
    assert not any(p.requires_grad for p in backbone.parameters() if id(p) not in trainable)


def test_soft_prompt_equals_prepending_real_token_embeddings(backbone):
    prefix = torch.tensor([[5, 17, 42]])
    adapter = PromptTuning(n_virtual_tokens=3)
    adapter.attach(backbone)
    with torch.no_grad():
        adapter.soft_prompt.copy_(backbone.transformer.wte.weight[prefix[0]])
        idx = torch.randint(0, backbone.config.vocab_size, (2, 6))
        mask = torch.ones_like(idx)
        full = torch.cat([prefix.expand(2, -1), idx], dim=1)
        expected = backbone(full, torch.ones_like(full))[:, 3:]  # the real tokens sit at positions 3..8
        torch.testing.assert_close(adapter.encode(backbone, idx, mask), expected, atol=1e-5, rtol=1e-5)


def test_prefix_equals_the_cache_a_real_prefix_leaves(backbone):
    prefix = torch.tensor([[7, 8, 9, 10]])
    c = backbone.config
    cache = KVCache(c, batch_size=1, max_len=4)
    with torch.no_grad():
        backbone(prefix, torch.ones_like(prefix), cache=cache)  # fills (L, 1, nkv, 4, hs)
    adapter = PrefixTuning(n_virtual_tokens=4)
    adapter.attach(backbone)
    with torch.no_grad():
        adapter.prefix_k.copy_(cache.k[:, 0])
        adapter.prefix_v.copy_(cache.v[:, 0])
        idx = torch.randint(0, c.vocab_size, (2, 5))
        full = torch.cat([prefix.expand(2, -1), idx], dim=1)
        expected = backbone(full, torch.ones_like(full))[:, 4:]  # positions 4..8, attending to the prefix
        got = adapter.encode(backbone, idx, torch.ones_like(idx))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and the prefix matters: another prefix gives other hidden states
    with torch.no_grad():
        adapter.prefix_v.mul_(-1)
        assert not torch.allclose(adapter.encode(backbone, idx, torch.ones_like(idx)), expected, atol=1e-3)


def test_prefix_gradients_reach_the_learned_keys_and_values(backbone):
    adapter = PrefixTuning(n_virtual_tokens=2)
    adapter.attach(backbone)
    idx = torch.randint(0, backbone.config.vocab_size, (2, 5))
    adapter.encode(backbone, idx, torch.ones_like(idx)).sum().backward()
    assert adapter.prefix_k.grad.abs().sum() > 0 and adapter.prefix_v.grad.abs().sum() > 0
