"""The logit lens (nostalgebraist, 2020): what each layer would predict next, if the model stopped there.

A GPT's residual stream h_k after k blocks is read by the final norm and the LM head only at the top:

    logits_n = W_U · h_n,   h_n = ln_f(stream after the last block)       (what the model predicts)

The lens applies the same read-out to every intermediate stream:

    logits_k = W_U · ln_f(h_k),   k = 0 (the embeddings) ... n_layer - 1

so layer k's row shows which next token the stream already points at. Early layers mostly echo the input
token; the prediction forms in the middle and top layers. (The lens is a probe with no training: where a
layer's basis differs from the output's, it reads nothing useful, which is itself informative.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backbone.model import GPT


@torch.no_grad()
def layer_logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """idx (1, T) -> next-token logits read from every layer's stream: (n_layer + 1, T, V); the last row is
    exactly the model's own prediction."""
    n = model.config.n_layer
    states = model.layer_states(idx, None, list(range(n + 1)))[0]  # (T, n+1, C): streams 0..n-1, then ln_f(h_n)
    streams = states.transpose(0, 1)  # (n+1, T, C)
    normed = torch.cat([model.transformer.ln_f(streams[:n]), streams[n:]])  # the top one is normed already
    return model.lm_logits(normed).float()  # (n+1, T, V)


@dataclass
class LensGrid:
    """The lens over one text: for each layer (rows) and input position (columns), the most likely next
    tokens and their probabilities."""

    tokens: list[str]  # the input tokens, as text
    top_tokens: list[list[list[str]]]  # [layer][position][rank]
    top_probs: torch.Tensor  # (n_layer + 1, T, top)

    def table(self) -> str:
        """Layers as rows, positions as columns, each cell the top next token and its probability."""
        width = max(8, *(len(t) for t in self.tokens))
        head = "layer " + "".join(f"{t!r:>{width + 2}}" for t in self.tokens)
        rows = [f"{k:>5} " + "".join(f"{cell[0]!r:>{width - 4}} {p[0]:.2f}" for cell, p in zip(layer, probs))
                for k, (layer, probs) in enumerate(zip(self.top_tokens, self.top_probs.tolist()))]
        return "\n".join([head, *rows])


def logit_lens(model: GPT, tokenizer, text: str, top: int = 3) -> LensGrid:
    """The logit lens over `text` (at most the model's block size of tokens)."""
    ids = tokenizer.encode(text)[: model.config.block_size]
    if not ids:
        raise ValueError("the text encodes to no tokens")
    probs = layer_logits(model, torch.tensor([ids])).softmax(dim=-1)  # (n+1, T, V)
    top_probs, top_ids = probs.topk(min(top, probs.size(-1)), dim=-1)
    decode = lambda i: tokenizer.decode([i])  # noqa: E731
    return LensGrid(tokens=[decode(i) for i in ids],
                    top_tokens=[[[decode(i) for i in cell] for cell in layer] for layer in top_ids.tolist()],
                    top_probs=top_probs)
