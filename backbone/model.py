"""The GPT backbone: token embeddings -> n_layer x (attention, MLP) blocks -> final norm.

Parameter names follow GPT-2 (`transformer.h.0.attn.c_attn.weight`, ...) so checkpoints map one to one.
Shapes in comments: B batch, T new tokens, S = cached + new tokens, C n_embd, nh query heads,
nkv key/value heads, hs head size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from backbone.config import GPTConfig
from backbone.kv_cache import KVCache, is_prefill


# --------------------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------------------
def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed encoding of Vaswani et al. (2017):  PE[p, 2i] = sin(p / 10000^(2i/d)),
    PE[p, 2i+1] = cos(p / 10000^(2i/d)).  Returns (n_positions, dim)."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (P, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (d/2,)
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


class RotaryEmbedding(nn.Module):
    """RoPE (Su et al., 2021) in the "rotate half" layout used by Hugging Face Llama.

    Pairs (x_j, x_{j+hs/2}) of a query or key are rotated by the angle p * theta^(-2j/hs), so the dot product
    of a query at position p and a key at position q depends only on p - q.
    """

    def __init__(self, head_size: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        angles = position_ids[..., None].float() * self.inv_freq  # (B, T, hs/2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, hs)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, h, T, hs).  x * cos + rotate_half(x) * sin, with rotate_half(x1, x2) = (-x2, x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# --------------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------------
def make_dropout(p: float) -> nn.Module:
    """Dropout, or nothing at all when p is 0 (an inference backbone such as SmolLM2): a dropout module that does
    nothing still runs an operator in every sublayer of every decode step."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":  # x / sqrt(mean(x^2) + eps) * g
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)  # (x - mean) / std * g + b


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention.

    For each head:  Attention(Q, K, V) = softmax(Q K^T / sqrt(hs) + M) V,  with M = -inf where a query may
    not see a key (the future, or padding). Heads run in parallel and are concatenated, then projected by
    c_proj. With n_kv_head < n_head, each key/value head serves n_head / n_kv_head query heads.
    """

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, config.head_size
        qkv_width = (config.n_head + 2 * config.n_kv_head) * config.head_size
        self.c_attn = nn.Linear(config.n_embd, qkv_width, bias=config.bias)  # fused q, k, v projections
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = make_dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        cache: KVCache | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C); mask (B, 1, T, S) bool (True = may attend) or None for plain causal.
        Returns y (B, T, C) and, if need_weights, the attention probabilities (B, nh, T, S)."""
        B, T, C = x.shape
        nh, nkv = self.n_head, self.n_kv_head
        heads = self.c_attn(x).view(B, T, nh + 2 * nkv, self.head_size).transpose(1, 2)  # (B, nh + 2 nkv, T, hs)
        qk, v = heads[:, : nh + nkv], heads[:, nh + nkv :]  # v: (B, nkv, T, hs)
        if rope is not None:  # queries and keys rotated in one pass (fewer operators per decode step)
            qk = apply_rotary(qk, *rope)
        q, k = qk.split([nh, nkv], dim=1)  # (B, nh, T, hs), (B, nkv, T, hs)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nkv, S, hs)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            y, weights = self._math_attention(q, k, v, mask, dropout_p)
        elif T == 1 and mask is None and nkv != nh:
            # A decode step with grouped-query attention: query head h reads key/value head h // (nh / nkv), so
            # each key/value head's query heads are one (nh / nkv)-row group attending to it, and the keys and
            # values are read in place rather than repeated per query head (enable_gqa copies them, a cost that
            # grows with the cached positions).
            weights = None
            y = F.scaled_dot_product_attention(q.reshape(B, nkv, nh // nkv, self.head_size), k, v,
                                               dropout_p=dropout_p).reshape(B, nh, 1, self.head_size)
        else:
            weights = None
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None and T > 1,
                enable_gqa=self.n_kv_head != self.n_head,
            )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y)), weights

    def _math_attention(self, q, k, v, mask, dropout_p):
        """The same computation as scaled_dot_product_attention, spelled out so the weights can be returned."""
        groups = self.n_head // self.n_kv_head
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, nh, S, hs)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, T, S)
        if mask is None:  # plain causal: query t sees keys 0..t
            T, S = scores.shape[-2:]
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = F.softmax(scores, dim=-1)
        return F.dropout(weights, p=dropout_p) @ v, weights  # (B, nh, T, hs), (B, nh, T, S)


class MLP(nn.Module):
    """Position-wise feed-forward network: GELU(x W1) W2 (GPT-2) or (SiLU(x Wg) * x Wu) W2 (SwiGLU)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        width = config.intermediate_size * (2 if self.swiglu else 1)  # SwiGLU: gate and up fused
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)
        self.dropout = make_dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm residual block:  x = x + Attn(Norm(x));  x = x + MLP(Norm(x)).

    The residual path carries the signal unchanged through depth; each sublayer only adds a correction,
    which is what lets deep stacks train. Normalising the sublayer input (pre-norm, GPT-2) keeps it stable.
    """

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, mask, rope, cache, need_weights=False):
        attn_out, weights = self.attn(self.ln_1(x), mask, rope, cache, need_weights)
        x = x + attn_out
        x = x + self.mlp(self.ln_2(x))
        return x, weights


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------
class GPT(nn.Module):
    """Decoder-only transformer. `forward` returns hidden states (B, T, C); `lm_logits` maps them to (B, T, V)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # inference precision (backbone.precision.set_inference_precision): None runs as the caller does;
        # torch.bfloat16 runs the blocks under autocast (the final norm and the LM head stay fp32), except in
        # incremental steps after a cached prefix, which run in fp32 (see forward)
        self.autocast_dtype: torch.dtype | None = None
        # recompute each block's activations in the backward pass instead of keeping them: memory ~1 block
        # instead of n_layer blocks, for about one extra forward pass of compute
        self.gradient_checkpointing = False
        # weight-only quantisation for inference (backbone.quantize): "none", "int8" or "int4"
        self.quantization = "none"
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=make_dropout(config.dropout),
                h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                ln_f=make_norm(config),
            )
        )
        if config.positions == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        elif config.positions == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_table(config.block_size, config.n_embd), persistent=False)
        self.rotary = RotaryEmbedding(config.head_size, config.rope_theta) if config.positions == "rope" else None
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * n_layer), so the
        # variance of the stream does not grow with depth (two residual additions per block).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # --- forward ---------------------------------------------------------------------------------------
    def forward(
        self,
        idx: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """idx (B, T) token ids -> hidden states (B, T, C).

        attention_mask (B, S): 1 for real tokens, 0 for padding, over cached + new tokens (S = past + T).
        Positions count real tokens only, so a left-padded prompt gets the same positions as an unpadded one.
        With a cache, only the new tokens are fed and their keys/values are appended to it.
        inputs_embeds (B, T, C) replaces the token embedding lookup (soft prompts); then idx is None.
        segment_ids (B, T): continuations of a shared prefix packed in one row (see layer_states).
        """
        like = idx if idx is not None else inputs_embeds
        # An incremental step (a few new tokens after cached ones: decoding, prompt lookup's checks) is bound
        # by reading the weights: autocast would read every fp32 weight to cast it, then read the bf16 copy,
        # so it is never faster. Those steps run in fp32; a prompt's prefill keeps autocast.
        incremental = not is_prefill(like.size(1), cache)
        with contextlib.nullcontext() if incremental else self._autocast(like):
            hidden, _ = self._run(idx, attention_mask, position_ids, cache, need_weights=False,
                                  inputs_embeds=inputs_embeds, segment_ids=segment_ids)
        return hidden.float() if self.autocast_dtype is not None else hidden

    def _autocast(self, like: torch.Tensor):
        """Autocast to autocast_dtype when it is set; otherwise nothing (an outer autocast, say Lightning's
        bf16-mixed, stays in force: a disabled autocast context would switch it off)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=like.device.type, dtype=self.autocast_dtype)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> next-token logits (B, T, V)."""
        return self.lm_head(hidden)

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention probabilities of every layer, each (B, nh, T, T), through the explicit math path."""
        _, weights = self._run(idx, attention_mask, None, None, need_weights=True)
        return weights

    def layer_states(self, idx: torch.Tensor, attention_mask: torch.Tensor | None, layers: list[int],
                     segment_ids: torch.Tensor | None = None, grad: bool = False) -> torch.Tensor:
        """Hidden states after chosen blocks, stacked: (B, T, len(layers), C), for frozen-feature heads.

        Layer k is the residual stream after k blocks (0: the embeddings); n_layer (or -1) is the final
        output, after ln_f, as `forward` returns it (the numbering of transformers' output_hidden_states).
        Blocks above the highest layer asked for are not run.

        segment_ids (B, T) packs several continuations of one shared prefix into a row: segment 0 is the
        prefix, and a token of segment g > 0 sees the prefix and the earlier tokens of its own segment only,
        at the positions it would have right after the prefix. Each continuation's states are then exactly
        those of prefix + continuation run alone, while the prefix is computed once for all of them (a
        context read once for all its questions).

        grad: keep the autograd graph (token attribution differentiates the states with respect to the
        embeddings); by default none is built: frozen features need none, and it would hold every block's
        activations.
        """
        n = self.config.n_layer
        wanted = [k + n + 1 if k < 0 else k for k in layers]
        if not wanted or any(not 0 <= k <= n for k in wanted):
            raise ValueError(f"layers must be in [-{n + 1}, {n}] for this {n}-layer backbone, got {layers}")
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), self._autocast(idx):
            _, _, states = self._run(idx, attention_mask, None, None, need_weights=False, keep=set(wanted),
                                     segment_ids=segment_ids)
        return torch.stack([states[k] for k in wanted], dim=2).float()  # (B, T, nL, C)

    def blocks_from(self, x: torch.Tensor, attention_mask: torch.Tensor | None, first: int) -> torch.Tensor:
        """The rest of `forward` from the residual stream entering block `first`, x (B, T, C) as
        layer_states(idx, mask, [first]) gives it, for a right-padded batch: blocks first.. and ln_f -> (B, T, C).
        Partial fine-tuning trains these blocks on cached x (tasks.adapters.TopBlocks)."""
        if not 0 <= first < self.config.n_layer:  # layer n_layer is already the output, after ln_f
            raise ValueError(f"first must be a block, in [0, {self.config.n_layer - 1}], got {first}")
        B, T = x.shape[:2]
        mask = self._attention_mask(attention_mask, B, T, 0, x.device)
        position_ids = self._positions(attention_mask, 0, B, T, x.device)
        with self._autocast(x):
            rope = self.rotary(position_ids, x.dtype) if self.rotary is not None else None
            for block in self.transformer.h[first:]:
                x, _ = self._block(block, x, mask, rope, None, False)
            x = self.transformer.ln_f(x)
        return x.float() if self.autocast_dtype is not None else x

    @staticmethod
    def _positions(attention_mask, past: int, B: int, T: int, device) -> torch.Tensor:
        """(B, T) positions of the new tokens: only real tokens advance the position, so a left-padded prompt
        gets the same positions as an unpadded one."""
        if attention_mask is not None:
            return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        return torch.arange(past, past + T, device=device).expand(B, T)

    def _block(self, block, x, mask, rope, cache, need_weights):
        """One block, its activations recomputed in the backward pass when gradient checkpointing is on."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
            return torch.utils.checkpoint.checkpoint(block, x, mask, rope, cache, need_weights, use_reentrant=False)
        return block(x, mask, rope, cache, need_weights)

    def _run(self, idx, attention_mask, position_ids, cache, need_weights, inputs_embeds=None, keep=None,
             segment_ids=None):
        if (idx is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of idx and inputs_embeds")
        B, T = idx.shape if idx is not None else inputs_embeds.shape[:2]
        device = idx.device if idx is not None else inputs_embeds.device
        past = cache.length if cache is not None else 0
        S = past + T
        if S > self.config.block_size and self.config.positions != "rope" and segment_ids is None:
            raise ValueError(f"sequence of {S} tokens exceeds block_size {self.config.block_size}")
        if attention_mask is not None and attention_mask.shape != (B, S):
            raise ValueError(f"attention_mask must be (batch, cached + new) = {(B, S)}, "
                             f"got {tuple(attention_mask.shape)}")
        if segment_ids is None:
            mask = self._attention_mask(attention_mask, B, T, past, device)
        else:
            if cache is not None:
                raise ValueError("segment_ids are for a packed row read whole, not with a KV cache")
            mask, position_ids = self._segment_mask(segment_ids, attention_mask, position_ids, B, T)
        if position_ids is None:
            position_ids = self._positions(attention_mask, past, B, T, device)

        x = self.transformer.wte(idx) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if self.config.positions == "learned":
            x = x + self.transformer.wpe(position_ids)
        elif self.config.positions == "sinusoidal":
            x = x + self.sinusoid[position_ids].to(x.dtype)
        rope = self.rotary(position_ids, x.dtype) if self.rotary is not None else None
        x = self.transformer.drop(x)
        all_weights, kept = [], {}
        for i, block in enumerate(self.transformer.h):
            if keep is not None:
                if i in keep:
                    kept[i] = x
                if max(keep) <= i:  # layer_states: nothing above is asked for
                    return x, all_weights, kept
            x, weights = self._block(block, x, mask, rope, cache, need_weights)
            all_weights.append(weights)
        if cache is not None:
            cache.length = S
        x = self.transformer.ln_f(x)
        if keep is not None:
            kept[len(self.transformer.h)] = x
            return x, all_weights, kept
        return x, all_weights

    def _segment_mask(self, segment_ids, attention_mask, position_ids, B, T) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, T, T) mask and (B, T) positions of a packed row (layer_states' segment_ids): causal, and a
        continuation (segment > 0) sees the prefix (segment 0) and itself only. A dense mask, so packed rows
        do without scaled_dot_product_attention's is_causal fast path."""
        if segment_ids.shape != (B, T):
            raise ValueError(f"segment_ids must be (batch, tokens) = {(B, T)}, got {tuple(segment_ids.shape)}")
        visible = (segment_ids[:, :, None] == segment_ids[:, None, :]) | (segment_ids[:, None, :] == 0)
        mask = self._attention_mask(attention_mask, B, T, 0, segment_ids.device, force=True) & visible[:, None]
        if position_ids is None:  # a token's position: how many real tokens it sees, itself excluded
            real = torch.ones_like(visible[:, 0]) if attention_mask is None else attention_mask.bool()
            position_ids = ((mask[:, 0] & real[:, None, :]).sum(-1) - 1).clamp(min=0)  # (B, T)
        longest = int(position_ids.max()) + 1 if T else 0  # a packed row may be longer than any sequence in it
        if longest > self.config.block_size and self.config.positions != "rope":
            raise ValueError(f"a packed sequence of {longest} tokens exceeds block_size {self.config.block_size}")
        return mask, position_ids

    @staticmethod
    def _attention_mask(attention_mask, B, T, past, device, force=False) -> torch.Tensor | None:
        """Boolean (B, 1, T, S) mask, True where query t may attend key s; None means plain causal (unless
        `force`)."""
        if attention_mask is None and past == 0 and not force:
            return None  # scaled_dot_product_attention's is_causal fast path
        if attention_mask is None and T == 1 and not force:
            return None  # one new token attends to everything cached
        S = past + T
        q_pos = torch.arange(past, S, device=device)[:, None]  # (T, 1)
        k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
        mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, S) causal
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
        # A padding query would see no key at all (softmax of all -inf is NaN); let every position see
        # itself. Outputs at padding positions are never used.
        return (mask | (k_pos == q_pos)).expand(B, 1, T, S)

    # --- bookkeeping -----------------------------------------------------------------------------------
    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        embedding = getattr(self.transformer.wte, "weight", None)  # a buffer-backed lookup once quantised
        if exclude_embeddings and isinstance(embedding, nn.Parameter):
            n -= embedding.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward) = 6 N + 12 L T C (PaLM appendix B), N = non-embedding
        parameters plus the output projection, L layers, T context, C width."""
        c = self.config
        T = seq_len or c.block_size
        n = self.num_params(exclude_embeddings=True) + (c.vocab_size * c.n_embd if c.tie_embeddings else 0)
        return 6 * n + 12 * c.n_layer * T * c.n_embd

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        p = self.transformer.ln_f.weight  # a parameter in every variant (quantisation replaces wte's weight)
        return KVCache(self.config, batch_size, max_len or self.config.block_size, p.device, p.dtype)
