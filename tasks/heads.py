"""Task heads: small modules that turn backbone hidden states (B, T, C) into task outputs.

    SequenceHead   (B, P, C) -> (B, L)      one label per text, from pooled vectors (`pool`: last token, mean)
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


Pooling = Literal["last", "mean", "mean+last"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(B, T, ...) token states -> (B, P, ...) pooled vectors. With causal attention only the last token has
    seen every other one, so GPT-1 classifies from it ("last"); "mean" averages the real tokens; "mean+last"
    keeps both (P = 2). The trailing dims are free (per-layer states pool the same way)."""
    if pooling not in ("last", "mean", "mean+last"):
        raise ValueError(f"pooling must be 'last', 'mean' or 'mean+last', got {pooling!r}")
    rows = torch.arange(hidden.size(0), device=hidden.device)
    parts = []
    if "mean" in pooling:
        m = attention_mask.to(hidden.dtype).view(*attention_mask.shape, *([1] * (hidden.dim() - 2)))
        parts.append((hidden * m).sum(1) / m.sum(1).clamp(min=1))
    if "last" in pooling:
        parts.append(hidden[rows, last_token_index(attention_mask)])
    return torch.stack(parts, dim=1)


class SequenceHead(nn.Module):
    """Classify a whole text from its pooled vectors (B, P, C): concatenated, an optional hidden layer, a
    linear layer to the labels."""

    def __init__(self, n_embd: int, num_labels: int, n_pooled: int = 1, dropout: float = 0.1, hidden: int = 0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        width = n_embd * n_pooled
        self.hidden = (nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)) if hidden
                       else nn.Identity())
        self.classifier = nn.Linear(hidden or width, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.dropout(pooled.flatten(1))))  # (B, L)


class SpanHead(nn.Module):
    """Start and end logits for every position: an answer is the span (s, e) maximising start[s] + end[e].
    `bidirectional` (BidirectionalLayer) first lets every position see the whole window, question and context alike.
    Chosen in YAML before the backbone is loaded: `build(n_embd)` makes its layers (tasks.qa.span reads it).

    Args:
        bidirectional: "none" (a linear layer on the causal states), "bilstm" or "transformer".
        hidden: the bidirectional layer's width (per direction for the BiLSTM).
        dropout: in the bidirectional layer.
    """

    def __init__(self, bidirectional: Literal["none", "bilstm", "transformer"] = "none", hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if bidirectional not in ("none", "bilstm", "transformer"):
            raise ValueError(f"bidirectional must be 'none', 'bilstm' or 'transformer', got {bidirectional!r}")
        self.bidirectional, self.hidden, self.dropout = bidirectional, hidden, dropout  # as given (a saved task's)
        self.bidirectional_layer: BidirectionalLayer | None = None
        self.qa_outputs: nn.Linear | None = None

    def build(self, n_embd: int) -> None:
        """Make the layers for states n_embd wide."""
        if self.bidirectional != "none":
            self.bidirectional_layer = BidirectionalLayer(self.bidirectional, n_embd, self.hidden, self.dropout)
        width = self.bidirectional_layer.out_dim if self.bidirectional_layer is not None else n_embd
        self.qa_outputs = nn.Linear(width, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.bidirectional_layer is not None:
            hidden = self.bidirectional_layer(hidden, attention_mask)
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
        self.counts: dict[str, int] = {}  # what the token budget let through (reset_counts)
        self.reset_counts()
        self._shots_key: tuple | None = None  # (tokenizer, examples) that _shots were encoded for
        self._shots: list[list[int]] = []

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
        if self._shots_key != key:
            self._shots_key = key
            self._shots = [tokenizer.encode(self.template.format(text=t) + self.label_words[y] + self.separator)
                           for t, y in self.examples]
        return self._shots

    def context_ids(self, tokenizer, text: str, budget: int) -> list[int]:
        """Token ids of [demonstrations..., query] in at most `budget` tokens. The query comes first (its
        text cut at the end when it alone is too long); then whole demonstrations, in order, while they fit.
        Why this order: a cut demonstration teaches a wrong label-text pairing, and a query cut from the left
        loses a news story's first lines, where its topic is (the benchmark's prompt rows measure the result)."""
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
        hidden = encode(ids, mask)  # (B*L, W, C)
        # only the positions that predict a label token go through the LM head: (sum of label lengths, V),
        # not (B*L, W, V), which for a 49k vocabulary is gigabytes
        row = torch.tensor([i for i, (_, n) in enumerate(spans) for _ in range(n)], device=ids.device)
        position = torch.tensor([start - 1 + k for start, n in spans for k in range(n)], device=ids.device)
        logprobs = F.log_softmax(lm_logits(hidden[row, position]).float(), dim=-1)  # (N, V)
        token_scores = logprobs.gather(1, ids[row, position + 1][:, None])[:, 0]  # log p(label token)
        scores = torch.zeros(len(spans), device=ids.device).index_add(0, row, token_scores)
        return scores.view(len(texts), len(label_ids))


class BidirectionalLayer(nn.Module):
    """What a causal backbone lacks: context from the right. Reads a sequence of units (B, U, C) and returns
    (B, U, out_dim) in which every unit has seen the whole sequence.

        "none"         the units as they are (a linear head on causal features)
        "bilstm"       one bidirectional LSTM layer, `hidden` per direction
        "transformer"  one bidirectional (unmasked) transformer encoder layer, width `hidden`
    """

    def __init__(self, kind: Literal["none", "bilstm", "transformer"], n_in: int, hidden: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        if kind not in ("none", "bilstm", "transformer"):
            raise ValueError(f"bidirectional must be 'none', 'bilstm' or 'transformer', got {kind!r}")
        self.kind = kind
        self.dropout = nn.Dropout(dropout)
        if kind == "bilstm":
            self.lstm = nn.LSTM(n_in, hidden, batch_first=True, bidirectional=True)
            self.out_dim = 2 * hidden
        elif kind == "transformer":
            self.proj = nn.Linear(n_in, hidden)
            heads = next(h for h in (8, 4, 2, 1) if hidden % h == 0 and hidden // h >= min(hidden, 32))
            self.layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True,
                                                    norm_first=True)
            self.out_dim = hidden
        else:
            self.out_dim = n_in

    def forward(self, units: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(units)
        if self.kind == "bilstm":
            x = self._bilstm(x, mask)
        elif self.kind == "transformer":
            padding = ~mask.bool()
            padding[:, 0] = False  # a row of padding only would attend to nothing (NaN); its outputs are unused
            x = self.layer(self.proj(x), src_key_padding_mask=padding)
        return self.dropout(x)  # (B, U, out_dim)

    def _bilstm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The bidirectional LSTM over right-padded rows (each row's units first), each direction run on the
        padded batch as a whole.

        The same numbers as packing the rows (pack_padded_sequence; to float rounding in fp32, about 2e-3
        apart under bf16 autocast, where oneDNN's kernels round differently), at a fraction of the training cost on a
        CPU: a packed LSTM's backward pass allocates a zero gradient of the whole input for each time step
        (O(T^2) memory traffic: three quarters of a SQuAD head's step), and the padded path runs oneDNN's
        fused kernels. Padding after a row's units cannot reach them going forward (the LSTM is causal);
        going backward, each row's units are reversed in place, padding left where it is, so the reverse
        direction starts at the row's last real unit."""
        B, T, C = x.shape
        H = self.lstm.hidden_size
        t = torch.arange(T, device=x.device)
        length = mask.long().sum(1, keepdim=True)  # (B, 1)
        reverse = torch.where(t < length, length - 1 - t, t)[..., None]  # (B, T, 1), its own inverse
        weights = self.lstm._flat_weights  # [w_ih, w_hh, b_ih, b_hh] forward, then the same reversed
        zeros = x.new_zeros(1, B, H)

        def direction(inputs: torch.Tensor, w: list[torch.Tensor]) -> torch.Tensor:  # (B, T, H)
            return torch.lstm(inputs, (zeros, zeros), w, True, 1, 0.0, self.training, False, True)[0]

        forward = direction(x, weights[:4])
        backward = direction(x.gather(1, reverse.expand(-1, -1, C)), weights[4:]).gather(1, reverse.expand(-1, -1, H))
        return torch.cat([forward, backward], dim=-1) * mask[..., None].to(x.dtype)  # padding out: zeros


class CRF(nn.Module):
    """A linear-chain conditional random field over tag sequences (Lafferty et al. 2001):

        score(y | x) = sum_t emit[t, y_t] + sum_t trans[y_{t-1}, y_t] + start[y_0] + end[y_last]
        loss = log Z(x) - score(gold),   Z summed over all tag sequences by the forward algorithm;
        decoding = the best-scoring sequence, by Viterbi.

    It learns which tag follows which (I-PER never after B-LOC), so a span comes out whole.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags. emissions (B, U, L), tags (B, U), mask (B, U) with
        every row's real units first."""
        emissions, mask = emissions.float(), mask.bool()
        B, U, _ = emissions.shape
        rows = torch.arange(B, device=emissions.device)
        tags = tags.clamp(min=0)
        gold = self.start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        alpha = self.start + emissions[:, 0]  # (B, L) log-sum of all paths ending in each tag
        for t in range(1, U):
            step = mask[:, t]
            gold = gold + torch.where(step, self.transitions[tags[:, t - 1], tags[:, t]]
                                      + emissions[rows, t, tags[:, t]], 0.0)
            scores = alpha[:, :, None] + self.transitions[None] + emissions[:, t, None, :]  # (B, from, to)
            alpha = torch.where(step[:, None], scores.logsumexp(1), alpha)
        last = tags[rows, mask.long().sum(1).clamp(min=1) - 1]
        gold = gold + self.end[last]
        nll = (alpha + self.end).logsumexp(1) - gold
        real = mask[:, 0]  # a row with no unit (nothing fitted) has no tags to score
        return (nll * real).sum() / real.sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag sequence of each row, as long as its real units."""
        emissions, mask = emissions.float(), mask.bool()
        B, U, _ = emissions.shape
        score = self.start + emissions[:, 0]
        back = []
        for t in range(1, U):
            best, arg = (score[:, :, None] + self.transitions[None]).max(1)  # (B, to)
            back.append(arg)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
        score = score + self.end
        lengths = mask.long().sum(1).tolist()
        out = []
        for b in range(B):
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(lengths[b] - 1, 0, -1):
                tag = int(back[t - 1][b, tag])
                path.append(tag)
            out.append(path[::-1])
        return out
