"""Conversion between gptsuite's GPT and Hugging Face `transformers` GPT-2 / Llama models.

Only tensors move: GPT-2 stores its linear layers as Conv1D (weight is (in, out), so it is transposed);
Llama keeps q/k/v and gate/up as separate projections, which gptsuite fuses into c_attn and c_fc.
Both use the same "rotate half" RoPE layout, so no permutation of q/k is needed here. One table per family
(GPT2_WEIGHTS, LLAMA_WEIGHTS) names every tensor on both sides and drives both directions; backbone.gguf
reads llama.cpp's names for the same tensors from LLAMA_WEIGHTS.
`transformers` is imported lazily: it is only needed to call these functions (extra `[hf]`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer

from backbone.artifact import save_backbone
from backbone.config import GPTConfig
from backbone.model import GPT
from backbone.tokenizer import Tokenizer

GPT2_TYPES = ("gpt2",)
LLAMA_TYPES = ("llama",)


# --------------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------------
def config_from_hf(hf_config) -> GPTConfig:
    kind = hf_config.model_type
    if kind in GPT2_TYPES:
        act = hf_config.activation_function
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"GPT-2 activation {act!r} is not supported (gptsuite uses tanh-approximated GELU)")
        return GPTConfig(
            vocab_size=hf_config.vocab_size, block_size=hf_config.n_positions, n_layer=hf_config.n_layer,
            n_head=hf_config.n_head, n_embd=hf_config.n_embd,
            intermediate_size=hf_config.n_inner or 4 * hf_config.n_embd,
            norm="layernorm", norm_eps=hf_config.layer_norm_epsilon, positions="learned", mlp="gelu", bias=True,
            dropout=0.0, tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", True)),
        )
    if kind in LLAMA_TYPES:
        if getattr(hf_config, "attention_bias", False) or getattr(hf_config, "mlp_bias", False):
            raise ValueError("Llama checkpoints with attention or MLP biases are not supported")
        head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
        if head_dim * hf_config.num_attention_heads != hf_config.hidden_size:
            raise ValueError("Llama head_dim * num_attention_heads must equal hidden_size")
        rope_theta = _rope_theta(hf_config)
        return GPTConfig(
            vocab_size=hf_config.vocab_size, block_size=hf_config.max_position_embeddings,
            n_layer=hf_config.num_hidden_layers, n_head=hf_config.num_attention_heads,
            n_kv_head=hf_config.num_key_value_heads, n_embd=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size, norm="rmsnorm", norm_eps=hf_config.rms_norm_eps,
            positions="rope", rope_theta=rope_theta, mlp="swiglu", bias=False, dropout=0.0,
            tie_embeddings=bool(hf_config.tie_word_embeddings),
        )
    raise ValueError(f"model_type {kind!r} is not supported; gptsuite converts {GPT2_TYPES + LLAMA_TYPES}")


def _rope_theta(hf_config) -> float:
    params = getattr(hf_config, "rope_parameters", None) or {}
    scaling = getattr(hf_config, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or "default"
    if kind != "default":
        raise ValueError(f"RoPE scaling {kind!r} is not supported")
    return float(params.get("rope_theta") or getattr(hf_config, "rope_theta", 10000.0))


def config_to_hf(config: GPTConfig):
    import transformers  # why: optional (extra [hf]), and seconds to import

    if config.positions == "learned" and config.norm == "layernorm" and config.mlp == "gelu" and config.bias:
        if config.n_kv_head != config.n_head:
            raise ValueError("GPT-2 has no grouped-query attention (n_kv_head must equal n_head)")
        return transformers.GPT2Config(
            vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
            n_layer=config.n_layer, n_head=config.n_head, n_inner=config.intermediate_size,
            activation_function="gelu_new", layer_norm_epsilon=config.norm_eps,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=config.tie_embeddings,
            bos_token_id=None, eos_token_id=None,
        )
    if config.positions == "rope" and config.norm == "rmsnorm" and config.mlp == "swiglu" and not config.bias:
        return transformers.LlamaConfig(
            vocab_size=config.vocab_size, hidden_size=config.n_embd, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
            num_key_value_heads=config.n_kv_head, max_position_embeddings=config.block_size,
            rms_norm_eps=config.norm_eps, rope_theta=config.rope_theta, tie_word_embeddings=config.tie_embeddings,
            attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None,
        )
    raise ValueError("only GPT-2-shaped (learned/layernorm/gelu/bias) or Llama-shaped "
                     "(rope/rmsnorm/swiglu/no bias) configs have a transformers equivalent")


# --------------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightName:
    """One gptsuite tensor and the tensors it is in a Hugging Face checkpoint (and in llama.cpp's GGUF).

    Names hold `{i}` for a block's index. Hugging Face names are under the model's base prefix
    (HF_PREFIX: "transformer." for GPT-2, "model." for Llama); the LM head, outside it, is handled apart
    (it exists only when the embeddings are untied). Several names: gptsuite's tensor is theirs stacked
    along the rows, in order (Llama's q/k/v in c_attn, gate/up in c_fc), split again by `rows(config)`.
    """

    ours: str
    hf: tuple[str, ...]
    gguf: tuple[str, ...] = ()  # llama.cpp's names for the same tensors as `hf` (backbone.gguf)
    transposed: bool = False  # GPT-2's Conv1D stores (in, out), nn.Linear (out, in)
    rows: Callable[[GPTConfig], list[int]] | None = None  # fused: the rows of each of the `hf` tensors


def _qkv_rows(c: GPTConfig) -> list[int]:
    return [c.n_head * c.head_size, c.n_kv_head * c.head_size, c.n_kv_head * c.head_size]


def _gate_up_rows(c: GPTConfig) -> list[int]:
    return [c.intermediate_size, c.intermediate_size]


def _gpt2_layer(name: str) -> list[WeightName]:
    """A GPT-2 linear layer: its Conv1D weight, transposed, and its bias."""
    return [WeightName(f"{name}.weight", (f"{name}.weight",), transposed=True),
            WeightName(f"{name}.bias", (f"{name}.bias",))]


def _same_names(*names: str) -> list[WeightName]:
    return [WeightName(name, (name,)) for name in names]


GPT2_WEIGHTS = [
    *_same_names("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "h.{i}.ln_1.weight", "h.{i}.ln_1.bias"),
    *_gpt2_layer("h.{i}.attn.c_attn"), *_gpt2_layer("h.{i}.attn.c_proj"),
    *_same_names("h.{i}.ln_2.weight", "h.{i}.ln_2.bias"),
    *_gpt2_layer("h.{i}.mlp.c_fc"), *_gpt2_layer("h.{i}.mlp.c_proj"),
]
LLAMA_WEIGHTS = [
    WeightName("wte.weight", ("embed_tokens.weight",), ("token_embd.weight",)),
    WeightName("ln_f.weight", ("norm.weight",), ("output_norm.weight",)),
    WeightName("h.{i}.ln_1.weight", ("layers.{i}.input_layernorm.weight",), ("blk.{i}.attn_norm.weight",)),
    WeightName("h.{i}.attn.c_attn.weight",
               tuple(f"layers.{{i}}.self_attn.{p}_proj.weight" for p in ("q", "k", "v")),
               tuple(f"blk.{{i}}.attn_{p}.weight" for p in ("q", "k", "v")), rows=_qkv_rows),
    WeightName("h.{i}.attn.c_proj.weight", ("layers.{i}.self_attn.o_proj.weight",), ("blk.{i}.attn_output.weight",)),
    WeightName("h.{i}.ln_2.weight", ("layers.{i}.post_attention_layernorm.weight",), ("blk.{i}.ffn_norm.weight",)),
    WeightName("h.{i}.mlp.c_fc.weight", ("layers.{i}.mlp.gate_proj.weight", "layers.{i}.mlp.up_proj.weight"),
               ("blk.{i}.ffn_gate.weight", "blk.{i}.ffn_up.weight"), rows=_gate_up_rows),
    WeightName("h.{i}.mlp.c_proj.weight", ("layers.{i}.mlp.down_proj.weight",), ("blk.{i}.ffn_down.weight",)),
]
WEIGHTS = {"gpt2": GPT2_WEIGHTS, "llama": LLAMA_WEIGHTS}
OUR_PREFIX = "transformer."  # gptsuite's names in the tables are under it
HF_PREFIX = {"gpt2": "transformer.", "llama": "model."}  # the Hugging Face models' base_model_prefix
LM_HEAD = "lm_head.weight"  # the same name in both, outside the prefixes


def _family(config: GPTConfig) -> str:
    """The checkpoint family a config converts to: GPT-2 with learned positions, else Llama."""
    return "gpt2" if config.positions == "learned" else "llama"


def _each_tensor(weights: list[WeightName], config: GPTConfig) -> Iterator[tuple[WeightName, int | None]]:
    """(weight, block index) for every tensor: the model-wide ones (index None), then block by block."""
    yield from ((weight, None) for weight in weights if "{i}" not in weight.ours)
    for i in range(config.n_layer):
        yield from ((weight, i) for weight in weights if "{i}" in weight.ours)


def state_dict_from_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face state dict -> gptsuite state dict (no lm_head when embeddings are tied)."""
    family = _family(config)
    sd = {k.removeprefix(HF_PREFIX[family]): v for k, v in sd.items()}  # with or without the base prefix
    out: dict[str, torch.Tensor] = {}
    for weight, i in _each_tensor(WEIGHTS[family], config):
        parts = [sd[name.format(i=i)] for name in weight.hf]
        tensor = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        out[OUR_PREFIX + weight.ours.format(i=i)] = tensor.t() if weight.transposed else tensor
    if not config.tie_embeddings:
        out[LM_HEAD] = sd[LM_HEAD]
    return {k: v.contiguous() for k, v in out.items()}


def state_dict_to_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """gptsuite state dict -> Hugging Face state dict (the inverse of state_dict_from_hf)."""
    family = _family(config)
    out: dict[str, torch.Tensor] = {}
    for weight, i in _each_tensor(WEIGHTS[family], config):
        tensor = sd[OUR_PREFIX + weight.ours.format(i=i)]
        tensor = tensor.t() if weight.transposed else tensor
        parts = tensor.split(weight.rows(config), dim=0) if weight.rows else [tensor]
        for name, part in zip(weight.hf, parts, strict=True):
            out[HF_PREFIX[family] + name.format(i=i)] = part
    out[LM_HEAD] = sd.get(LM_HEAD, sd[OUR_PREFIX + "wte.weight"])
    return {k: v.contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------
def from_hf(hf_model) -> GPT:
    """A GPT with the weights and shape of a transformers GPT2LMHeadModel or LlamaForCausalLM."""
    config = config_from_hf(hf_model.config)
    model = GPT(config)
    state = state_dict_from_hf({k: v.detach().float() for k, v in hf_model.state_dict().items()}, config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_embeddings)]
    if missing or unexpected:
        raise ValueError(f"conversion left missing {missing} / unexpected {unexpected}")
    return model.eval()


def to_hf(model: GPT):
    """A transformers GPT2LMHeadModel or LlamaForCausalLM with this GPT's weights."""
    import transformers  # why: optional (extra [hf]), and seconds to import

    hf_config = config_to_hf(model.config)
    cls = (transformers.GPT2LMHeadModel if isinstance(hf_config, transformers.GPT2Config)
           else transformers.LlamaForCausalLM)
    hf_model = cls(hf_config)
    hf_model.load_state_dict(state_dict_to_hf(model.state_dict(), model.config), strict=False)
    return hf_model.eval()


def import_hf_folder(path: str | Path, out_dir: str | Path) -> Path:
    """Convert a local Hugging Face GPT-2 / Llama folder (config.json + safetensors + tokenizer files) into a
    gptsuite backbone artifact. Reads safetensors only; never a pickle."""
    import transformers  # why: optional (extra [hf]), and seconds to import

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path / 'config.json'} is missing: not a Hugging Face model folder")
    if not list(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path} holds no *.safetensors weights (pickled .bin files are not loaded)")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True)
    model = from_hf(hf_model)
    tokenizer = None
    if (path / "tokenizer.json").is_file():
        tokenizer = _tokenizer_from_hf_folder(path, Tokenizer)
    return save_backbone(out_dir, model, tokenizer)


def _tokenizer_from_hf_folder(path: Path, tokenizer_cls):
    backend = HFTokenizer.from_file(str(path / "tokenizer.json"))
    special = {}
    config_path = path / "tokenizer_config.json"
    if config_path.is_file():
        cfg = json.loads(config_path.read_text())
        special = {k: _token_text(cfg.get(k)) for k in ("eos_token", "bos_token", "pad_token")}
        special["chat_template"] = cfg.get("chat_template")
    template_path = path / "chat_template.jinja"  # where transformers 5 saves the template
    if not special.get("chat_template") and template_path.is_file():
        special["chat_template"] = template_path.read_text(encoding="utf-8")
    special = {k: v for k, v in special.items() if v}
    special.setdefault("eos_token", "<|endoftext|>")
    return tokenizer_cls(backend, **special)


def _token_text(token):
    return token.get("content") if isinstance(token, dict) else token
