"""Perplexity of a language model on a text, at token level and at word level.

Token-level perplexity depends on the tokenizer, so it cannot be compared across vocabularies. Word-level
perplexity divides the same total negative log-likelihood by the number of words instead:

    ppl_token = exp(NLL / n_tokens)        ppl_word = exp(NLL / n_words)

With PTB's convention (Mikolov et al.) n_words counts every word plus one end-of-sentence per line, which
makes ppl_word comparable with published word-level PTB numbers (e.g. GPT-2 small zero-shot: 65.85).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def ptb_word_count(text: str) -> int:
    """Words plus one <eos> per non-empty line: the denominator of published PTB perplexities."""
    return sum(len(line.split()) + 1 for line in text.splitlines() if line.strip())


def token_windows(ids: list[int], block_size: int) -> list[torch.Tensor]:
    """Split ids into non-overlapping windows of block_size + 1 tokens (inputs and shifted targets).

    Consecutive windows share one token, so every token after the first is predicted exactly once.
    """
    ids_t = torch.tensor(ids, dtype=torch.long)
    return [ids_t[i : i + block_size + 1] for i in range(0, max(len(ids) - 1, 1), block_size)
            if len(ids_t[i : i + block_size + 1]) > 1]


def window_nll(model, window_batch: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL and the number of predicted tokens of a right-padded (B, L) batch of windows."""
    x, y = window_batch[:, :-1], window_batch[:, 1:]
    valid = torch.arange(y.size(1), device=y.device)[None, :] < (lengths[:, None] - 1)
    logits = model.lm_logits(model(x)).float()
    nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    return (nll * valid).sum(), valid.sum()


def collate_windows(windows: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in windows])
    batch = torch.full((len(windows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, w in enumerate(windows):
        batch[i, : len(w)] = w
    return batch, lengths


@torch.no_grad()
def perplexity(model, tokenizer, text: str, batch_size: int = 8, block_size: int | None = None,
               words: int | None = None, progress: bool = False) -> dict[str, float]:
    """Token- and word-level perplexity of `model` on `text` (lines joined by newlines), in windows of
    `block_size` tokens, at most the model's context (None: the context)."""
    block_size = min(block_size or model.config.block_size, model.config.block_size)
    ids = tokenizer.encode(text)
    windows = token_windows(ids, block_size)
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    batches = range(0, len(windows), batch_size)
    if progress:
        batches = tqdm(batches, desc="perplexity", unit="batch")
    was_training = model.training
    model.eval()
    for start in batches:
        batch, lengths = collate_windows(windows[start : start + batch_size])
        nll, count = window_nll(model, batch.to(device), lengths.to(device))
        total_nll += nll.item()
        total_tokens += int(count)
    model.train(was_training)
    words = words if words is not None else ptb_word_count(text)
    return {
        "nll": total_nll,
        "tokens": total_tokens,
        "words": words,
        "ppl_token": math.exp(total_nll / max(total_tokens, 1)),
        "ppl_word": math.exp(total_nll / max(words, 1)),
    }


@torch.no_grad()
def continuation_nll(model, tokenizer, prompts: list[str], continuations: list[str],
                     batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed NLL, token count) of each continuation given its prompt, -log p(continuation | prompt): how
    likely a judge model finds a generated text. A continuation longer than the judge's context is cut to
    block_size - 1 tokens, and the prompt keeps its last tokens when the pair does not fit; an empty
    continuation scores (0.0, 0)."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    device = next(model.parameters()).device
    block = model.config.block_size
    rows = []
    for prompt, text in zip(prompts, continuations):
        head, tail = tokenizer.encode(prompt, add_bos=True) or [tokenizer.eos_id], tokenizer.encode(text)[: block - 1]
        head = head[-(block - len(tail)):] if len(head) + len(tail) > block else head
        rows.append((head, tail))
    was_training = model.training
    model.eval()
    out = []
    try:
        for first in range(0, len(rows), batch_size):
            chunk = rows[first : first + batch_size]
            ids, mask = tokenizer.pad([h + t for h, t in chunk], side="right", device=device)
            logits = model.lm_logits(model(ids, mask)).float()  # (B, T, V)
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
            for b, (head, tail) in enumerate(chunk):
                span = nll[b, len(head) - 1 : len(head) - 1 + len(tail)]  # the positions predicting the tail
                out.append((float(span.sum()), len(tail)))
    finally:
        model.train(was_training)
    return out
