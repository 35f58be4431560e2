"""Task heads: small modules that turn backbone hidden states (B, T, C) into task outputs.

    SequenceHead   (B, T, C) -> (B, L)      one label per text (pool the last real token, GPT-1 style, or mean)
    TokenHead      (B, T, C) -> (B, T, L)   one label per token (NER)
    SpanHead       (B, T, C) -> (B, T, 2)   start and end logits of an answer span (extractive QA)
    LabelWordScorer                         the prompt path: a text template, label words scored by the LM
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each right-padded row, (B,)."""
    return attention_mask.long().sum(dim=1).clamp(min=1) - 1


class SequenceHead(nn.Module):
    """Classify a whole text. With causal attention only the last token has seen every other token, so
    GPT-1 classifies from it ("last"); "mean" averages the real tokens instead."""

    def __init__(self, n_embd: int, num_labels: int, pooling: Literal["last", "mean"] = "last", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_embd, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "last":
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last_token_index(attention_mask)]
        else:
            m = attention_mask.to(hidden.dtype)[..., None]
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return self.classifier(self.dropout(pooled))  # (B, L)


class TokenHead(nn.Module):
    """A label for every token position."""

    def __init__(self, n_embd: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_embd, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))  # (B, T, L)


class SpanHead(nn.Module):
    """Start and end logits for every position: an answer is the span (s, e) maximising start[s] + end[e]."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.qa_outputs = nn.Linear(n_embd, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.qa_outputs(hidden)  # (B, T, 2)


class LabelWordScorer(nn.Module):
    """The prompt path: write each example into a template and let the language model score every label's
    words,  score(label) = sum_t log p(word_t | template(text), word_<t).

    Zero-shot as it is; few-shot when `examples` (solved demonstrations) are put before the query; and with
    a tuned soft prompt when the task's adapter is PromptTuning. Has no parameters of its own.

    Args:
        template: the query, with "{text}"; the label word follows it directly.
        label_words: one verbalisation per label, in label order (a leading space suits byte-level BPE).
        separator: between demonstrations.
    """

    def __init__(self, template: str, label_words: list[str], separator: str = "\n\n"):
        super().__init__()
        if "{text}" not in template:
            raise ValueError(f"the template must contain {{text}}, got {template!r}")
        self.template, self.label_words, self.separator = template, list(label_words), separator
        self.examples: list[tuple[str, int]] = []
        self.reset_counts()

    def reset_counts(self) -> None:
        """What the token budget let through since the last reset (the test report reads it)."""
        self.counts = {"queries": 0, "queries_cut": 0, "shots_kept": 0}

    def query_ids(self, tokenizer, text: str, budget: int) -> tuple[list[int], bool]:
        """The template around `text` in at most `budget` tokens, the text cut at its end when needed (the
        words after it must stay: the label word follows them). -> (ids, cut)."""
        ids = tokenizer.encode(self.template.format(text=text))
        if len(ids) <= budget:
            return ids, False
        before, after = (tokenizer.encode(part) if part else [] for part in self.template.split("{text}", 1))
        room = budget - len(before) - len(after)
        if room < 1:
            raise ValueError(f"the template leaves no room for the text in {budget} tokens")
        return before + tokenizer.encode(text)[:room] + after, True

    def shot_ids(self, tokenizer) -> list[list[int]]:
        """Each demonstration (template, label word, separator) as token ids; encoded once, not per query."""
        key = (id(tokenizer), tuple(self.examples))
        if getattr(self, "_shots_key", None) != key:
            self._shots_key = key
            self._shots = [tokenizer.encode(self.template.format(text=t) + self.label_words[y] + self.separator)
                           for t, y in self.examples]
        return self._shots

    def context_ids(self, tokenizer, text: str, budget: int) -> list[int]:
        """Token ids of [demonstrations..., query] in at most `budget` tokens. The query comes first (its
        text cut at the end when it alone is too long); then whole demonstrations, in order, while they fit.
        Measured with SmolLM2-135M (bench preset smollm2): BBC News 66% this way (no demonstration fits, the
        article's first 120 tokens), 64% cutting the context from the left (its last tokens), 42% with five
        demonstrations cut to 12 tokens each; MR 82.5% with the demonstrations that fit whole, 60.5% cut."""
        query, cut = self.query_ids(tokenizer, text, budget)
        shots: list[int] = []
        kept = 0
        for shot in self.shot_ids(tokenizer):
            if len(shots) + len(shot) + len(query) > budget:
                break
            shots += shot
            kept += 1
        self.counts["queries"] += 1
        self.counts["queries_cut"] += cut
        self.counts["shots_kept"] += kept
        return shots + query

    def forward(self, encode, lm_logits, tokenizer, texts: list[str], max_tokens: int, device=None) -> torch.Tensor:
        """(B, L) summed log-probabilities of each label's words. `encode(ids, mask) -> hidden`."""
        label_ids = [tokenizer.encode(w) for w in self.label_words]
        longest = max(len(ids) for ids in label_ids)
        if max_tokens - longest < 2:
            raise ValueError(f"the label words (up to {longest} tokens) leave no room for the prompt in "
                             f"{max_tokens} tokens")
        rows, spans = [], []
        for text in texts:
            context = self.context_ids(tokenizer, text, max_tokens - longest)
            for ids in label_ids:
                rows.append(context + ids)
                spans.append((len(context), len(ids)))
        ids, mask = tokenizer.pad(rows, side="right", device=device)
        logprobs = F.log_softmax(lm_logits(encode(ids, mask)).float(), dim=-1)  # (B*L, W, V)
        scores = []
        for i, (start, n) in enumerate(spans):
            positions = torch.arange(start - 1, start - 1 + n, device=ids.device)  # predictions of the label tokens
            scores.append(logprobs[i, positions, ids[i, start : start + n]].sum())
        return torch.stack(scores).view(len(texts), len(label_ids))
