"""How a task adapts the backbone, chosen in YAML (`model.adapter: {class_path: tasks.adapters.LoRA, ...}`).

Every adapter follows one protocol:
    attach(backbone)           freeze the backbone, then inject or unfreeze what this adapter trains
    adapter_params()           the backbone-side parameters it trains (the head adds its own)
    encode(backbone, idx, mask) -> hidden (B, T, C) for the T real input positions, whatever was prepended
    states(...), mix(states)   per-layer states and their combination, between which a task picks its units
    cached_states(...), from_cached(...)   what a feature cache stores, and (adapters that cache tokens:
                               TopBlocks) how a step gets from it to states()

Trainable parameters are exactly what adapter_params() and the head return: nothing is chosen by matching
parameter names.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from backbone.kv_cache import KVCache
from backbone.model import GPT


@contextlib.contextmanager
def frozen_mode(backbone: GPT):
    """Run a frozen backbone in eval mode (no dropout: its features are the same in every epoch, cached or
    not), then give it back the mode it had."""
    training = backbone.training
    backbone.eval()
    try:
        yield backbone
    finally:
        backbone.train(training)


class Adapter(nn.Module):
    """Base adapter: the backbone is used as it is (its parameters trained or not, see subclasses)."""

    n_virtual_tokens = 0
    input_copies = 1  # how many times the input is fed (FrozenLayers' echo feeds it twice)
    cache = False  # whether its states can be computed once per split (tasks.features)
    # what a cache keeps: False, the task's units of states(); True, every real token of cached_states(), from
    # which each step computes the rest (TopBlocks: the input of the blocks it trains) and then picks the units
    caches_tokens = False
    packs_segments = True  # whether states() takes segment_ids (continuations of a shared prefix, packed)

    def attach(self, backbone: GPT, tokenizer=None) -> None:
        backbone.requires_grad_(False)
        for p in self.adapter_params(backbone):
            p.requires_grad_(True)

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return []

    def encode(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return backbone(idx, attention_mask, segment_ids=segment_ids)

    def states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None, grad: bool = False) -> torch.Tensor:
        """(B, T, nL, C) per-layer states, what `mix` combines; one "layer" here: encode's output.
        segment_ids: packed continuations of a shared prefix (GPT.layer_states), where packs_segments.
        grad: keep the autograd graph through a frozen backbone (FrozenLayers); an adapter whose backbone
        trains keeps it whenever grad mode is on."""
        return self.encode(backbone, idx, attention_mask, segment_ids)[:, :, None]

    def mix(self, states: torch.Tensor) -> torch.Tensor:
        """(..., nL, C) -> (..., C). A task picks its units (words, pooled vectors) between states and mix."""
        return states[..., 0, :]

    def cached_states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
                      segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, nL, C): what a feature cache is built from (tasks.features); states() unless the adapter
        caches tokens."""
        return self.states(backbone, idx, attention_mask, segment_ids)

    def cache_key(self) -> dict:
        """What, beyond the backbone and the data, this adapter's cached states depend on (the cache's name)."""
        raise NotImplementedError(f"{type(self).__name__} caches nothing")

    def from_cached(self, backbone: GPT, cached: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Cached token states (B, T, nL, C) -> states() of the same batch, for an adapter that caches tokens."""
        raise NotImplementedError(f"{type(self).__name__} does not cache tokens")


class FullFineTune(Adapter):
    """Every backbone parameter trains."""

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return [] if backbone is None else list(backbone.parameters())


class Frozen(Adapter):
    """No backbone parameter trains: a linear probe of the pretrained features (only the head learns)."""


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) * B A dropout(x), with W frozen, A (r x in) random, B (out x r) zero at start
    (Hu et al., 2021), so training starts exactly at the pretrained function."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    @property
    def weight(self) -> torch.Tensor:  # so code that reads .weight (e.g. dtype checks) still works
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One plain linear layer computing the same function (dropout off): W' = W + (alpha / r) B A.
        backbone.quantize folds adapters in this way before quantising a decoding copy."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        linear.weight.copy_(base.weight + (self.lora_B @ self.lora_A) * self.scale)
        if base.bias is not None:
            linear.bias.copy_(base.bias)
        return linear


LoRATarget = Literal["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]


class LoRA(Adapter):
    """Low-rank updates on chosen projections of every block.

    Args:
        rank: r, the rank of each update.
        alpha: scale numerator; the update is multiplied by alpha / r.
        dropout: dropout on the LoRA input path.
        targets: which projections get an update: "c_attn" (fused q,k,v), "attn.c_proj", "c_fc", "mlp.c_proj".
    """

    def __init__(self, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 targets: list[LoRATarget] | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.targets = list(targets or ["c_attn", "attn.c_proj"])
        self.layers: list[LoRALinear] = []

    def _slots(self, block: nn.Module):
        slots = {"c_attn": (block.attn, "c_attn"), "attn.c_proj": (block.attn, "c_proj"),
                 "c_fc": (block.mlp, "c_fc"), "mlp.c_proj": (block.mlp, "c_proj")}
        for target in self.targets:
            if target not in slots:
                raise ValueError(f"unknown LoRA target {target!r}; choose from {sorted(slots)}")
            yield slots[target]

    def attach(self, backbone: GPT, tokenizer=None) -> None:
        backbone.requires_grad_(False)
        self.layers = self.inject(backbone.transformer.h)

    def inject(self, blocks) -> list[LoRALinear]:
        """Replace the targets of these blocks by LoRALinear layers wrapping them; returns the new layers."""
        added = []
        for block in blocks:
            for parent, name in self._slots(block):
                base = getattr(parent, name)
                if isinstance(base, LoRALinear):
                    raise ValueError("LoRA is already attached to this backbone")
                layer = LoRALinear(base, self.rank, self.alpha, self.dropout).to(base.weight.device)
                setattr(parent, name, layer)
                added.append(layer)
        return added

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in (layer.lora_A, layer.lora_B)]


class PromptTuning(Adapter):
    """A learned soft prompt of n virtual tokens prepended to the input embeddings (Lester et al., 2021).

    Args:
        n_virtual_tokens: length of the soft prompt.
        init_text: initialise from this text's token embeddings (repeated or cut to length); None draws
            random vocabulary embeddings.
    """

    def __init__(self, n_virtual_tokens: int = 16, init_text: str | None = None):
        super().__init__()
        if n_virtual_tokens < 1:
            raise ValueError(f"n_virtual_tokens must be >= 1, got {n_virtual_tokens}")
        self.n_virtual_tokens, self.init_text = n_virtual_tokens, init_text
        self.soft_prompt: nn.Parameter | None = None

    def attach(self, backbone: GPT, tokenizer=None) -> None:
        wte = backbone.transformer.wte.weight
        if self.init_text and tokenizer is not None:
            ids = tokenizer.encode(self.init_text) or [tokenizer.eos_id]
            ids = (ids * math.ceil(self.n_virtual_tokens / len(ids)))[: self.n_virtual_tokens]
        else:
            ids = torch.randint(0, wte.size(0), (self.n_virtual_tokens,),
                                generator=torch.Generator().manual_seed(0)).tolist()
        self.soft_prompt = nn.Parameter(wte.detach()[torch.tensor(ids, device=wte.device)].clone())
        super().attach(backbone, tokenizer)

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return [self.soft_prompt] if self.soft_prompt is not None else []

    packs_segments = False  # the soft prompt sits before the shared prefix

    def encode(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        if segment_ids is not None:
            raise ValueError("PromptTuning cannot read packed sequences (segment_ids)")
        B, n = idx.size(0), self.n_virtual_tokens
        embeds = torch.cat([self.soft_prompt.expand(B, -1, -1), backbone.transformer.wte(idx)], dim=1)
        mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], dim=1)
        return backbone(None, mask, inputs_embeds=embeds)[:, n:]  # (B, T, C): drop the virtual positions


class PrefixCache(KVCache):
    """A KV cache that already holds n positions per layer and appends new ones by concatenation, not by
    writing into a preallocated buffer: in-place writes would break autograd through the learned prefix."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (n_layer, B, nkv, n, hs)
        self.length = self.max_len = k.size(3)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)


class PrefixTuning(Adapter):
    """Learned keys and values for n virtual positions in every layer (Li & Liang, 2021).

    They are exactly what a KV cache holds for an earlier prefix, so they are fed as a pre-filled cache:
    every real token attends to them, and no input embedding changes.

    Args:
        n_virtual_tokens: number of prefix positions per layer.
    """

    def __init__(self, n_virtual_tokens: int = 16):
        super().__init__()
        if n_virtual_tokens < 1:
            raise ValueError(f"n_virtual_tokens must be >= 1, got {n_virtual_tokens}")
        self.n_virtual_tokens = n_virtual_tokens
        self.prefix_k: nn.Parameter | None = None
        self.prefix_v: nn.Parameter | None = None

    def attach(self, backbone: GPT, tokenizer=None) -> None:
        c = backbone.config
        shape = (c.n_layer, c.n_kv_head, self.n_virtual_tokens, c.head_size)
        device = backbone.transformer.wte.weight.device
        self.prefix_k = nn.Parameter(torch.randn(shape, device=device) * 0.02)
        self.prefix_v = nn.Parameter(torch.randn(shape, device=device) * 0.02)
        super().attach(backbone, tokenizer)

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return [p for p in (self.prefix_k, self.prefix_v) if p is not None]

    def prefilled_cache(self, batch_size: int) -> PrefixCache:
        expand = lambda p: p[:, None].expand(-1, batch_size, -1, -1, -1)  # noqa: E731  (L, B, nkv, n, hs)
        return PrefixCache(expand(self.prefix_k), expand(self.prefix_v))

    packs_segments = False  # its prefix is a cache, and segments are computed without one

    def encode(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        if segment_ids is not None:
            raise ValueError("PrefixTuning cannot read packed sequences (segment_ids)")
        B, T = idx.shape
        cache = self.prefilled_cache(B)
        mask = torch.cat([attention_mask.new_ones(B, self.n_virtual_tokens), attention_mask], dim=1)
        return backbone(idx, mask, cache=cache)  # (B, T, C)


class FrozenLayers(Adapter):
    """A frozen backbone read at several depths, mixed by learned weights (ELMo's scalar mix):

        h_t = gamma * sum_k softmax(s)_k * h_t^(layer k)

    Middle layers often carry more linguistic information than the last one, which is shaped for
    next-token prediction. Nothing in the backbone trains, so its states can be computed once and cached
    (tasks.features): `states()` gives them per layer, `mix()` combines them; `encode` does both.

    Args:
        layers: which states, numbered as GPT.layer_states numbers them (0: the embeddings, -1: the final
            normed output).
        echo: feed the input twice and read the second copy (Springer et al. 2024, "Repetition improves
            language model embeddings"): every position of the second copy has already seen the whole text,
            so a causal model's features see both sides, for twice the tokens.
        cache: compute each split's features once and reuse them (tasks.features); False computes them in
            every step.
    """

    def __init__(self, layers: list[int] | None = None, echo: bool = False, cache: bool = True):
        super().__init__()
        self.layers = list(layers if layers is not None else [-1])
        self.echo, self.cache = echo, cache
        self.input_copies = 2 if echo else 1
        self.packs_segments = not echo  # a packed row fed twice would not be two copies of each sequence
        self.mix_logits = nn.Parameter(torch.zeros(len(self.layers)))
        self.gamma = nn.Parameter(torch.ones(()))

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return [self.mix_logits, self.gamma]

    def cache_key(self) -> dict:
        return {"layers": self.layers, "echo": self.echo}

    def states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None, grad: bool = False) -> torch.Tensor:
        """(B, T, nL, C) states of the chosen layers at the T input positions (right-padded input). Always
        without dropout: frozen features are the same in every epoch, cached or not. Without a graph, unless
        `grad` (GPT.layer_states)."""
        if segment_ids is not None and not self.packs_segments:
            raise ValueError("echo cannot read packed sequences (segment_ids)")
        with frozen_mode(backbone):
            return self._states(backbone, idx, attention_mask, segment_ids, grad)

    def _states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor | None, grad: bool) -> torch.Tensor:
        if not self.echo:
            return backbone.layer_states(idx, attention_mask, self.layers, segment_ids=segment_ids, grad=grad)
        lengths = attention_mask.long().sum(1)  # (B,)
        B, T = idx.shape
        t = torch.arange(T, device=idx.device)
        # row b becomes x_b x_b pad...: position p < n_b reads x[p], n_b <= p < 2 n_b reads x[p - n_b]
        p = torch.arange(2 * T, device=idx.device)[None, :]
        source = torch.where(p < lengths[:, None], p, p - lengths[:, None]).clamp(0, T - 1)
        doubled = idx.gather(1, source)
        mask = (p < 2 * lengths[:, None]).to(attention_mask.dtype)
        states = backbone.layer_states(doubled, mask, self.layers, grad=grad)  # (B, 2T, nL, C)
        second = (lengths[:, None] + t[None, :]).clamp(max=2 * T - 1)  # (B, T) the second copy's positions
        return states[torch.arange(B, device=idx.device)[:, None], second]

    def mix(self, states: torch.Tensor) -> torch.Tensor:
        """(..., nL, C) -> (..., C). Each layer is normalised first (a layer norm without parameters): the
        residual stream's scale grows by orders of magnitude with depth, and the mix should weigh content."""
        weights = self.mix_logits.softmax(0).to(states.dtype)
        normed = F.layer_norm(states, states.shape[-1:])
        return self.gamma * torch.einsum("...lc,l->...c", normed, weights)

    def encode(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.mix(self.states(backbone, idx, attention_mask, segment_ids))


class TopBlocks(Adapter):
    """Fine-tune the top of the backbone only: blocks k.. and the final norm train, the blocks below stay
    frozen. What enters block k is then the same in every epoch, so, like frozen features, it is computed once
    per split and cached (tasks.features: every token's state), and a training step runs only the top blocks'
    forward and backward: for k = L - 4 of a 30-block model, under a seventh of a full fine-tune's step.

    Args:
        first_block: k, the first block that trains; negative counts from the top (-2: the last two).
        lora_rank: None trains every weight of the top blocks (and ln_f); r > 0 trains a LoRA update of rank
            r on their four projections instead (ln_f then stays as it is).
        lora_alpha: the LoRA scale's numerator (alpha / r).
        cache: compute the states entering block k once per split (False: in every step).
    """

    caches_tokens = True
    packs_segments = False  # the top blocks run on right-padded rows: no packed prefix mask

    def __init__(self, first_block: int = -2, lora_rank: int | None = None, lora_alpha: float = 16.0,
                 cache: bool = True):
        super().__init__()
        if lora_rank is not None and lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 (or null: train the blocks fully), got {lora_rank}")
        self.first_block, self.lora_rank, self.lora_alpha, self.cache = first_block, lora_rank, lora_alpha, cache
        self.first: int | None = None  # k counted from the bottom, once attached
        self.trained: list[nn.Parameter] = []

    @property
    def layers(self) -> list[int]:
        """The layer whose states the cache holds (GPT.layer_states' numbering): the input of block k."""
        if self.first is None:
            raise RuntimeError("TopBlocks is not attached to a backbone yet")
        return [self.first]

    def attach(self, backbone: GPT, tokenizer=None) -> None:
        n = backbone.config.n_layer
        first = self.first_block + n if self.first_block < 0 else self.first_block
        if not 0 <= first < n:
            raise ValueError(f"first_block must name one of the backbone's {n} blocks ({-n}..{n - 1}), "
                             f"got {self.first_block}")
        self.first = first
        backbone.requires_grad_(False)
        top = backbone.transformer.h[first:]
        if self.lora_rank is None:
            self.trained = [*top.parameters(), *backbone.transformer.ln_f.parameters()]
        else:
            lora = LoRA(self.lora_rank, self.lora_alpha, targets=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"])
            self.trained = [p for layer in lora.inject(top) for p in (layer.lora_A, layer.lora_B)]
        for p in self.trained:
            p.requires_grad_(True)

    def adapter_params(self, backbone: GPT | None = None) -> list[nn.Parameter]:
        return list(self.trained)

    def cache_key(self) -> dict:  # the same keys as FrozenLayers' (echo never), and what is stored
        return {"layers": self.layers, "echo": False, "cached": "tokens"}

    def _below(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor, grad: bool) -> torch.Tensor:
        """(B, T, 1, C) the residual stream entering block k: frozen blocks, so without dropout, and without a
        graph unless `grad` (GPT.layer_states)."""
        with frozen_mode(backbone):
            return backbone.layer_states(idx, attention_mask, self.layers, grad=grad)

    def cached_states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
                      segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        if segment_ids is not None:
            raise ValueError("TopBlocks cannot read packed sequences (segment_ids)")
        return self._below(backbone, idx, attention_mask, grad=False)

    def from_cached(self, backbone: GPT, cached: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, C) states entering block k -> (B, T, 1, C) the backbone's output, through the trained blocks."""
        x = cached[:, :, 0].to(backbone.transformer.ln_f.weight.dtype)
        return backbone.blocks_from(x, attention_mask, self.first)[:, :, None]

    def states(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None, grad: bool = False) -> torch.Tensor:
        """(B, T, 1, C) the output: a graph through the top blocks whenever grad mode is on (they train), through
        the frozen ones below only with `grad`."""
        if segment_ids is not None:
            raise ValueError("TopBlocks cannot read packed sequences (segment_ids)")
        return self.from_cached(backbone, self._below(backbone, idx, attention_mask, grad), attention_mask)

    def encode(self, backbone: GPT, idx: torch.Tensor, attention_mask: torch.Tensor,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.states(backbone, idx, attention_mask, segment_ids)[:, :, 0]
