"""Decoding: one implementation of every strategy gptsuite offers, with a KV cache on by default.

    greedy             temperature = 0 (the default): argmax of the next-token distribution
    sampling           temperature > 0, optionally restricted by top_k, top_p (nucleus) and min_p
    beam search        num_beams > 1, scored by sum of log-probabilities / length ** length_penalty
    penalties          repetition_penalty (CTRL, Keskar et al. 2019), no_repeat_ngram_size
    block list         banned token sequences, never generated (`banned`, built from words by
                       backbone.logits.banned_sequences)
    stopping           eos token, stop strings, max_new_tokens

`generate` works on token ids (batched, left-padded), `generate_text` and `stream` on strings. The scores
processing each step applies (penalties, block list, filters, the draw) is backbone/logits.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from backbone.generation_config import GenerationConfig
from backbone.logits import (
    apply_repetition_penalty,
    ban_repeated_ngrams,
    ban_sequences,
    draw,
    filter_min_p,
    filter_top_k,
    filter_top_p,
)
from backbone.model import GPT
from backbone.prefill import prefill, share_prefix
from backbone.prompt_lookup import greedy_with_lookup


def process_scores(scores, tokens, mask, cfg: GenerationConfig):
    """A step's scores (B, V) as `cfg` asks (the processors are backbone/logits.py): penalties and the block
    list first, then (when sampling) temperature and the truncation filters, in Hugging Face's order."""
    scores = apply_repetition_penalty(scores, tokens, mask, cfg.repetition_penalty)
    scores = ban_repeated_ngrams(scores, tokens, mask, cfg.no_repeat_ngram_size)
    scores = ban_sequences(scores, tokens, mask, cfg.banned)
    if cfg.sampling:
        scores = scores / cfg.temperature
        scores = filter_min_p(filter_top_p(filter_top_k(scores, cfg.top_k), cfg.top_p), cfg.min_p)
    return scores


# --------------------------------------------------------------------------------------------------------
# Token-level decoding
# --------------------------------------------------------------------------------------------------------
StopFn = Callable[[torch.Tensor], torch.Tensor]  # generated ids (B, L) -> rows that should stop (B,) bool
# (generated ids of the rows in the step's computation (b, L), their indices in the batch (b,)) -> allowed next
# tokens (b, V) bool: a constraint on what may come next (backbone.constraints.CopySpans: answers copied from a
# context). With the KV cache the rows are those still in the computation (finished rows leave it in groups, so
# some may have finished: whatever they are allowed, they receive the filler); without it, every row.
AllowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fit_prompt(input_ids, attention_mask, cfg: GenerationConfig, block_size: int):
    """Apply the context policy: prompt + max_new_tokens must fit in block_size; with truncate_prompt the
    prompt keeps its last (block_size - max_new_tokens) tokens, otherwise a ValueError says what to change."""
    T = input_ids.size(1)
    if T + cfg.max_new_tokens <= block_size:
        return input_ids, attention_mask
    keep = block_size - cfg.max_new_tokens
    if not cfg.truncate_prompt or keep < 1:
        raise ValueError(
            f"prompt of {T} tokens + max_new_tokens={cfg.max_new_tokens} exceeds the model's block_size "
            f"{block_size}: shorten the prompt, lower max_new_tokens, or set truncate_prompt=True (--truncate-prompt) "
            f"to keep the last {max(keep, 1)} prompt tokens"
        )
    return input_ids[:, -keep:], attention_mask[:, -keep:]


def _prepare(model: GPT, input_ids, attention_mask, cfg):
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(f"input_ids must be (batch, length >= 1), got {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return fit_prompt(input_ids, attention_mask, cfg, model.config.block_size)


def constrain(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """-inf wherever `allowed` (b, V') is False; tokens past its width (a padded vocabulary) are never allowed."""
    width = logits.size(-1)
    allowed = F.pad(allowed.to(logits.device), (0, max(0, width - allowed.size(-1))), value=False)[:, :width]
    return logits.masked_fill(~allowed, float("-inf"))


@torch.no_grad()
def iter_tokens(model: GPT, input_ids, attention_mask=None, config: GenerationConfig | None = None,
                stop_fn: StopFn | None = None, allow_fn: AllowFn | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy or sampled decoding, one step at a time: yields (next tokens (B,), finished (B,) bool).
    allow_fn, when given, limits each row's next token to those it allows, before the other filters (top-k,
    top-p and min-p then choose among the allowed tokens; should a ban remove all of them, they stand).

    Rows that have finished keep receiving the eos token (or 0) so the batch stays rectangular. With the KV
    cache, finished rows also leave the computation (together, once they are a quarter of it): their cache
    entries are dropped, so a batch of samples that stop at different lengths costs about what its
    unfinished rows cost, not what the longest one does.
    """
    cfg = config or GenerationConfig()
    if cfg.num_beams > 1:
        raise ValueError("iter_tokens decodes greedily or by sampling; use beam_search for num_beams > 1")
    tokens, mask = _prepare(model, input_ids, attention_mask, cfg)
    B, T = tokens.shape
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=tokens.device).manual_seed(cfg.seed)
    cache, attend = None, mask  # attend: the model's mask, in the layout the cache holds the prompts in
    if cfg.use_cache:
        laid_out, attend, shared = share_prefix(tokens, mask)
        cache, last = prefill(model, laid_out, attend, shared, T + cfg.max_new_tokens)
    # tokens and mask stay left-padded for the scores' processors (a block list matches each row's last tokens)
    filler = cfg.eos_token_id if cfg.eos_token_id is not None else 0
    finished = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    live = torch.arange(B, device=tokens.device)  # the rows still in the computation (all, without a cache)
    padded = not bool(mask.all())
    next_token = tokens[:, -1]  # fed from the second step on: then each row's latest token
    for step in range(cfg.max_new_tokens):
        model_mask = attend[live] if padded else None  # no padding: the model's plain causal fast path
        if cache is None:  # the whole sequence again
            last = model(tokens, model_mask)[:, -1]
        elif step > 0:  # the new token of each unfinished row
            last = model(next_token[live, None], model_mask, cache=cache)[:, -1]
        logits = model.lm_logits(last).float()  # (b, V)
        if allow_fn is not None:  # first, so top-k / top-p choose among the allowed tokens
            logits = constrain(logits, allow_fn(tokens[live, T:], live))
        scores = process_scores(logits, tokens[live], mask[live], cfg)
        if allow_fn is not None:  # a ban or a penalty removed every allowed token: the allowed ones stand
            emptied = torch.isneginf(scores).all(dim=-1)
            scores[emptied] = logits[emptied]
        if cfg.sampling:
            chosen = draw(scores, generator)
        else:
            chosen = scores.argmax(-1)
        next_token = torch.full((B,), filler, dtype=tokens.dtype, device=tokens.device)
        next_token[live] = chosen.to(tokens.dtype)
        next_token = torch.where(finished, torch.full_like(next_token, filler), next_token)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        attend = torch.cat([attend, torch.ones_like(attend[:, :1])], dim=1)
        if cfg.eos_token_id is not None:
            finished = finished | (next_token == cfg.eos_token_id)
        if stop_fn is not None:
            finished = finished | stop_fn(tokens[:, T:])
        yield next_token, finished
        if finished.all():
            return
        # drop the finished rows from the computation once they are a quarter of it: each drop copies the
        # cache, so dropping every row the step it finishes would cost more than it saves
        if cache is not None and 4 * int(finished[live].sum()) >= len(live):
            keep = (~finished[live]).nonzero().squeeze(1)
            cache.reorder(keep)
            live = live[keep]


@torch.no_grad()
def beam_search(model: GPT, input_ids, attention_mask=None, config: GenerationConfig | None = None) -> torch.Tensor:
    """Keep the num_beams best partial sequences by summed log-probability; return the best finished one
    per prompt, (B, T + L). A hypothesis ending in eos is scored sum_logprobs / generated_len ** length_penalty.
    """
    cfg = config or GenerationConfig()
    input_ids, attention_mask = _prepare(model, input_ids, attention_mask, cfg)
    B, T = input_ids.shape
    K, eos = cfg.num_beams, cfg.eos_token_id
    tokens = input_ids.repeat_interleave(K, dim=0)  # (B*K, T)
    mask = attention_mask.repeat_interleave(K, dim=0)
    beam_scores = torch.zeros(B, K, device=tokens.device)
    beam_scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    cache = model.new_cache(B * K, T + cfg.max_new_tokens) if cfg.use_cache else None
    finished: list[list[tuple[float, torch.Tensor]]] = [[] for _ in range(B)]
    done = [False] * B
    padded = not bool(mask.all())
    feed = tokens
    for step in range(cfg.max_new_tokens):
        model_mask = mask if padded else None  # no padding: the model's plain causal fast path
        hidden = model(feed, model_mask, cache=cache) if cache is not None else model(tokens, model_mask)
        logprobs = F.log_softmax(model.lm_logits(hidden[:, -1]).float(), dim=-1)  # (B*K, V)
        logprobs = process_scores(logprobs, tokens, mask, cfg)
        V = logprobs.size(-1)
        candidates = (beam_scores.view(-1, 1) + logprobs).view(B, K * V)
        top_scores, top_index = candidates.topk(2 * K, dim=1)  # 2K so K survive even if K end in eos
        parent, token = top_index // V, top_index % V  # (B, 2K)
        new_scores = torch.full((B, K), float("-inf"), device=tokens.device)
        new_parent = torch.zeros(B, K, dtype=torch.long, device=tokens.device)
        new_token = torch.zeros(B, K, dtype=torch.long, device=tokens.device)
        generated_len = step + 1
        for b in range(B):
            if done[b]:
                new_parent[b] = torch.arange(K)  # keep the row alive but frozen
                new_token[b] = eos if eos is not None else 0
                continue
            slot = 0
            for rank in range(2 * K):
                score, p, t = top_scores[b, rank].item(), parent[b, rank].item(), token[b, rank].item()
                if eos is not None and t == eos:
                    if rank < K:  # an eos outside the top K is not a better finished hypothesis
                        seq = torch.cat([tokens[b * K + p], tokens.new_tensor([eos])])
                        finished[b].append((score / generated_len ** cfg.length_penalty, seq))
                    continue
                new_scores[b, slot], new_parent[b, slot], new_token[b, slot] = score, p, t
                slot += 1
                if slot == K:
                    break
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:K]
            # Done when K hypotheses are finished and no running beam can still beat the worst of them.
            best_running = new_scores[b, 0].item() / generated_len ** cfg.length_penalty
            if len(finished[b]) == K and finished[b][-1][0] >= best_running:
                done[b] = True
        rows = (new_parent + torch.arange(B, device=tokens.device)[:, None] * K).view(-1)  # (B*K,)
        tokens = torch.cat([tokens[rows], new_token.view(-1, 1)], dim=1)
        mask = torch.cat([mask[rows], torch.ones_like(mask[:, :1])], dim=1)
        beam_scores = new_scores
        if cache is not None:
            cache.reorder(rows)
        feed = new_token.view(-1, 1)
        if all(done):
            break
    results = []
    for b in range(B):
        hypotheses = list(finished[b])
        if not done[b]:  # running beams at max length also compete
            length = tokens.size(1) - T
            for k in range(K):
                hypotheses.append((beam_scores[b, k].item() / length ** cfg.length_penalty, tokens[b * K + k]))
        results.append(max(hypotheses, key=lambda h: h[0])[1])
    width = max(r.size(0) for r in results)
    filler = eos if eos is not None else 0
    return torch.stack([F.pad(r, (0, width - r.size(0)), value=filler) for r in results])


def lookup_applies(cfg: GenerationConfig, attention_mask: torch.Tensor) -> bool:
    """Prompt-lookup decoding gives greedy decoding's tokens for one unpadded prompt, when no penalty reads
    the text so far (the top-k / top-p / min-p filters never change the argmax)."""
    return bool(cfg.prompt_lookup > 0 and not cfg.sampling and cfg.num_beams == 1 and cfg.use_cache
                and cfg.repetition_penalty == 1.0 and cfg.no_repeat_ngram_size == 0 and not cfg.banned
                and attention_mask.size(0) == 1 and attention_mask.all())


def generate(model: GPT, input_ids, attention_mask=None, config: GenerationConfig | None = None,
             stop_fn: StopFn | None = None, allow_fn: AllowFn | None = None, **overrides) -> torch.Tensor:
    """Prompt ids (B, T) -> prompt + generated ids (B, T + L). Keyword overrides replace config fields.
    allow_fn constrains greedy and sampled decoding (beam search refuses it)."""
    cfg = (config or GenerationConfig()).replace(**overrides) if overrides else (config or GenerationConfig())
    one_row = getattr(model, "rows_per_call", None) == 1  # an engine that decodes one row per call (llama.cpp)
    if one_row and cfg.num_beams > 1:
        raise ValueError("beam search needs an engine that decodes several rows per call; "
                         "this one (llama.cpp) decodes one: use --engine gptsuite, or greedy / sampled decoding")
    if one_row and input_ids.size(0) > 1:  # fitted to the context first, as a batch: then no row is cut again
        return _row_by_row(model, *_prepare(model, input_ids, attention_mask, cfg), cfg, stop_fn, allow_fn)
    was_training = model.training
    model.eval()
    try:
        if cfg.num_beams > 1:
            if allow_fn is not None:
                raise ValueError("a decoding constraint (allow_fn) needs greedy or sampled decoding (num_beams=1)")
            return beam_search(model, input_ids, attention_mask, cfg)
        input_ids, attention_mask = _prepare(model, input_ids, attention_mask, cfg)
        if allow_fn is None and lookup_applies(cfg, attention_mask):
            return greedy_with_lookup(model, input_ids, cfg.max_new_tokens, cfg.prompt_lookup,
                                      eos_token_id=cfg.eos_token_id, stop_fn=stop_fn)[0]
        steps = [tok for tok, _ in iter_tokens(model, input_ids, attention_mask, cfg, stop_fn, allow_fn)]
        return torch.cat([input_ids, torch.stack(steps, dim=1)], dim=1)
    finally:
        model.train(was_training)


def _row_by_row(model, input_ids, attention_mask, cfg: GenerationConfig, stop_fn, allow_fn) -> torch.Tensor:
    """generate() for an engine that decodes one row per call, on prompts already fitted to the context: each
    row alone (its left padding dropped), the new tokens then right-filled as the batched decoders fill finished
    rows (eos, or 0). Sampled rows draw from seed + row (one seed for every row would give each repeated prompt
    the same sample). The batch's stop function sees each row repeated B times (it takes the whole batch),
    so stop strings cost B decodes a step: fine for the few rows a CPU decodes at once."""
    B = input_ids.size(0)
    mask = attention_mask
    filler = cfg.eos_token_id if cfg.eos_token_id is not None else 0
    rows = []
    for b in range(B):
        real = mask[b].bool()
        row_stop = None if stop_fn is None else (lambda g, b=b: stop_fn(g.expand(B, -1))[b : b + 1])
        row_allow = None if allow_fn is None else (lambda g, live, b=b: allow_fn(g, live.new_tensor([b])))
        seed = None if cfg.seed is None else cfg.seed + b
        out = generate(model, input_ids[b : b + 1, real], None, cfg.replace(seed=seed), row_stop, row_allow)
        rows.append(out[0, int(real.sum()) :])
    width = max(len(r) for r in rows)
    new = torch.full((B, width), filler, dtype=input_ids.dtype, device=input_ids.device)
    for b, r in enumerate(rows):
        new[b, : len(r)] = r
    return torch.cat([input_ids, new], dim=1)


def model_device(model) -> torch.device:
    """Where the model's inputs go: its parameters' device (an engine outside torch has none: the CPU)."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


# --------------------------------------------------------------------------------------------------------
# Text-level decoding
# --------------------------------------------------------------------------------------------------------
def encode_prompts(tokenizer, prompts: Sequence[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad a batch of prompts: the last column is every prompt's last token, so one decode step
    appends to all of them. Returns ids and attention mask, both (B, T)."""
    encoded = [tokenizer.encode(p, add_bos=True) for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} is empty")
    return tokenizer.pad(encoded, side="left", device=device)


def _text_config(tokenizer, cfg: GenerationConfig | None, overrides) -> GenerationConfig:
    cfg = (cfg or GenerationConfig()).replace(**overrides) if overrides else (cfg or GenerationConfig())
    return cfg if cfg.eos_token_id is not None else cfg.replace(eos_token_id=tokenizer.eos_id)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _stop_fn(tokenizer, stop: Sequence[str], eos: int) -> StopFn | None:
    if not stop:
        return None

    def hit(generated: torch.Tensor) -> torch.Tensor:
        hits = [cut_at_stop(_decode_until_eos(tokenizer, row, eos), stop)[1] for row in generated.tolist()]
        return torch.tensor(hits, device=generated.device)

    return hit


def _decode_until_eos(tokenizer, ids: list[int], eos: int | None) -> str:
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    return tokenizer.decode(ids)


def _length_fn(limits: Sequence[int], device) -> StopFn:
    """Rows stop once they have generated their own number of tokens."""
    cap = torch.tensor(list(limits), device=device)
    return lambda generated: generated.size(1) >= cap


def _stop_on_any(*fns: StopFn | None) -> StopFn | None:
    fns = [f for f in fns if f is not None]
    if len(fns) < 2:
        return fns[0] if fns else None
    return lambda generated: torch.stack([f(generated) for f in fns]).any(0)


def generate_text(model: GPT, tokenizer, prompts: str | Sequence[str], config: GenerationConfig | None = None,
                  allow_fn: AllowFn | None = None, row_max_new_tokens: Sequence[int] | None = None,
                  **overrides) -> list[str]:
    """Completions (without the prompt) for one or many prompts, cut at eos and at the first stop string;
    allow_fn constrains each row's tokens (its row indices are the prompts'). row_max_new_tokens: each
    prompt's own limit on new tokens, under max_new_tokens (greedy and sampled decoding: a translation's
    length follows its source's)."""
    cfg = _text_config(tokenizer, config, overrides)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    device = model_device(model)
    length_fn = None
    if row_max_new_tokens is not None:
        limits = [int(n) for n in row_max_new_tokens]
        if len(limits) != len(prompts) or min(limits, default=1) < 1:
            raise ValueError(f"row_max_new_tokens needs one limit >= 1 per prompt ({len(prompts)}), got {limits}")
        if cfg.num_beams > 1:
            raise ValueError("row_max_new_tokens needs greedy or sampled decoding (num_beams=1)")
        cfg = cfg.replace(max_new_tokens=min(cfg.max_new_tokens, max(limits)))
        length_fn = _length_fn(limits, device)
    ids, mask = _prepare(model, *encode_prompts(tokenizer, prompts, device), cfg)
    stop_fn = _stop_on_any(_stop_fn(tokenizer, cfg.stop, cfg.eos_token_id), length_fn)
    out = generate(model, ids, mask, cfg, stop_fn=stop_fn, allow_fn=allow_fn)
    texts = [_decode_until_eos(tokenizer, row, cfg.eos_token_id) for row in out[:, ids.size(1) :].tolist()]
    return [cut_at_stop(t, cfg.stop)[0] for t in texts]


def stream(model: GPT, tokenizer, prompt: str, config: GenerationConfig | None = None, **overrides) -> Iterator[str]:
    """Yield a completion piece by piece as it is generated (greedy or sampled).

    Text is held back while it ends in an incomplete UTF-8 character or could be the start of a stop string.
    """
    cfg = _text_config(tokenizer, config, overrides)
    if cfg.num_beams > 1:
        raise ValueError("streaming needs greedy or sampled decoding (num_beams=1)")
    device = model_device(model)
    ids, mask = encode_prompts(tokenizer, [prompt], device)
    was_training = model.training
    model.eval()
    generated: list[int] = []
    emitted = 0
    hold = max((len(s) for s in cfg.stop), default=1) - 1
    try:
        for token, _ in iter_tokens(model, ids, mask, cfg):
            t = token.item()
            if t == cfg.eos_token_id:
                break
            generated.append(t)
            text, stopped = cut_at_stop(tokenizer.decode(generated), cfg.stop)
            if stopped:
                if len(text) > emitted:
                    yield text[emitted:]
                return
            safe = len(text) - hold
            if text.endswith("\ufffd"):  # a multi-byte character still arriving
                safe = min(safe, len(text) - 1)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        text = cut_at_stop(tokenizer.decode(generated), cfg.stop)[0]
        if len(text) > emitted:
            yield text[emitted:]
    finally:
        model.train(was_training)
