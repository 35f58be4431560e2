"""The model that decoding runs on: the float backbone, a weight-only quantised copy of it, or both.

    InferenceModelCache   the model a task decodes with, rebuilt when training has changed the weights
    FloatPrefill          a quantised copy for the decoding steps, the float model for prompts and wide steps
    CompiledSteps         decoding steps through torch.compile (opt-in: it pays only after its compile time)
    float_step_rows       the decode width from which the float model's step is faster here (measured)

A decoding step of a few rows reads every weight for a few tokens: memory-bound work, where fewer bytes per
weight win (backbone.quantize). A prompt's prefill, or a step of many rows, multiplies every weight by a wide
matrix: compute-bound work, where the float kernels win (docs/decoding-and-quantisation.md has the measurements).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch
from torch import nn

from backbone.kv_cache import is_prefill
from backbone.llama_cpp_engine import GPTSUITE, LLAMA_CPP, check_engine, llama_cpp_model
from backbone.perf import machine_fingerprint
from backbone.quantize import AUTO, check_mode, decode_step_seconds, inference_model

# the decode widths at which the float model is timed against the quantised one (float_step_rows)
STEP_ROWS = (8, 32)
_float_rows: dict[tuple, int | None] = {}


def float_step_rows(float_model, quantised) -> int | None:
    """The fewest rows, of STEP_ROWS, at which a decode step ran faster in the float model than in the
    quantised copy, measured on this machine (once per model shape and mode in a process; each side the
    best of two timings, so a burst of other work does not decide it); None when the copy was faster at
    every width. Near the crossover either choice costs about the same. A step of many rows (the samples
    of several problems) multiplies each weight by a wide matrix: compute-bound again, like a prefill
    (the crossover measured on a 2-core Xeon is in docs/decoding-and-quantisation.md)."""
    key = (str(machine_fingerprint("cpu")), repr(float_model.config), quantised.quantization)
    if key not in _float_rows:
        was_training = float_model.training
        float_model.eval()
        try:
            def best(model, rows: int) -> float:
                return min(decode_step_seconds(model, rows=rows) for _ in range(2))

            _float_rows[key] = next((rows for rows in STEP_ROWS if best(float_model, rows) < best(quantised, rows)),
                                    None)
        finally:
            float_model.train(was_training)
    return _float_rows[key]


class FloatPrefill(nn.Module):
    """Decoding with a quantised copy, prompts through the float model (a prompt's last few tokens after a
    cached shared prefix count as a step).

    A prompt's prefill multiplies many tokens by every weight matrix at once: compute-bound work, where the
    float kernels beat the weight-only ones (docs/decoding-and-quantisation.md has the measured prefill). An
    incremental step reads every weight for a few tokens: memory-bound
    work, where fewer bytes per weight win. So a prefill (backbone.model.is_prefill: no cache yet, or many new
    tokens, as when the rest of each prompt follows a cached shared prefix) runs `float_model`, and a step
    that extends a cache by a few tokens runs `quantised`; both write the same keys and values into one
    cache (the quantised copy's are within its rounding of the float ones). A step of `float_rows` rows or
    more (float_step_rows: measured) is compute-bound too, and runs the float model.
    """

    def __init__(self, float_model: nn.Module, quantised: nn.Module, float_rows: int | None = None):
        super().__init__()
        self.float_model, self.quantised = float_model, quantised
        self.config = quantised.config
        self.float_rows = float_rows

    def forward(self, idx, attention_mask=None, position_ids=None, cache=None, **kwargs):
        wide = self.float_rows is not None and idx.size(0) >= self.float_rows
        model = self.float_model if wide or is_prefill(idx.size(1), cache) else self.quantised
        return model(idx, attention_mask, position_ids, cache, **kwargs)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.quantised.lm_logits(hidden)

    def new_cache(self, batch_size: int, max_len: int | None = None):
        return self.quantised.new_cache(batch_size, max_len)


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile(model) with dynamic shapes (the cache grows every step, rows leave the batch), its
    compiled kernels kept on disk (TORCHINDUCTOR_CACHE_DIR, default ~/.cache/gptsuite/inductor) for the next
    process. Compiling runs at the first call, not here."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.home() / ".cache" / "gptsuite" / "inductor"))
    return torch.compile(model, dynamic=True)


class CompiledSteps(nn.Module):
    """Decoding steps through a compiled copy of the model's forward, prompts through the model itself.

    torch.compile fuses a step's small operators (norms, RoPE, casts, residual additions) into a few generated
    kernels around the weight products, which takes the per-operator overhead out of a step. Compiling the
    30-block SmolLM2 takes about a minute on 2 cores and raises the decoding memory peak, and the compiled
    step's logits differ from the eager step's, so near-ties can flip a greedy choice: opt-in (`--compile`),
    for runs long enough to repay the compile (docs/decoding-and-quantisation.md has the figures).

    compiler: how to compile (compile_model; the tests pass a stand-in, so the default suite compiles nothing).
    """

    def __init__(self, model: nn.Module, compiler=compile_model):
        super().__init__()
        self.model = model
        self.config = model.config
        self.quantization = getattr(model, "quantization", "none")
        self.compiled = compiler(model)

    def forward(self, idx, attention_mask=None, position_ids=None, cache=None, **kwargs):
        prompt = bool(kwargs) or is_prefill(idx.size(1), cache)  # soft prompts, packed rows: the model itself
        return (self.model if prompt else self.compiled)(idx, attention_mask, position_ids, cache, **kwargs)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_logits(hidden)

    def new_cache(self, batch_size: int, max_len: int | None = None):
        return self.model.new_cache(batch_size, max_len)


class InferenceModelCache:
    """The model that decoding runs on: the backbone itself, or a weight-only quantised copy of it
    (backbone.quantize; adapters merged in) for the decoding steps, with prompts run through the backbone
    itself (FloatPrefill), each where it is faster, as are decoding steps of many rows where that was
    measured faster here (float_step_rows). The copy is rebuilt whenever a trained parameter has changed
    since it was made (torch counts in-place updates in each tensor's _version, as torch's default
    optimizers make them; an update through `.data` is not counted), so evaluation during training decodes
    the current weights. One lock: the demo's threads share a task.

    quantize: one of backbone.quantize.CHOICES (CHOICES_HELP says what each does).
    engine: "gptsuite" or "llama.cpp" (backbone.llama_cpp_engine: the backbone exported as a GGUF of the
        type `quantize` maps to, run by llama.cpp; rebuilt, like the quantised copy, when the weights change).
    compile_steps: gptsuite's decoding steps through torch.compile (CompiledSteps).
    """

    def __init__(self, quantize: str = AUTO, engine: str = GPTSUITE, compile_steps: bool = False):
        if compile_steps and engine != GPTSUITE:
            raise ValueError("compile_steps compiles gptsuite's own steps; the llama.cpp engine has its own kernels")
        self.requested = check_mode(quantize)
        self.engine = check_engine(engine)
        self.compile_steps = compile_steps
        self.mode: str | None = None  # what `requested` resolved to, once decoding has run
        self._model, self._key = None, None
        self.float_rows: int | None = None  # decode steps this wide run unquantised (measured), once known
        self._lock = threading.Lock()

    def __call__(self, backbone, tokenizer=None):
        """The model to decode `backbone` with (`tokenizer`: needed by the llama.cpp engine's GGUF)."""
        with self._lock:
            key = tuple(p._version for p in backbone.parameters() if p.requires_grad)
            if self.engine == LLAMA_CPP:
                if self._model is None or key != self._key:
                    if tokenizer is None:
                        raise ValueError("the llama.cpp engine needs the tokenizer to write the backbone's GGUF")
                    self._model, self._key = llama_cpp_model(backbone, tokenizer, self.requested), key
                    self.mode = self._model.quantization
                return self._model
            if self._model is None or key != self._key:
                (model, self.mode), self._key = inference_model(backbone, self.requested), key
                self.float_rows = None if model is backbone else float_step_rows(backbone, model)
                steps = CompiledSteps(model) if self.compile_steps else model
                self._model = steps if model is backbone else FloatPrefill(backbone, steps, self.float_rows)
            if self._model is not backbone:  # decoding saves and restores this flag: it must be the backbone's
                self._model.training = backbone.training
            return self._model
