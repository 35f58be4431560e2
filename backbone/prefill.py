"""Reading the prompts into a KV cache, with the work the rows share done once.

    distinct_prompts   rows that repeat a prompt (the n samples of one problem) run it once
    share_prefix       a prefix every prompt shares (a system prompt, the same solved examples) is laid out
                       first, ahead of each row's padding, so it can run for one row
    prefill            both: the shared prefix for one row, then each distinct prompt; the cache copied to the
                       rows that share it (backbone.generate's decoders start here)
"""

from __future__ import annotations

import torch

from backbone.model import GPT


def distinct_prompts(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Where rows repeat a prompt (the n samples of one problem): (the first row of each distinct prompt,
    each row's distinct prompt), so the prompt is run once and its keys/values copied; None when all differ."""
    seen: dict[tuple, int] = {}
    which = [seen.setdefault((tuple(t), tuple(m)), len(seen)) for t, m in zip(tokens.tolist(), mask.tolist())]
    if len(seen) == len(which):
        return None
    first = [0] * len(seen)
    for row in reversed(range(len(which))):
        first[which[row]] = row
    return torch.tensor(first, device=tokens.device), torch.tensor(which, device=tokens.device)


# The fewest leading tokens worth running once for all rows: below this the extra forward call costs more
# than it saves.
MIN_SHARED_PREFIX = 8


def share_prefix(tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts (B, T) -> the same prompts laid out as shared prefix | padding | own rest, and P,
    the number of leading tokens every prompt shares (a system prompt, the same solved examples); 0 (and the
    rows as they were) when fewer than MIN_SHARED_PREFIX. Each prompt keeps at least its last token as its
    own. The model reads both layouts alike: positions count real tokens only, and the mask hides padding.

        left-padded    . . a b c x y        shared prefix   a b c . . x y
                       a b c u v w z                        a b c u v w z
    """
    B, T = tokens.shape
    lengths = mask.sum(1)
    left_padded = bool((mask == (torch.arange(T, device=mask.device) >= T - lengths[:, None])).all())
    if B < 2 or not left_padded:
        return tokens, mask, 0
    shortest = int(lengths.min())
    starts = T - lengths  # (B,) the column of each prompt's first token
    heads = tokens.gather(1, starts[:, None] + torch.arange(shortest, device=tokens.device))  # (B, shortest)
    same = (heads == heads[:1]).all(0).long()  # (shortest,) columns where every prompt agrees
    P = min(int(same.cumprod(0).sum()), shortest - 1)
    if P < MIN_SHARED_PREFIX:
        return tokens, mask, 0
    column = torch.arange(T, device=tokens.device)[None, :]
    gap = (column >= P) & (column < (T - lengths + P)[:, None])  # (B, T) between the prefix and the rest
    tokens = torch.where(gap, tokens[:, :1], tokens)  # any id: the mask hides it
    tokens[:, :P] = heads[:1, :P]
    mask = (~gap).to(mask.dtype)
    return tokens, mask, P


def prefill(model: GPT, tokens: torch.Tensor, mask: torch.Tensor, shared: int, max_len: int
            ) -> tuple[object, torch.Tensor]:
    """Read the prompts (B, T) into a new KV cache -> (cache, each row's last hidden state (B, C)).

    Work the rows have in common runs once: the first `shared` tokens (share_prefix), for one row, then
    each distinct prompt (the n samples of one problem, distinct_prompts); the cache is copied to the rows
    that share it. Rows are as they would be run one by one: the copies hold the same keys and values.
    """
    B = tokens.size(0)
    distinct = distinct_prompts(tokens, mask)
    first = distinct[0] if distinct is not None else torch.arange(B, device=tokens.device)
    padded = not bool(mask.all())
    if shared:
        cache = model.new_cache(1, max_len)
        model(tokens[:1, :shared], None, cache=cache)  # (1, P, C), its keys/values kept
        cache.reorder(torch.zeros_like(first))
        hidden = model(tokens[first, shared:], mask[first] if padded else None, cache=cache)
    else:
        cache = model.new_cache(len(first), max_len)
        hidden = model(tokens[first], mask[first] if padded else None, cache=cache)
    last = hidden[:, -1]  # (rows, C)
    if distinct is not None:
        cache.reorder(distinct[1])
        last = last[distinct[1]]
    return cache, last
