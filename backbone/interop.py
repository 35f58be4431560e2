"""Conversion between gptsuite's GPT and Hugging Face `transformers` GPT-2 / Llama models.

Only tensors move: GPT-2 stores its linear layers as Conv1D (weight is (in, out), so it is transposed);
Llama keeps q/k/v and gate/up as separate projections, which gptsuite fuses into c_attn and c_fc.
Both use the same "rotate half" RoPE layout, so no permutation of q/k is needed here.
`transformers` is imported lazily: it is only needed to call these functions (extra `[hf]`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from backbone.artifact import save_backbone
from backbone.config import GPTConfig
from backbone.model import GPT

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
    import transformers

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
def state_dict_from_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face state dict -> gptsuite state dict (no lm_head when embeddings are tied)."""
    out: dict[str, torch.Tensor] = {}
    if config.positions == "learned":  # GPT-2
        sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
        out["transformer.wte.weight"] = sd["wte.weight"]
        out["transformer.wpe.weight"] = sd["wpe.weight"]
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
        for i in range(config.n_layer):
            src, dst = f"h.{i}.", f"transformer.h.{i}."
            for norm in ("ln_1", "ln_2"):
                out[dst + f"{norm}.weight"], out[dst + f"{norm}.bias"] = (sd[src + f"{norm}.weight"],
                                                                          sd[src + f"{norm}.bias"])
            for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                out[dst + f"{layer}.weight"] = sd[src + f"{layer}.weight"].t()  # Conv1D stores (in, out)
                out[dst + f"{layer}.bias"] = sd[src + f"{layer}.bias"]
    else:  # Llama
        sd = {k.removeprefix("model."): v for k, v in sd.items()}
        out["transformer.wte.weight"] = sd["embed_tokens.weight"]
        out["transformer.ln_f.weight"] = sd["norm.weight"]
        for i in range(config.n_layer):
            src, dst = f"layers.{i}.", f"transformer.h.{i}."
            out[dst + "ln_1.weight"] = sd[src + "input_layernorm.weight"]
            out[dst + "ln_2.weight"] = sd[src + "post_attention_layernorm.weight"]
            out[dst + "attn.c_attn.weight"] = torch.cat(
                [sd[src + f"self_attn.{p}_proj.weight"] for p in ("q", "k", "v")], dim=0)
            out[dst + "attn.c_proj.weight"] = sd[src + "self_attn.o_proj.weight"]
            out[dst + "mlp.c_fc.weight"] = torch.cat(
                [sd[src + "mlp.gate_proj.weight"], sd[src + "mlp.up_proj.weight"]], dim=0)
            out[dst + "mlp.c_proj.weight"] = sd[src + "mlp.down_proj.weight"]
    if not config.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def state_dict_to_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """gptsuite state dict -> Hugging Face state dict (the inverse of state_dict_from_hf)."""
    out: dict[str, torch.Tensor] = {}
    hs = config.head_size
    if config.positions == "learned":
        out["transformer.wte.weight"] = sd["transformer.wte.weight"]
        out["transformer.wpe.weight"] = sd["transformer.wpe.weight"]
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = (sd["transformer.ln_f.weight"],
                                                                        sd["transformer.ln_f.bias"])
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_attn.bias",
                         "attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.bias"):
                out[p + name] = sd[p + name]
            for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                out[p + f"{layer}.weight"] = sd[p + f"{layer}.weight"].t()
    else:
        out["model.embed_tokens.weight"] = sd["transformer.wte.weight"]
        out["model.norm.weight"] = sd["transformer.ln_f.weight"]
        for i in range(config.n_layer):
            p, q = f"transformer.h.{i}.", f"model.layers.{i}."
            out[q + "input_layernorm.weight"] = sd[p + "ln_1.weight"]
            out[q + "post_attention_layernorm.weight"] = sd[p + "ln_2.weight"]
            qw, kw, vw = sd[p + "attn.c_attn.weight"].split(
                [config.n_head * hs, config.n_kv_head * hs, config.n_kv_head * hs], dim=0)
            (out[q + "self_attn.q_proj.weight"], out[q + "self_attn.k_proj.weight"],
             out[q + "self_attn.v_proj.weight"]) = qw, kw, vw
            out[q + "self_attn.o_proj.weight"] = sd[p + "attn.c_proj.weight"]
            gate, up = sd[p + "mlp.c_fc.weight"].chunk(2, dim=0)
            out[q + "mlp.gate_proj.weight"], out[q + "mlp.up_proj.weight"] = gate, up
            out[q + "mlp.down_proj.weight"] = sd[p + "mlp.c_proj.weight"]
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["transformer.wte.weight"])
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
    import transformers

    hf_config = config_to_hf(model.config)
    cls = (transformers.GPT2LMHeadModel if isinstance(hf_config, transformers.GPT2Config)
           else transformers.LlamaForCausalLM)
    hf_model = cls(hf_config)
    hf_model.load_state_dict(state_dict_to_hf(model.state_dict(), model.config), strict=False)
    return hf_model.eval()


def import_hf_folder(path: str | Path, out_dir: str | Path) -> Path:
    """Convert a local Hugging Face GPT-2 / Llama folder (config.json + safetensors + tokenizer files) into a
    gptsuite backbone artifact. Reads safetensors only; never a pickle."""
    import transformers

    from backbone.tokenizer import Tokenizer

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
    import json

    from tokenizers import Tokenizer as HFTokenizer

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
