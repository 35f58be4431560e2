"""The logit lens (nostalgebraist, 2020): what each layer would predict next, if the model stopped there.

A GPT's residual stream h_k after k blocks is read by the final norm and the LM head only at the top:

    logits_n = W_U · h_n,   h_n = ln_f(stream after the last block)       (what the model predicts)

The lens applies the same read-out to every intermediate stream:

    logits_k = W_U · ln_f(h_k),   k = 0 (the embeddings) ... n_layer - 1

so layer k's row shows which next token the stream already points at. With tied embeddings (SmolLM2's),
layer 0 reads back the input token itself; the prediction forms in the upper layers. (The lens is a probe with
no training: where a layer's basis differs from the output's, it reads nothing useful, which is itself
informative.)
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

    def cells(self) -> list[list[tuple[str, float]]]:
        """[layer][position]: the most likely next token and its probability."""
        return [[(cell[0], p[0]) for cell, p in zip(layer, probs)]
                for layer, probs in zip(self.top_tokens, self.top_probs.tolist())]

    def table(self) -> str:
        """Layers as rows, positions as columns, each cell the top next token and its probability."""
        cells = [[f"{token!r} {p:.2f}" for token, p in row] for row in self.cells()]
        width = max(len(c) for row in [[repr(t) for t in self.tokens], *cells] for c in row) + 2
        lines = ["layer" + "".join(f"{t!r:>{width}}" for t in self.tokens)]
        lines += [f"{k:>5}" + "".join(f"{c:>{width}}" for c in row) for k, row in enumerate(cells)]
        return "\n".join(lines)


MAX_TOKENS = 32  # positions read: the grid is (layers, positions, vocabulary) floats, 195 MB for SmolLM2 at 32


def logit_lens(model: GPT, tokenizer, text: str, top: int = 3, max_tokens: int = MAX_TOKENS) -> LensGrid:
    """The logit lens over the first `max_tokens` tokens of `text`."""
    if max_tokens < 1 or top < 1:
        raise ValueError(f"max_tokens and top must be at least 1, got {max_tokens} and {top}")
    ids = tokenizer.encode(text)[: min(max_tokens, model.config.block_size)]
    if not ids:
        raise ValueError("the text encodes to no tokens")
    probs = layer_logits(model, torch.tensor([ids])).softmax(dim=-1)  # (n+1, T, V)
    top_probs, top_ids = probs.topk(min(top, probs.size(-1)), dim=-1)
    decode = lambda i: tokenizer.decode([i])  # noqa: E731
    return LensGrid(tokens=[decode(i) for i in ids],
                    top_tokens=[[[decode(i) for i in cell] for cell in layer] for layer in top_ids.tolist()],
                    top_probs=top_probs)
