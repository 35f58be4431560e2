"""The KV cache: keys and values of every layer for the tokens already processed, and the one rule that tells a
decoding step from a prompt's prefill.

    KVCache      preallocated per layer; decoding appends one position per step, beam search and finished
                 rows reorder its rows
    is_prefill   whether a forward call reads a prompt (compute-bound) or takes a step (bound by the weights)
"""

from __future__ import annotations

import torch

from backbone.config import GPTConfig


class KVCache:
    """Keys and values of every layer for the tokens already processed, preallocated to `max_len`.

    Incremental decoding feeds only the new token; attention reads the cached keys/values instead of
    recomputing them, so a step costs O(S) instead of O(S^2).
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # tokens stored so far
        self.max_len = max_len
        self._layers()

    def _layers(self) -> None:
        """Each layer's (B, nkv, max_len, hs) view, made once: a decode step then writes and reads a layer with
        one slice each, not an index per dimension (dozens of small operators fewer per step)."""
        self.k_layers = [self.k[i] for i in range(self.k.size(0))]  # select views: unbind's cannot be written in place
        self.v_layers = [self.v[i] for i in range(self.v.size(0))]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (B, nkv, T, hs) keys/values of one layer; return all S = length + T of them."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested")
        keys, values = self.k_layers[layer], self.v_layers[layer]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]

    def reorder(self, batch_index: torch.Tensor) -> None:
        """Keep the rows named by batch_index (beam search: follow each beam's parent; decoding: drop the
        finished rows, copy a shared prompt to its rows). Only the filled positions are copied; on a CPU row
        by row (faster there than one fancy-indexing copy of the whole buffer; docs/decoding-and-quantisation.md
        has the figure), and
        dropping rows moves the kept ones down in place, with no new buffer to allocate."""
        n = self.length
        if self.k.device.type != "cpu":  # one indexed copy: many small ones would each launch a kernel
            k = self.k.new_empty(self.k.size(0), len(batch_index), *self.k.shape[2:])
            v = self.v.new_empty(k.shape)
            k[:, :, :, :n], v[:, :, :, :n] = self.k[:, batch_index, :, :n], self.v[:, batch_index, :, :n]
            self.k, self.v = k, v
            self._layers()
            return
        index = batch_index.tolist()
        in_place = index == sorted(set(index))  # a subset in order: each row moves down, or stays
        k = self.k if in_place else self.k.new_empty(self.k.size(0), len(index), *self.k.shape[2:])
        v = self.v if in_place else self.v.new_empty(k.shape)
        for new, old in enumerate(index):
            if not (in_place and new == old):
                k[:, new, :, :n] = self.k[:, old, :, :n]
                v[:, new, :, :n] = self.v[:, old, :, :n]
        self.k, self.v = k[:, : len(index)], v[:, : len(index)]
        self._layers()


# A call that feeds more new tokens than this reads a prompt (or its unshared rest, after a cached shared
# prefix): compute-bound work. Fewer new tokens after cached ones (a decode step, prompt lookup's checks) is
# bound by reading the weights.
PREFILL_TOKENS = 16


def is_prefill(new_tokens: int, cache: KVCache | None) -> bool:
    """Whether a forward call of `new_tokens` tokens with this cache is prompt reading rather than a step."""
    return cache is None or cache.length == 0 or new_tokens > PREFILL_TOKENS
