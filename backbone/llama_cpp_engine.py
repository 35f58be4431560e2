"""llama.cpp as a decoding engine: the backbone exported as a GGUF (backbone.gguf_export) and run by
llama-cpp-python (extra [llama]) behind the interface backbone.generate decodes with.

    ENGINES            "gptsuite" (torch, this package's model) or "llama.cpp"
    llama_cpp_model    a float backbone (adapters merged) -> LlamaCppModel, its GGUF cached on disk
    LlamaCppModel      forward(ids, cache) -> next-token logits of each new token; one row per call

Every decoding option of backbone.generate works on it, because only the forward pass changes: gptsuite's
tokenizer makes the ids, gptsuite's processors choose each token (greedy, sampling, penalties, stop strings,
constraints, prompt lookup), llama.cpp computes the logits. Two limits, both stated in errors: one row per
call (generate decodes a batch row by row), so no beam search; and no hidden states (the logits are what
llama.cpp returns), so tasks that read hidden states (classifiers, NER, span QA) keep the gptsuite engine.

GGUF types follow --quantize: none -> f32, int8 -> q8_0, int4 and auto -> q4_1 (the same Q4_1 codes as
gptsuite's int4, embeddings q8_0).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import os
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backbone.gguf_export import MissingExtra, require_gguf, write_gguf

GPTSUITE, LLAMA_CPP = "gptsuite", "llama.cpp"
ENGINES = (GPTSUITE, LLAMA_CPP)
ENGINES_HELP = ("gptsuite (torch, this package's model) or llama.cpp (the backbone exported as a GGUF and run by "
                "llama-cpp-python: pip install -e '.[llama]'; one row at a time, no beam search)")
GGUF_TYPE = {"none": "f32", "int8": "q8_0", "int4": "q4_1", "auto": "q4_1"}  # --quantize -> the GGUF's type
MAX_CONTEXT = 4096  # llama.cpp's context for a backbone with a longer block_size (SmolLM2: 8,192)


def gguf_cache_dir() -> Path:
    """Where exported GGUFs are kept for reuse: GPTSUITE_GGUF_CACHE, default ~/.cache/gptsuite/gguf. One file
    per weights and type (weights_digest), never deleted by gptsuite: a task decoding on llama.cpp while it
    trains writes one per evaluation."""
    return Path(os.environ.get("GPTSUITE_GGUF_CACHE") or Path.home() / ".cache" / "gptsuite" / "gguf")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == LLAMA_CPP:
        require_llama_cpp()
    return engine


def require_llama_cpp():
    """The llama_cpp module (and gguf, which writes the engine's GGUF), or MissingExtra saying how to install it."""
    require_gguf()
    try:
        import llama_cpp  # why: optional (extra [llama]), a compiled extension
    except ImportError as err:
        raise MissingExtra("--engine llama.cpp needs llama-cpp-python: pip install -e '.[llama]' (it builds "
                          "llama.cpp from source: about 10 minutes on 2 cores)") from err
    return llama_cpp


_open_models: weakref.WeakSet = weakref.WeakSet()  # llama.cpp models still open, closed at exit (below)


@atexit.register
def _close_open_models() -> None:
    """Close llama.cpp's models before the interpreter tears down the modules their destructors need
    (llama-cpp-python's __del__ at exit otherwise prints a TypeError)."""
    for llm in list(_open_models):
        llm.close()


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Linux: the amx_tile flag in /proc/cpuinfo)."""
    try:
        return " amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextlib.contextmanager
def _without_extra_buffer_types(low_level):
    """Model parameters with llama.cpp's extra buffer types (AMX, weight repacking) off, for the models
    loaded inside. llama-cpp-python's Llama does not expose the switch, so its default is wrapped meanwhile."""
    default = low_level.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    low_level.llama_model_default_params = params
    try:
        yield
    finally:
        low_level.llama_model_default_params = default


_loading = threading.Lock()


def open_llama(gguf_path: str | Path, n_ctx: int, threads: int, logits_all: bool = False):
    """llama-cpp-python's Llama on a GGUF, quiet, with `threads` threads. On a CPU with AMX the extra buffer
    types are turned off: llama.cpp 0.3.36's AMX matmul crashed with a segmentation fault on a 2-core Xeon
    with AMX (ggml_backend_amx_mul_mat, on every quantised GGUF; f32 was unaffected), and with them off it
    runs its AVX-512 kernels (docs/decoding-and-quantisation.md)."""
    llama_cpp = require_llama_cpp()
    low_level = llama_cpp.llama_cpp  # the module Llama reads its defaults from
    with _loading, (_without_extra_buffer_types(low_level) if cpu_has_amx() else contextlib.nullcontext()):
        llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                              logits_all=logits_all, verbose=False)
    _open_models.add(llm)
    return llm


class LlamaCppCache:
    """The tokens a sequence holds in llama.cpp's KV cache. `length` may be set back (prompt lookup forgets
    rejected guesses); the next call then drops those positions from llama.cpp's cache too."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)

    @length.setter
    def length(self, value: int) -> None:
        if not 0 <= value <= len(self.tokens):
            raise ValueError(f"a cache of {len(self.tokens)} tokens cannot be set to {value}")
        del self.tokens[value:]

    def reorder(self, batch_index: torch.Tensor) -> None:
        if batch_index.tolist() != [0]:
            raise ValueError("the llama.cpp engine holds one row; its cache cannot be reordered into others")


class LlamaCppModel(nn.Module):
    """A GGUF run by llama.cpp, one row per call, behind gptsuite's decoding interface.

    forward(idx (1, T), cache=...) returns the next-token logits of each new token, (1, T, V): llama.cpp gives
    logits, not hidden states, so for this engine `lm_logits` is the identity and the pair computes what
    GPT's forward + lm_logits do. Calls are serialised (one llama.cpp context); a call with another cache than
    the last one replays that cache's tokens first, so interleaved sequences stay correct.
    """

    rows_per_call = 1  # backbone.generate decodes a batch row by row

    def __init__(self, gguf_path: str | Path, config, threads: int | None = None, gguf_type: str = "f32"):
        super().__init__()
        self.gguf_path = Path(gguf_path)
        self.n_ctx = min(config.block_size, MAX_CONTEXT)
        # the context llama.cpp holds is the model's context here: prompts are fitted (and truncated) to it
        self.config = dataclasses.replace(config, block_size=self.n_ctx)
        self.quantization = f"llama.cpp {gguf_type}"
        threads = threads or torch.get_num_threads()
        self.llm = open_llama(gguf_path, self.n_ctx, threads, logits_all=True)
        if self.llm.n_vocab() < config.vocab_size:
            raise ValueError(f"{gguf_path} has {self.llm.n_vocab()} tokens, the backbone {config.vocab_size}")
        self._owner: LlamaCppCache | None = None
        self._lock = threading.Lock()

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None, position_ids=None,
                cache: LlamaCppCache | None = None, **unsupported) -> torch.Tensor:
        if unsupported.get("inputs_embeds") is not None or unsupported.get("segment_ids") is not None:
            raise ValueError("the llama.cpp engine takes token ids only (no inputs_embeds or segment_ids)")
        if idx.size(0) != 1:
            raise ValueError(f"the llama.cpp engine runs one row per call, got {idx.size(0)}")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the llama.cpp engine takes unpadded rows (backbone.generate strips the padding)")
        new = idx[0].tolist()
        held = (cache.length if cache is not None else 0) + len(new)
        if held > self.n_ctx:
            raise ValueError(f"llama.cpp's context holds {self.n_ctx} tokens; {held} asked")
        with self._lock:
            if cache is None:  # no cache: the whole sequence from scratch
                self._owner = None
                self.llm.reset()
                self._eval(new)
                return self._logits(0, len(new))
            self._sync(cache)
            start = cache.length
            self._eval(new)
            cache.tokens.extend(new)
            return self._logits(start, len(new))

    def _sync(self, cache: LlamaCppCache) -> None:
        """Make llama.cpp's cache hold exactly cache.tokens: cut it back, or replay them for another owner."""
        llm = self.llm
        if self._owner is cache and llm.n_tokens >= cache.length:
            llm.n_tokens = cache.length  # llama-cpp-python's eval drops the positions from n_tokens on
        else:
            llm.reset()
            if cache.tokens:
                self._eval(cache.tokens)
            self._owner = cache

    def _eval(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)

    def _logits(self, start: int, count: int) -> torch.Tensor:
        scores = np.asarray(self.llm.scores[start : start + count, : self.config.vocab_size])
        return torch.from_numpy(scores.copy())[None]  # (1, T, V)

    def lm_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The identity: forward already returns logits (see the class docstring)."""
        return logits

    def new_cache(self, batch_size: int, max_len: int | None = None) -> LlamaCppCache:
        if batch_size != 1:
            raise ValueError(f"the llama.cpp engine holds one row, got a cache for {batch_size}")
        return LlamaCppCache(min(max_len or self.n_ctx, self.n_ctx))

    def close(self) -> None:
        """Free llama.cpp's model and context now (not at interpreter exit, when the library may be gone)."""
        self.llm.close()


def weights_digest(model: nn.Module) -> str:
    """A short hash of the backbone's config and weights (adapters included): the name of its cached GGUF. The
    tokenizer is not in it: the engine feeds gptsuite's token ids, never llama.cpp's tokenizer."""
    h = hashlib.sha256(repr(model.config).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def llama_cpp_model(model: nn.Module, tokenizer, quantize: str = "auto", cache_dir: Path | None = None,
                    threads: int | None = None) -> LlamaCppModel:
    """The float backbone (adapters merged) as a LlamaCppModel. Its GGUF is written once per weights and type
    under cache_dir (GPTSUITE_GGUF_CACHE, default ~/.cache/gptsuite/gguf) and reused."""
    require_llama_cpp()
    if quantize not in GGUF_TYPE:
        raise ValueError(f"quantize must be one of {', '.join(GGUF_TYPE)}, got {quantize!r}")
    kind = GGUF_TYPE[quantize]
    path = Path(cache_dir or gguf_cache_dir()) / f"{weights_digest(model)}.{kind}.gguf"
    if not path.is_file():
        write_gguf(model, tokenizer, path, kind)
    return LlamaCppModel(path, model.config, threads, kind)
