"""Decoding constraints (backbone.generate's AllowFn): which tokens may come next, row by row.

CopySpans makes every completion a span copied from its row's source text: extractive answers, the way a
span head answers, but chosen by the language model itself. After generated tokens g_0 .. g_{L-1}, row r may
continue with source[j + L] for every start j where source[j : j + L] == g (the spans still matched), or end
(an end token) once it has copied at least one token.

A span usually sits inside the source after a space (" Paris"), while an answer that opens the assistant's
turn starts without one ("Paris"): the first token may also be the space-less spelling of a source token,
where the vocabulary has it as one token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class CopySpans:
    """An AllowFn: row r's completion is a contiguous span of `sources[r]`'s tokens, then an end token.

    Args:
        tokenizer: the backbone's tokenizer (sources are encoded without bos).
        sources: one text per row of the decoding batch.
        end_texts: texts whose single tokens may end a completion once a span has begun (the eos always may).
    """

    def __init__(self, tokenizer, sources: Sequence[str], end_texts: Sequence[str] = ("\n",)):
        self.sources = [torch.tensor(ids, dtype=torch.long) for ids in tokenizer.encode_batch(list(sources))]
        ends = {tokenizer.eos_id} | {ids[0] for ids in (tokenizer.encode(t) for t in end_texts) if len(ids) == 1}
        self.ends = torch.tensor(sorted(ends), dtype=torch.long)
        self.vocab_size = tokenizer.vocab_size
        self._bare: dict[int, int] = {}  # token -> its spelling without the leading space (itself when none)
        self._tokenizer = tokenizer
        self.first = [self._with_bare(src) for src in self.sources]  # (S,) each: the bare spelling per position

    def _with_bare(self, source: torch.Tensor) -> torch.Tensor:
        out = []
        for t in source.tolist():
            if t not in self._bare:
                text = self._tokenizer.decode([t])
                ids = self._tokenizer.encode(text[1:]) if text.startswith(" ") and len(text) > 1 else [t]
                self._bare[t] = ids[0] if len(ids) == 1 else t
            out.append(self._bare[t])
        return torch.tensor(out, dtype=torch.long)

    def __call__(self, generated: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        device, generated = generated.device, generated.cpu()  # the sources live on the CPU
        allowed = torch.zeros(len(rows), self.vocab_size, dtype=torch.bool)
        L = generated.size(1)
        for i, r in enumerate(rows.tolist()):
            source, bare = self.sources[r], self.first[r]
            if not len(source):  # nothing to copy: the answer can only end
                allowed[i, self.ends] = True
                continue
            if L == 0:  # any source token starts a span, with or without its leading space
                allowed[i, source] = True
                allowed[i, bare] = True
                continue
            if L >= len(source) + 1:
                allowed[i, self.ends] = True
                continue
            g = generated[i]
            starts = torch.arange(len(source) - L + 1)  # spans of length L that fit
            first = source[starts].eq(g[0]) | bare[starts].eq(g[0])
            if L > 1:
                windows = source.unfold(0, L, 1)[:, 1:]  # (S - L + 1, L - 1): source[j + 1 : j + L]
                first &= windows.eq(g[1:]).all(dim=1)
            matched = starts[first]
            if len(matched):  # a matched span: copy on (where the source goes on), or stop
                following = matched + L
                allowed[i, source[following[following < len(source)]]] = True
                allowed[i, self.ends] = True
            else:  # nothing matches (a finished row's filler): only an end token
                allowed[i, self.ends] = True
        return allowed.to(device)
