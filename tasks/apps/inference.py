"""What each inference option buys, measured on one prompt: the KV cache, batching, int8 and int4 weights,
prompt-lookup decoding. Greedy decoding throughout, so every row's text can be compared with the first's.

    rows = compare_options(model, tokenizer, "The history of Rome", max_new_tokens=64)

`model` should be the unquantised backbone (fp32 weights); the quantised rows decode from copies of it
(backbone.quantize). The README's table comes from `gptsuite optimize --backbone ... --out benchmarks/inference`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from backbone.artifact import load_backbone
from backbone.generate import GenerationConfig, generate_text
from backbone.precision import resolve_precision, set_inference_precision
from backbone.quantize import inference_model, kernels_available, weight_bytes
from tasks.apps.machine import machine_line

BATCH = 8
# `gptsuite optimize`'s default prompt: its continuation copies it, where prompt lookup pays
COPY_PROMPT = ("Copy the list exactly.\nList: apples, pears, plums, figs, dates, limes, kiwis, grapes, melons, "
               "cherries, lemons, oranges, mangoes, papayas, peaches, apricots.\nCopy: apples, pears,")


@dataclass
class OptionRow:
    option: str
    tokens: int
    seconds: float
    weights_mb: float
    same_text: bool | None  # greedy text equal to the plain KV-cache row's (None: not comparable)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def _run(model, tokenizer, prompts: list[str], cfg: GenerationConfig, repeats: int = 3) -> tuple[list[str], float]:
    """The texts and the median seconds of `repeats` timed runs, after one short untimed run (the first
    call of a kernel or a cache pays for setting itself up)."""
    generate_text(model, tokenizer, prompts, cfg.replace(max_new_tokens=min(4, cfg.max_new_tokens)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        texts = generate_text(model, tokenizer, prompts, cfg)
        times.append(time.perf_counter() - start)
    return texts, statistics.median(times)


def compare_options(model, tokenizer, prompt: str, max_new_tokens: int = 64, copies: dict | None = None,
                    modes=("int8", "int4")) -> list[OptionRow]:
    """The rows, in the order an optimisation would be applied. Every row decodes exactly max_new_tokens
    tokens (eos does not end it), so their tokens/s compare; each time is the median of 3 runs after a warm-up.
    `copies` caches quantised copies between calls."""
    copies = {} if copies is None else copies
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=-1, truncate_prompt=True)
    count = lambda texts: max_new_tokens * len(texts)  # noqa: E731  (no eos: every row decodes them all)
    mb = weight_bytes(model) / 1e6
    rows = []
    plain, seconds = _run(model, tokenizer, [prompt], cfg)
    reference = plain[0]
    no_cache, s_nc = _run(model, tokenizer, [prompt], cfg.replace(use_cache=False))
    rows.append(OptionRow("no KV cache (recompute the prefix each step)", count(no_cache), s_nc, mb,
                          no_cache[0] == reference))
    rows.append(OptionRow("KV cache", count(plain), seconds, mb, True))
    batch, s_b = _run(model, tokenizer, [prompt] * BATCH, cfg)
    rows.append(OptionRow(f"KV cache, batch of {BATCH} (tokens of all rows)", count(batch), s_b, mb,
                          all(t == reference for t in batch)))
    lookup, s_l = _run(model, tokenizer, [prompt], cfg.replace(prompt_lookup=8))
    rows.append(OptionRow("KV cache + prompt lookup (8 guesses)", count(lookup), s_l, mb, lookup[0] == reference))
    if kernels_available():
        for mode in modes:
            if mode not in copies:
                copies[mode] = inference_model(model, mode)[0]
            texts, s_q = _run(copies[mode], tokenizer, [prompt], cfg)
            rows.append(OptionRow(f"KV cache + {mode} weights", count(texts), s_q, weight_bytes(copies[mode]) / 1e6,
                                  texts[0] == reference))
    return rows


def markdown(rows: list[OptionRow]) -> str:
    base = next(r for r in rows if r.option.startswith("no KV cache")).tokens_per_s
    lines = ["| option | tokens | seconds | tokens/s | vs no cache | weights MB | same text as KV cache |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        same = {True: "yes", False: "no (rounded weights)" if "weights" in r.option else "no",
                None: "–"}[r.same_text]
        lines.append(f"| {r.option} | {r.tokens} | {r.seconds:.2f} | {r.tokens_per_s:.1f} | "
                     f"{r.tokens_per_s / max(base, 1e-9):.1f}x | {r.weights_mb:.0f} | {same} |")
    return "\n".join(lines)


def write_options_report(backbone: str, prompt: str, max_new_tokens: int, out: Path) -> str:
    """`gptsuite optimize`: compare_options on the fp32 backbone in folder `backbone`, written with the machine
    and the settings to out/inference.md; returns the table."""
    model, tokenizer = load_backbone(backbone, quantize="none")
    set_inference_precision(model, resolve_precision("32-true"))
    text = markdown(compare_options(model, tokenizer, prompt, max_new_tokens))
    out.mkdir(parents=True, exist_ok=True)
    about = (f"{machine_line()}; prompt {prompt!r}, {max_new_tokens} new tokens, greedy; each time the median of 3 "
             "runs after a warm-up run, prefill included.")
    (out / "inference.md").write_text(f"# Inference options ({backbone})\n\n{about}\n\n{text}\n")
    return text
