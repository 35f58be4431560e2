"""What `gptsuite info` and `gptsuite generate` do, printed to the terminal (their parsers: tasks/cli.py).

    print_machine_and_presets   this machine (matmul GFLOP/s, the precision auto picks) and the model presets
    generate_to_terminal  a backbone's (or a random preset's) continuations, streamed or printed, then the speed
"""

from __future__ import annotations

import sys
import time

import torch

from backbone.artifact import load_backbone
from backbone.config import MODEL_PRESETS, GPTConfig
from backbone.decoding_model import CompiledSteps
from backbone.generate import GenerationConfig, generate_text, stream
from backbone.llama_cpp_engine import GPTSUITE, LLAMA_CPP, check_engine, llama_cpp_model
from backbone.logits import banned_sequences
from backbone.model import GPT
from backbone.precision import auto_precision, machine_summary, resolve_precision, set_inference_precision
from backbone.quantize import inference_model
from backbone.tokenizer import Tokenizer


def print_machine_and_presets(remeasure: bool = False) -> None:
    """The machine (on a CPU: its measured matmul rates, cached; remeasure measures them again), the precision
    auto picks here, and a table of the model presets (parameters, shape, flavour)."""
    if torch.cuda.is_available():
        print(f"machine: {torch.cuda.get_device_name()}")
    else:
        m = machine_summary(refresh=remeasure)
        print(f"machine: {m['cpu']}, capability {m['capability']}, {m['threads']} threads, torch {torch.__version__}"
              + "".join(f", {k}={v}" for k, v in m.get("kernel_limits", {}).items()))
        print(f"matmul 1024^3: fp32 {m['fp32_gflops']:.1f} GFLOP/s, bf16 {m['bf16_gflops']:.1f} GFLOP/s "
              f"(median; cached, --remeasure to measure again)")
    choice = auto_precision("cuda" if torch.cuda.is_available() else "cpu")
    print(f"precision auto -> {choice.precision}: {choice.reason}\n")

    print(f"{'preset':<14}{'params':>12}{'layers':>8}{'width':>7}{'heads':>7}{'kv':>4}{'context':>9}  flavour")
    for name in MODEL_PRESETS:
        config = GPTConfig.from_preset(name)
        with torch.device("meta"):
            n = GPT(config).num_params()
        flavour = f"{config.positions}/{config.norm}/{config.mlp}"
        print(f"{name:<14}{n / 1e6:>11.2f}M{config.n_layer:>8}{config.n_embd:>7}{config.n_head:>7}"
              f"{config.n_kv_head:>4}{config.block_size:>9}  {flavour}")


def load_for_generation(backbone: str | None, preset: str | None, quantize: str = "none", engine: str = GPTSUITE):
    """(model, tokenizer): the backbone artifact folder, or a randomly initialised preset with the GPT-2
    tokenizer (for trying the code), decoding from weight-only quantised layers as `quantize` says, on the
    engine named (llama.cpp: the backbone exported as a GGUF whose type `quantize` picks)."""
    check_engine(engine)
    if backbone:
        model, tokenizer = load_backbone(backbone, quantize="none" if engine == LLAMA_CPP else quantize)
    else:
        tokenizer = Tokenizer.gpt2()
        model = GPT(GPTConfig.from_preset(preset, vocab_size=tokenizer.vocab_size)).eval()
    if engine == LLAMA_CPP:
        return llama_cpp_model(model, tokenizer, quantize), tokenizer
    return (model if backbone else inference_model(model, quantize, copy_model=False)[0]), tokenizer


def generate_to_terminal(backbone: str | None, preset: str | None, prompts: list[str], cfg: GenerationConfig,
                         ban: list[str], precision: str, quantize: str, engine: str = GPTSUITE,
                         compile_steps: bool = False) -> None:
    """Continue the prompts (one: streamed as it is decoded; several: printed when done), then the speed on
    stderr. ban: words never to generate (each spelling's token sequences are banned); compile_steps: the
    decoding steps through torch.compile (the first step compiles)."""
    if compile_steps and engine != GPTSUITE:
        raise ValueError("--compile compiles gptsuite's own steps; the llama.cpp engine has its own kernels")
    model, tokenizer = load_for_generation(backbone, preset, quantize, engine)
    if ban:
        cfg = cfg.replace(banned=banned_sequences(tokenizer, ban))
    precision = resolve_precision(precision)
    set_inference_precision(model, precision)
    if compile_steps:
        model = CompiledSteps(model)
    torch.manual_seed(cfg.seed or 0)
    start = time.perf_counter()
    n_tokens = _generate_and_print(model, tokenizer, prompts, cfg)
    seconds = time.perf_counter() - start
    ran_on = (f"engine {model.quantization}" if engine == LLAMA_CPP else
              f"{precision}, quantize {model.quantization}" + (", steps compiled" if compile_steps else ""))
    print(f"[{n_tokens} tokens in {seconds:.2f}s, {n_tokens / max(seconds, 1e-9):.1f} tokens/s, "
          f"kv cache {'on' if cfg.use_cache else 'off'}, {ran_on}]", file=sys.stderr)


def _generate_and_print(model, tokenizer, prompts: list[str], cfg: GenerationConfig) -> int:
    """Stream one prompt to the terminal, or print a batch when done; the number of new tokens."""
    if len(prompts) == 1 and cfg.num_beams == 1 and not cfg.prompt_lookup:  # prompt lookup: printed at the end
        print(prompts[0], end="", flush=True)
        pieces = []
        for piece in stream(model, tokenizer, prompts[0], cfg):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        return len(tokenizer.encode("".join(pieces)))
    outputs = generate_text(model, tokenizer, prompts, cfg)
    for prompt, text in zip(prompts, outputs):
        print(f"{prompt}{text}\n---")
    return sum(len(tokenizer.encode(t)) for t in outputs)
