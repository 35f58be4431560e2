"""GPTConfig: one typed description of every backbone gptsuite can build, plus named presets.

The same dataclass covers the GPT-2 family (learned positions, LayerNorm, GELU MLP, biases) and the Llama
family (RoPE, RMSNorm, SwiGLU, grouped-query attention, no biases). Every field can be set from YAML.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["learned", "sinusoidal", "rope"]
MLPKind = Literal["gelu", "swiglu"]

_CHOICES = {"norm": ("layernorm", "rmsnorm"), "positions": ("learned", "sinusoidal", "rope"), "mlp": ("gelu", "swiglu")}


@dataclass
class GPTConfig:
    """Shape and flavour of a decoder-only transformer.

    Args:
        vocab_size: number of token ids the embedding accepts.
        block_size: longest sequence (context length) the model is built for.
        n_layer: number of transformer blocks.
        n_head: number of query heads.
        n_kv_head: number of key/value heads (grouped-query attention); None means n_head (plain multi-head).
        n_embd: width of the residual stream.
        intermediate_size: hidden width of the MLP; None means 4 * n_embd.
        norm: "layernorm" (GPT-2) or "rmsnorm" (Llama).
        norm_eps: epsilon inside the norm.
        positions: "learned" (GPT-2), "sinusoidal" (Vaswani et al.) or "rope" (rotary, Llama).
        rope_theta: base of the rotary frequencies.
        mlp: "gelu" (GPT-2, tanh approximation) or "swiglu" (Llama).
        bias: biases in the linear layers and LayerNorm.
        dropout: dropout on embeddings, attention weights and residual branches.
        tie_embeddings: share the token embedding with the output projection.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    n_embd: int = 768
    intermediate_size: int | None = None
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    positions: Positions = "learned"
    rope_theta: float = 10000.0
    mlp: MLPKind = "gelu"
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.n_embd
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        for f in dataclasses.fields(self):  # a JSON file may say "false" (a string) or "1e-5" where a number goes
            value, kind = getattr(self, f.name), str(f.type)
            if kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"GPTConfig.{f.name} must be true or false, got {value!r}")
            if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"GPTConfig.{f.name} must be a number, got {value!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"GPTConfig.n_head ({self.n_head}) must be divisible by n_kv_head ({self.n_kv_head})")
        if self.positions == "rope" and self.head_size % 2:
            raise ValueError(f"GPTConfig.n_embd / n_head = {self.head_size} must be even for rope positions")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.norm_eps > 0:
            raise ValueError(f"GPTConfig.norm_eps must be positive, got {self.norm_eps}")
        if not self.rope_theta > 0:
            raise ValueError(f"GPTConfig.rope_theta must be positive, got {self.rope_theta}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    # --- presets and serialisation -------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """Build a named preset (see MODEL_PRESETS); keyword overrides replace single fields."""
        if name not in MODEL_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
        return cls(**{**MODEL_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {unknown}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> GPTConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err


_LLAMA = dict(norm="rmsnorm", positions="rope", mlp="swiglu", bias=False)

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # 2 layers, 32 wide: builds and runs in milliseconds, for tests.
    "nano": dict(vocab_size=512, block_size=64, n_layer=2, n_head=4, n_embd=32),
    # CPU presets use a byte-level BPE of 8,192 tokens trained on the corpus: with the 50k GPT-2 vocabulary
    # the embedding and the output projection would hold most of the parameters and most of the FLOPs.
    "tiny": dict(vocab_size=8192, block_size=256, n_layer=4, n_head=4, n_embd=256, dropout=0.0),
    "small": dict(vocab_size=8192, block_size=512, n_layer=6, n_head=6, n_embd=384, dropout=0.1),
    "gpt2-124m": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
    "smollm2-135m": dict(
        vocab_size=49152, block_size=8192, n_layer=30, n_head=9, n_kv_head=3, n_embd=576,
        intermediate_size=1536, norm_eps=1e-5, rope_theta=100000.0, **_LLAMA,
    ),
}
