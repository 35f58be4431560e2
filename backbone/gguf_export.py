"""Export a gptsuite backbone as a GGUF file (llama.cpp's format): the inverse of backbone.gguf's import.

    gptsuite export gguf artifacts/backbones/tiny --out tiny.gguf [--type f32|f16|q8_0|q4_1]

Both families the backbone has a llama.cpp equivalent for are written:

    llama   RoPE, RMSNorm, SwiGLU, no biases (SmolLM2): q/k rows permuted to llama.cpp's interleaved RoPE
            layout (backbone.gguf.permute_qk), the fused q/k/v and gate/up split into llama.cpp's tensors
    gpt2    learned positions, LayerNorm, GELU, biases (the tiny backbone): llama.cpp's `gpt2` architecture,
            whose fused `attn_qkv` is the same tensor as gptsuite's c_attn

A layer wrapped by an adapter (LoRA) is written with its update merged in (`merged()`), so a fine-tuned
backbone exports as one plain model. The tokenizer goes into the metadata (tokens, merges, token types,
special-token ids, the pre-tokenizer's name, the chat template), so llama.cpp tokenises as gptsuite does.

Types: f32 and f16 keep every weight; q8_0 and q4_1 quantise the matrices in blocks of 32 (q4_1 is the layout
of SmolLM2's own GGUF and of backbone.quantize's int4), with the token embedding kept at q8_0 and norms and
biases in f32, as llama.cpp's own quantiser does. Writing needs the `gguf` package (extra [hf]).
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backbone.artifact import load_backbone
from backbone.config import GPTConfig
from backbone.gguf import PRE_TOKENIZERS, TOKEN_CONTROL, TOKEN_NORMAL, GGUFError, permute_qk
from backbone.interop import LLAMA_WEIGHTS, state_dict_to_hf
from backbone.quantize import block_linears

TYPES = ("f32", "f16", "q8_0", "q4_1")


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it (a user's error, one
    line on the command line)."""


def require_gguf():
    """The gguf package, or MissingExtra naming the extra that installs it."""
    try:
        import gguf  # why: optional (extra [hf])
    except ImportError as err:
        raise MissingExtra("writing GGUF files needs the `gguf` package: pip install -e '.[hf]'") from err
    return gguf
DEFAULT_TYPE = "q4_1"


# --------------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------------
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's fp32 state dict with every adapter's update folded into the layer it wraps."""
    model = _with_adapters_merged(model)
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


def _with_adapters_merged(model: nn.Module) -> nn.Module:
    """`model` itself when no block layer is wrapped by an adapter, else a copy with each wrapper replaced by its
    `merged()` linear layer (W' = W + scale * B A for LoRA), as quantize() folds them (block_linears)."""
    def wrapped(m: nn.Module) -> list[tuple[nn.Module, str]]:
        return [(parent, name) for parent, name in block_linears(m) if not isinstance(getattr(parent, name), nn.Linear)]

    if not wrapped(model):
        return model
    model = copy.deepcopy(model)
    with torch.no_grad():
        for parent, name in wrapped(model):
            setattr(parent, name, getattr(parent, name).merged())
    return model


def llama_tensors(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, np.ndarray]:
    """llama.cpp's tensors of a Llama-family backbone (q/k rows in its interleaved RoPE order)."""
    hf = state_dict_to_hf(sd, config)
    out = {}
    for weight in LLAMA_WEIGHTS:
        blocks = range(config.n_layer) if "{i}" in weight.ours else [None]
        for i in blocks:
            for hf_name, gguf_name in zip(weight.hf, weight.gguf, strict=True):
                w = hf["model." + hf_name.format(i=i)].numpy()
                if gguf_name.endswith("attn_q.weight"):
                    w = permute_qk(w, config.n_head)
                elif gguf_name.endswith("attn_k.weight"):
                    w = permute_qk(w, config.n_kv_head)
                out[gguf_name.format(i=i)] = w
    if not config.tie_embeddings:
        out["output.weight"] = hf["lm_head.weight"].numpy()
    return out


GPT2_NAMES = {  # gptsuite's name (under transformer.) -> llama.cpp's gpt2 name; weights and biases alike
    "wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm",
    "h.{i}.ln_1": "blk.{i}.attn_norm", "h.{i}.attn.c_attn": "blk.{i}.attn_qkv",
    "h.{i}.attn.c_proj": "blk.{i}.attn_output", "h.{i}.ln_2": "blk.{i}.ffn_norm",
    "h.{i}.mlp.c_fc": "blk.{i}.ffn_up", "h.{i}.mlp.c_proj": "blk.{i}.ffn_down",
}


def gpt2_tensors(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, np.ndarray]:
    """llama.cpp's tensors of a GPT-2-family backbone (nn.Linear's (out, in) is GGUF's row order already)."""
    out = {}
    for ours, theirs in GPT2_NAMES.items():
        for i in range(config.n_layer) if "{i}" in ours else [None]:
            for suffix in ("weight", "bias"):
                key = f"transformer.{ours.format(i=i)}.{suffix}"
                if key in sd:
                    out[f"{theirs.format(i=i)}.{suffix}"] = sd[key].numpy()
    if not config.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"].numpy()
    return out


def family(config: GPTConfig) -> str:
    """The llama.cpp architecture a config exports as ("gpt2" or "llama"); the error says why when none fits."""
    if (config.positions, config.norm, config.mlp, config.bias) == ("learned", "layernorm", "gelu", True):
        if config.n_kv_head != config.n_head:
            raise GGUFError("llama.cpp's gpt2 has no grouped-query attention (n_kv_head must equal n_head)")
        return "gpt2"
    if (config.positions, config.norm, config.mlp, config.bias) == ("rope", "rmsnorm", "swiglu", False):
        return "llama"
    raise GGUFError(f"llama.cpp has no architecture for positions={config.positions}, norm={config.norm}, "
                    f"mlp={config.mlp}, bias={config.bias}: GGUF export takes the GPT-2 family "
                    "(learned/layernorm/gelu/bias) or the Llama family (rope/rmsnorm/swiglu/no bias)")


# --------------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------------
def pre_tokenizer_name(backend_json: dict) -> str:
    """llama.cpp's name for a tokenizer's pre-tokenizer (tokenizer.ggml.pre), from its `tokenizers` JSON."""
    pre = backend_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    kinds = [p.get("type") for p in parts]
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"]:
        return "llama-bpe"
    raise GGUFError(f"no llama.cpp pre-tokenizer matches this tokenizer's {json.dumps(pre)[:120]}; "
                    f"known families: {sorted(set(PRE_TOKENIZERS.values()))}")


def add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """tokenizer.ggml.*: the byte-level BPE vocabulary and merges, padded to the model's vocabulary."""
    backend_json = json.loads(tokenizer.backend.to_str())
    if backend_json["model"]["type"] != "BPE":
        raise GGUFError(f"only byte-level BPE tokenizers export to GGUF, not {backend_json['model']['type']}")
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise GGUFError("the tokenizer's ids are not 0..n-1 without gaps")
    special = {a["content"] for a in backend_json.get("added_tokens", []) if a.get("special")}
    types = [TOKEN_CONTROL if t in special else TOKEN_NORMAL for t in tokens]
    for extra in range(vocab_size - len(tokens)):  # a vocabulary padded past the tokenizer (rows never emitted)
        tokens.append(f"[PAD{extra}]")
        types.append(TOKEN_CONTROL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend_json["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(backend_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokenizer.eos_id)
    if tokenizer.pad_token is not None:
        writer.add_pad_token_id(tokenizer.pad_id)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    writer.add_add_bos_token(tokenizer.bos_id is not None)
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


# --------------------------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------------------------
def _encoded(name: str, w: np.ndarray, kind: str):
    """(data, type) of one tensor: matrices quantised as `kind` asks where their rows split into blocks of 32;
    the token embedding at most q8_0; vectors (norms, biases) in f32."""
    from gguf import GGMLQuantizationType  # why: optional (extra [hf])
    from gguf.quants import quantize  # why: optional (extra [hf])

    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim < 2 or kind == "f32":
        return w, GGMLQuantizationType.F32
    if kind == "f16":
        return w.astype(np.float16), GGMLQuantizationType.F16
    if w.shape[-1] % 32:
        return w.astype(np.float16), GGMLQuantizationType.F16
    qtype = GGMLQuantizationType.Q8_0 if kind == "q8_0" or name.startswith(("token_embd", "position_embd")) \
        else GGMLQuantizationType.Q4_1
    return quantize(w, qtype), qtype


def write_gguf(model: nn.Module, tokenizer, path: str | Path, kind: str = DEFAULT_TYPE, name: str = "gptsuite") -> Path:
    """Write `model` (adapters merged) and `tokenizer` to `path` as a GGUF of type `kind`; returns the path.
    Written to a temporary file first, so an interrupted export never leaves a half file under `path`."""
    gguf = require_gguf()
    if kind not in TYPES:
        raise ValueError(f"GGUF type must be one of {', '.join(TYPES)}, got {kind!r}")
    if getattr(model, "quantization", "none") != "none":
        raise GGUFError("export the float backbone, not a quantised copy (--type chooses the GGUF's own quantisation)")
    config: GPTConfig = model.config
    arch = family(config)
    sd = merged_state_dict(model)
    tensors = llama_tensors(sd, config) if arch == "llama" else gpt2_tensors(sd, config)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: two writers of one path (two demo requests) never share a half-written file
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        _write(gguf, partial, arch, name, kind, config, tokenizer, tensors)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write(gguf, partial: Path, arch: str, name: str, kind: str, config: GPTConfig, tokenizer, tensors) -> None:
    writer = gguf.GGUFWriter(str(partial), arch)
    writer.add_name(name)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1}[kind])
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_kv_head)
    if arch == "llama":
        writer.add_rope_dimension_count(config.head_size)
        writer.add_rope_freq_base(config.rope_theta)
        writer.add_layer_norm_rms_eps(config.norm_eps)
    else:
        writer.add_layer_norm_eps(config.norm_eps)
    add_tokenizer(writer, tokenizer, config.vocab_size)
    for tensor_name, w in tensors.items():
        data, qtype = _encoded(tensor_name, w, kind)
        writer.add_tensor(tensor_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_gguf(backbone_dir: str | Path, out: str | Path, kind: str = DEFAULT_TYPE) -> Path:
    """A backbone artifact folder written as one GGUF file (`gptsuite export gguf`; for a saved task's folder
    the command loads the task and calls write_gguf on its backbone, adapters merged)."""
    model, tokenizer = load_backbone(backbone_dir)
    return write_gguf(model, tokenizer, out, kind, name=Path(backbone_dir).name)
