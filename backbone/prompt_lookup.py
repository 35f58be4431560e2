"""Prompt-lookup decoding: greedy decoding that guesses its next tokens from the text it has already seen.

When the output copies its input (an answer quoted from a context, a translation keeping names, code reusing
identifiers), the tokens after the latest occurrence of the last few generated tokens are a good guess for
what comes next. Each step feeds the last token plus up to `draft` guessed tokens in one forward pass (with
the KV cache), keeps the guesses that equal the model's own greedy choices, and adds the model's choice
after them; the cache forgets the rejected guesses. Every kept token is the argmax the model gives at that
position, so the output is plain greedy decoding's, found in fewer forward passes: no second model needed
(Saxena 2023, "Prompt lookup decoding"; the draft-and-verify idea of speculative decoding).

Scope: one sequence, greedy, no penalties that depend on the text so far (the repetition penalty, banned
n-grams); `generate` uses it when `GenerationConfig.prompt_lookup > 0` and those hold, else plain decoding.
"""

from __future__ import annotations

import torch

from backbone.model import GPT


def lookup(tokens: list[int], ngram: int, draft: int) -> list[int]:
    """Up to `draft` tokens that followed the latest earlier occurrence of the last n tokens (n from `ngram`
    down to 1); [] when the ending was not seen before."""
    for n in range(min(ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):  # latest occurrence first, before the tail itself
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + draft]
    return []


@torch.no_grad()
def greedy_with_lookup(model: GPT, input_ids: torch.Tensor, max_new_tokens: int, draft: int, ngram: int = 3,
                       eos_token_id: int | None = None, stop_fn=None) -> tuple[torch.Tensor, dict]:
    """(1, T) prompt ids -> ((1, T + L) ids, {"forward_passes", "drafted", "accepted"}), L <= max_new_tokens;
    the same tokens as greedy decoding."""
    if input_ids.size(0) != 1:
        raise ValueError("prompt-lookup decoding decodes one sequence at a time")
    device = input_ids.device
    prompt = input_ids[0].tolist()
    cache = model.new_cache(1, len(prompt) + max_new_tokens + draft + 1)
    hidden = model(input_ids, None, cache=cache)
    generated = [int(model.lm_logits(hidden[:, -1]).argmax(-1))]
    stats = {"forward_passes": 1, "drafted": 0, "accepted": 0}
    while len(generated) < max_new_tokens and not _finished(generated, eos_token_id, stop_fn, device):
        guess = lookup(prompt + generated, ngram, min(draft, max_new_tokens - len(generated)))
        feed = torch.tensor([[generated[-1], *guess]], device=device)  # the last token is not in the cache yet
        mask = torch.ones(1, cache.length + feed.size(1), dtype=torch.long, device=device)  # causal, offset
        choices = model.lm_logits(model(feed, mask, cache=cache))[0].argmax(-1).tolist()  # (1 + len(guess),)
        kept = 0
        while kept < len(guess) and guess[kept] == choices[kept]:
            kept += 1
        cache.length -= len(guess) - kept  # the rejected guesses' keys and values are forgotten
        generated += guess[:kept] + [choices[kept]]
        stats["forward_passes"] += 1
        stats["drafted"] += len(guess)
        stats["accepted"] += kept
    generated = _cut(generated[:max_new_tokens], eos_token_id)
    return torch.cat([input_ids, torch.tensor([generated], device=device, dtype=input_ids.dtype)], dim=1), stats


def _finished(generated: list[int], eos: int | None, stop_fn, device) -> bool:
    if eos is not None and eos in generated:
        return True
    return bool(stop_fn is not None and stop_fn(torch.tensor([generated], device=device))[0])


def _cut(generated: list[int], eos: int | None) -> list[int]:
    """Everything up to and including the first eos (what greedy decoding would have produced)."""
    return generated[: generated.index(eos) + 1] if eos is not None and eos in generated else generated
