"""Work shared between the rows of a batch is read once: a prompt repeated by several rows (the n samples of
one problem: backbone.prefill.distinct_prompts) and the leading tokens every prompt shares (a system prompt,
the same solved examples: backbone.prefill.share_prefix); the keys and values are copied to the rows."""

from __future__ import annotations

import pytest
import torch

from backbone.decoding_model import FloatPrefill
from backbone.generate import generate
from backbone.kv_cache import is_prefill
from backbone.prefill import MIN_SHARED_PREFIX, share_prefix


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


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([(torch.arange(width) >= width - len(r)).long() for r in rows])
    return ids, mask


def shared_prompts(prefix_len: int = 12, rests: tuple[int, ...] = (3, 7, 5)) -> list[torch.Tensor]:
    prefix = prompt(prefix_len, seed=7)[0]
    return [torch.cat([prefix, prompt(n, seed=10 + i)[0]]) for i, n in enumerate(rests)]


def test_share_prefix_moves_the_common_tokens_to_the_front():
    ids, mask = left_pad(shared_prompts())
    tokens, new_mask, shared = share_prefix(ids, mask)
    assert shared >= 12  # the rests may happen to start alike too
    for row in range(ids.size(0)):
        assert tokens[row][new_mask[row].bool()].tolist() == ids[row][mask[row].bool()].tolist()  # same prompt
        assert new_mask[row, :shared].all()  # the prefix first
        assert new_mask[row, -1] == 1  # and each prompt's last token in the last column
    assert torch.equal(tokens[:, :shared], tokens[:1, :shared].expand(3, -1))


def test_share_prefix_leaves_short_or_unshared_prefixes():
    prefix = list(range(1, MIN_SHARED_PREFIX))  # one token short of worth sharing
    ids, mask = left_pad([torch.tensor(prefix + [100, 101]), torch.tensor(prefix + [200])])
    out, out_mask, shared = share_prefix(ids, mask)
    assert shared == 0 and torch.equal(out, ids) and torch.equal(out_mask, mask)
    ids, mask = left_pad([torch.tensor([*prefix, 50, 100]), torch.tensor([*prefix, 50, 200, 201])])
    assert share_prefix(ids, mask)[2] == MIN_SHARED_PREFIX  # one more shared token: shared
    whole = torch.tensor([*prefix, 50, 51])  # a prompt that is all prefix keeps its last token as its own
    ids, mask = left_pad([whole, torch.tensor([*prefix, 50, 51, 7, 8])])
    assert share_prefix(ids, mask)[2] == len(whole) - 1
    right_padded = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])
    assert share_prefix(right_padded, (right_padded > 0).long())[2] == 0  # not left-padded: left alone
    single, single_mask = left_pad(shared_prompts(rests=(4,)))
    assert share_prefix(single, single_mask)[2] == 0


def test_shared_prefix_is_read_once_and_decodes_as_each_prompt_alone(model):
    """Greedy rows after a once-read shared prefix match each prompt decoded alone, and decoding with no
    cache; the first forward call reads the prefix for one row, the second the rests for every row."""
    rows = shared_prompts()
    ids, mask = left_pad(rows)
    calls = []
    handle = model.register_forward_pre_hook(lambda _, args: calls.append(tuple(args[0].shape)))
    try:
        batched = generate(model, ids, mask, max_new_tokens=8)
    finally:
        handle.remove()
    shared = share_prefix(ids, mask)[2]
    assert calls[0] == (1, shared) and calls[1] == (3, ids.size(1) - shared) and calls[2] == (3, 1)
    assert torch.equal(batched, generate(model, ids, mask, max_new_tokens=8, use_cache=False))
    for row, alone in enumerate(rows):
        out = generate(model, alone[None], max_new_tokens=8)
        assert batched[row, ids.size(1):].tolist() == out[0, len(alone):].tolist()


def test_shared_prefix_and_repeated_prompts_together(model):
    """Samples of two problems that share a system prompt: the prefix once, each problem once, then every row."""
    a, b = shared_prompts(rests=(4, 6))[:2]
    ids, mask = left_pad([a, a, b, a])
    calls = []
    handle = model.register_forward_pre_hook(lambda _, args: calls.append(args[0].size(0)))
    try:
        greedy = generate(model, ids, mask, max_new_tokens=6)
    finally:
        handle.remove()
    assert calls[:3] == [1, 2, 4]
    assert torch.equal(greedy, generate(model, ids, mask, max_new_tokens=6, use_cache=False))


def test_rest_of_a_shared_prompt_is_a_prefill(model):
    """The float model reads the rests after a cached prefix (many tokens: compute-bound); a decode step, a
    few tokens, goes to the quantised copy."""
    cache = model.new_cache(1, 64)
    assert is_prefill(5, None) and is_prefill(5, cache)
    model(prompt(4), cache=cache)
    assert is_prefill(40, cache) and not is_prefill(1, cache) and not is_prefill(8, cache)
    used = []
    float_model, quantised = model, type(model)(model.config).eval()
    float_model.register_forward_pre_hook(lambda *_: used.append("float"))
    quantised.register_forward_pre_hook(lambda *_: used.append("quantised"))
    ids, mask = left_pad(shared_prompts(rests=(20, 24)))
    generate(FloatPrefill(float_model, quantised), ids, mask, max_new_tokens=3)
    assert used == ["float", "float", "quantised", "quantised"]


def test_block_list_and_penalties_see_each_prompt_as_it_was(model):
    """The scores' processors read the prompts left-padded, as given: a banned sequence that begins inside a
    short row's prompt is still caught after the rows were laid out around a shared prefix."""
    prefix = prompt(10, seed=3)[0].tolist()
    rows = [torch.tensor(prefix + [7]), torch.tensor(prefix + [11, 12, 13, 14])]
    ids, mask = left_pad(rows)
    assert share_prefix(ids, mask)[2] == 10
    free = generate(model, ids, mask, max_new_tokens=1)[0, -1].item()
    ban = ((prefix[-1], 7, free),)  # the short row's last two prompt tokens, then its free choice
    banned = generate(model, ids, mask, max_new_tokens=4, banned=ban)
    assert banned[0, ids.size(1)].item() != free
    assert torch.equal(banned, generate(model, ids, mask, max_new_tokens=4, banned=ban, use_cache=False))
    penalised = generate(model, ids, mask, max_new_tokens=6, repetition_penalty=1.5, no_repeat_ngram_size=2)
    assert torch.equal(penalised, generate(model, ids, mask, max_new_tokens=6, repetition_penalty=1.5,
                                           no_repeat_ngram_size=2, use_cache=False))
