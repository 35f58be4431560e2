"""Logits processing for decoding: (B, V) next-token scores in, (B, V) scores out, and the draw.

    penalties     apply_repetition_penalty (CTRL), ban_repeated_ngrams
    block list    ban_sequences (banned token sequences), banned_sequences (words -> token sequences)
    truncation    filter_top_k, filter_top_p (nucleus), filter_min_p
    draw          one token per row from the filtered distribution

backbone.generate.process_scores applies them in Hugging Face's order, as a GenerationConfig asks.
"""

from __future__ import annotations

import torch


def apply_repetition_penalty(scores, tokens, mask, penalty: float):
    """CTRL penalty: a seen token's score s becomes s / penalty if s > 0 else s * penalty."""
    if penalty == 1.0:
        return scores
    # count, not scatter a bool: a pad id that is also a real token must stay "seen" (scatter_ with duplicate
    # indices keeps an unspecified one of the written values)
    seen = torch.zeros_like(scores, dtype=torch.long).scatter_add_(1, tokens, mask.long()) > 0
    penalised = torch.where(scores > 0, scores / penalty, scores * penalty)
    return torch.where(seen, penalised, scores)


def ban_repeated_ngrams(scores, tokens, mask, n: int):
    """Forbid any token that would complete an n-gram already present in the (unpadded) sequence."""
    if n == 0 or tokens.size(1) < n:
        return scores
    scores = scores.clone()
    for row in range(tokens.size(0)):
        seq = tokens[row][mask[row].bool()].tolist()
        if len(seq) < n:
            continue
        prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
        banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix]
        scores[row, banned] = float("-inf")
    return scores


def ban_sequences(scores, tokens, mask, banned: tuple[tuple[int, ...], ...]):
    """Remove the last token of every banned sequence whose other tokens end a row's text so far.

    Rows are left-padded, so a row's last columns are its real tokens; the prefix must match real tokens
    only (padding never completes a sequence), and a sequence longer than the text so far cannot match."""
    if not banned:
        return scores
    hit = torch.zeros_like(scores, dtype=torch.bool)
    for seq in banned:
        *prefix, last = seq
        if last >= scores.size(-1):
            continue
        if not prefix:
            hit[:, last] = True
        elif len(prefix) <= tokens.size(1):
            tail = torch.tensor(prefix, dtype=tokens.dtype, device=tokens.device)
            n = len(prefix)
            hit[:, last] |= (tokens[:, -n:] == tail).all(-1) & mask[:, -n:].bool().all(-1)
    return scores.masked_fill(hit, float("-inf"))


def banned_sequences(tokenizer, words) -> tuple[tuple[int, ...], ...]:
    """Each word as the token sequences a byte-level BPE writes it in at the start of a word: after a space
    and after a newline, in lower case, capitalised and upper case (" Idiot" and " idiot" are different
    tokens). Not the bare form: as a token it also ends other words (" embarr|ass", " over|kill"), and
    banning it there would block innocent words; a word glued to other characters is left to moderation."""
    out = []
    for word in words:
        word = word.strip()
        if not word:
            continue
        for form in dict.fromkeys((word.lower(), word.capitalize(), word.upper())):
            for text in (" " + form, "\n" + form):
                ids = tuple(tokenizer.encode(text))
                if ids and ids not in out:
                    out.append(ids)
    return tuple(out)


def filter_top_k(scores, k: int):
    if k == 0 or k >= scores.size(-1):
        return scores
    kth = torch.topk(scores, k, dim=-1).values[:, -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


TOP_P_CANDIDATES = 256  # the nucleus is looked for among each row's most likely tokens first


def filter_top_p(scores, p: float):
    """Nucleus: keep the most likely tokens until their cumulative probability reaches p (always >= 1).

    Sorting a 50k vocabulary for every row and step is the slow part, and the nucleus nearly always lies in
    the first few hundred tokens: those are found with topk, and the full sort runs only for a row whose top
    TOP_P_CANDIDATES do not reach p. Both give the same set."""
    if p >= 1.0:
        return scores
    k = min(TOP_P_CANDIDATES, scores.size(-1))
    top, order = torch.topk(scores, k, dim=-1)  # (B, k), descending
    if k < scores.size(-1):
        probs = (top - scores.logsumexp(-1, keepdim=True)).exp()  # the true probabilities of the top k
    else:
        probs = top.softmax(-1)
    if k < scores.size(-1) and not bool((probs.sum(-1) >= p).all()):
        top, order = torch.sort(scores, descending=True, dim=-1)
        probs = top.softmax(-1)
    drop_sorted = probs.cumsum(-1) - probs >= p  # the mass before this token already reaches p
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter(1, order, ~drop_sorted)
    return scores.masked_fill(~keep, float("-inf"))


def filter_min_p(scores, min_p: float):
    if min_p == 0.0:
        return scores
    probs = scores.softmax(-1)
    threshold = min_p * probs.max(dim=-1, keepdim=True).values
    return scores.masked_fill(probs < threshold, float("-inf"))


DRAW_CANDIDATES = 1024


def draw(scores, generator=None):
    """One token per row from softmax(scores) (B, V) -> (B,); a token at -inf is never drawn. When the filters
    left at most DRAW_CANDIDATES tokens in every row, the draw runs over those alone: the same distribution
    at a fraction of the cost of a multinomial over the whole vocabulary."""
    n = int(torch.isfinite(scores).sum(-1).max())
    if n <= DRAW_CANDIDATES:
        top, index = torch.topk(scores, max(n, 1), dim=-1)  # (B, n): every candidate of every row
        choice = torch.multinomial(top.softmax(-1), 1, generator=generator)  # (B, 1)
        return index.gather(1, choice).squeeze(1)
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)

