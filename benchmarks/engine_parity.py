"""Do the two engines say the same thing? gptsuite's decoder against llama.cpp on the same GGUF's weights.

    python benchmarks/engine_parity.py [--backbone artifacts/backbones/smollm2-135m] [--new-tokens 32]

For each pair, both engines decode the same 10 short prompts greedily (gptsuite's tokenizer and decoding loop;
only the forward pass differs, backbone.llama_cpp_engine), and the table gives how many greedy texts are
identical, the first token where the others part, and the largest logit difference, at the prompt's end and at
every decoding step (both fed gptsuite's greedy tokens), against the largest logit:

    gptsuite none  vs llama.cpp f32    the backbone's fp32 weights exported as an f32 GGUF
    gptsuite int4  vs llama.cpp q4_1   SmolLM2's Q4_1 codes in both: gptsuite's int4 (bf16 or fp32 activations,
                                       whichever is faster here) and llama.cpp's Q4_1 kernels (activations
                                       quantised to 8 bits per block of 32)
    gptsuite int4  vs int4 compiled    the same model with its decoding steps through torch.compile

Writes results.md and results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbone.artifact import load_backbone  # noqa: E402
from backbone.decoding_model import CompiledSteps  # noqa: E402
from backbone.generate import GenerationConfig, generate  # noqa: E402
from backbone.llama_cpp_engine import LlamaCppModel, llama_cpp_model  # noqa: E402
from backbone.perf import cpu_model  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "The three primary colours are",
    "def fibonacci(n):",
    "Once upon a time, a small fox",
    "The largest planet in our solar system is",
    "To make a cup of tea, first",
    "Photosynthesis turns sunlight into",
    "The French word for cat is",
    "A haiku about the sea:",
]


def step_logits(model, ids: torch.Tensor, continuation: list[int]) -> torch.Tensor:
    """The next-token logits after the prompt and after each token of `continuation`, fed one at a time
    through the model's KV cache (the decoding steps themselves), (len(continuation) + 1, V)."""
    cache = model.new_cache(1, ids.size(1) + len(continuation) + 1)
    rows = [model.lm_logits(model(ids, cache=cache)[:, -1]).float()]
    for token in continuation:
        rows.append(model.lm_logits(model(torch.tensor([[token]]), cache=cache)[:, -1]).float())
    return torch.cat(rows)


def compare(ours, theirs, tokenizer, new_tokens: int) -> dict:
    """Greedy texts of both; the largest logit difference over the prompt's last position and every step of
    ours' greedy continuation (both fed the same tokens), relative to the largest logit."""
    same, parted, worst = 0, [], 0.0
    for prompt in PROMPTS:
        ids = torch.tensor([tokenizer.encode(prompt, add_bos=True)])
        cfg = GenerationConfig(max_new_tokens=new_tokens)
        with torch.inference_mode():
            a = generate(ours, ids, None, cfg)[0, ids.size(1):].tolist()
            b = generate(theirs, ids, None, cfg)[0, ids.size(1):].tolist()
            mine, other = step_logits(ours, ids, a[:-1]), step_logits(theirs, ids, a[:-1])
        worst = max(worst, float((mine - other).abs().max() / mine.abs().max()))
        if a == b:
            same += 1
        else:
            parted.append(next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y))
    return {"identical": same, "prompts": len(PROMPTS), "parted_at_token": parted,
            "max_logit_difference_relative": round(worst, 5)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="benchmarks/engine-parity")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for mode in ("none", "int4", "int4 compiled"):
        ours, tokenizer = load_backbone(args.backbone, quantize=mode.split()[0])
        if mode == "int4 compiled":
            theirs = CompiledSteps(ours)
        else:
            float_model, _ = load_backbone(args.backbone)
            theirs = llama_cpp_model(float_model, tokenizer, mode)
            del float_model
        row = {"gptsuite": mode.split()[0], "other": "gptsuite int4, steps compiled" if mode == "int4 compiled"
               else theirs.quantization, **compare(ours.eval(), theirs, tokenizer, args.new_tokens)}
        if isinstance(theirs, LlamaCppModel):
            theirs.close()
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"backbone": args.backbone, "new_tokens": args.new_tokens, "cpu": cpu_model(), "threads": args.threads,
            "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}
    lines = [f"Greedy decoding of {len(PROMPTS)} short prompts, {args.new_tokens} new tokens, {meta['backbone']}, "
             f"{meta['cpu']} ({meta['capability']}), torch {meta['torch']}, {meta['date']}.", "",
             "| gptsuite | against | identical greedy texts | where the others part (token) | "
             "largest logit difference / largest logit, every step |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['gptsuite']} | {r['other']} | {r['identical']} of {r['prompts']} | "
                     f"{', '.join(map(str, r['parted_at_token'])) or '–'} | {r['max_logit_difference_relative']:.4f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
