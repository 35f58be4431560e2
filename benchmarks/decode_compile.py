"""Does torch.compile pay for a decode step on this CPU? Its compile time, and ms per step compiled and eager.

    python benchmarks/decode_compile.py [--backbone artifacts/backbones/smollm2-135m] [--quantize int4]

Two ways to compile a batch-1 greedy step of the backbone (64 steps after an 8-token prompt, best of 2):

    model step        gptsuite's own step (GPT.forward with its KV cache), compiled with dynamic shapes: the
                      cache grows by one position a step
    fixed-size view   the same step written over a cache of fixed size (keys and values written at a position
                      tensor, attention over every slot with a mask of the filled ones): one shape for every
                      step, compiled once (dynamic=False)

Compiling takes about a minute on 2 cores, so it pays only if its steps are faster and enough of them follow:
the decoder compiles its steps only when asked (`--compile`, backbone.decoding_model.CompiledSteps, which compiles
the model step). The figures are in docs/decoding-and-quantisation.md. Writes results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbone.artifact import load_backbone  # noqa: E402
from backbone.model import apply_rotary  # noqa: E402

PROMPT, STEPS = 8, 64


def model_step(model):
    def step(token, cache):
        return model.lm_logits(model(token, cache=cache)[:, -1])

    def run(fn, steps=STEPS):
        cache = model.new_cache(1, PROMPT + steps + 1)
        with torch.inference_mode():
            token = step(torch.arange(PROMPT)[None] + 100, cache).argmax(-1, keepdim=True)  # the prompt
            start = time.perf_counter()
            for _ in range(steps):
                token = fn(token, cache).argmax(-1, keepdim=True)
        return (time.perf_counter() - start) / steps * 1e3

    return step, run


def fixed_view_step(model):
    c = model.config
    nh, nkv, hs, size = c.n_head, c.n_kv_head, c.head_size, PROMPT + STEPS + 8
    keys = torch.zeros(c.n_layer, 1, nkv, size, hs)
    values = torch.zeros_like(keys)

    def step(token, position):  # token (1, 1), position (1,)
        x = model.transformer.wte(token)
        cos, sin = model.rotary(position[None], x.dtype)
        filled = (torch.arange(size) <= position)[None, None, None, :]  # (1, 1, 1, size)
        for i, block in enumerate(model.transformer.h):
            heads = block.attn.c_attn(block.ln_1(x)).view(1, 1, nh + 2 * nkv, hs).transpose(1, 2)
            q, k = apply_rotary(heads[:, : nh + nkv], cos, sin).split([nh, nkv], dim=1)
            keys[i].index_copy_(2, position, k)
            values[i].index_copy_(2, position, heads[:, nh + nkv :])
            y = F.scaled_dot_product_attention(q.reshape(1, nkv, nh // nkv, hs), keys[i], values[i], attn_mask=filled)
            x = x + block.attn.c_proj(y.reshape(1, 1, nh * hs))
            x = x + block.mlp(block.ln_2(x))
        return model.lm_logits(model.transformer.ln_f(x))[:, -1]

    def run(fn, steps=STEPS):
        keys.zero_(), values.zero_()
        token = torch.tensor([[100]])
        with torch.inference_mode():
            for p in range(PROMPT):
                logits = fn(token, torch.tensor([p]))
            start = time.perf_counter()
            for p in range(PROMPT, PROMPT + steps):
                logits = fn(logits.argmax(-1, keepdim=True), torch.tensor([p]))
        return (time.perf_counter() - start) / steps * 1e3

    return step, run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    p.add_argument("--quantize", default="int4")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="benchmarks/decode-compile")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_backbone(args.backbone, quantize=args.quantize)
    model.eval()
    rows = []
    for name, (step, run), dynamic in (("model step", model_step(model), True),
                                       ("fixed-size view", fixed_view_step(model), False)):
        run(step, 8)
        eager = min(run(step) for _ in range(2))
        compiled = torch.compile(step, dynamic=dynamic)
        start = time.perf_counter()
        run(compiled, 4)  # compiles (and, with dynamic shapes, recompiles once the length varies)
        run(compiled, 8)
        compile_s = time.perf_counter() - start
        fast = min(run(compiled) for _ in range(2))
        rows.append({"variant": name, "eager_ms": round(eager, 2), "compiled_ms": round(fast, 2),
                     "compile_s": round(compile_s, 1), "pays": fast < eager})
        print(json.dumps(rows[-1]), flush=True)
    from backbone.perf import cpu_model

    meta = {"backbone": args.backbone, "quantize": args.quantize, "cpu": cpu_model(), "threads": args.threads,
            "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
