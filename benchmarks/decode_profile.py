"""Where a decode step's time goes: one batch-1 greedy step of a backbone, split by what the Python code asked for.

    python benchmarks/decode_profile.py [--backbone artifacts/backbones/smollm2-135m] [--quantize int4]
                                        [--steps 64] [--out benchmarks/decode-profile]

Decodes --steps cached steps after an 8-token prompt (backbone.quantize.decode_step_seconds, as `auto` times a
step) twice: once timed plainly (the step's wall time, best of 3), once under torch.profiler. Every operator
the model's Python code called (a top-level operator: its children, such as a cast inside a matmul kernel's
call, count with it) is put in one group:

    matmul kernels     the weight products (int4 / int8 kernels, or linear / mm in fp32)
    activation casts   dtype conversions (aten::to): bf16 in and out of the weight-only kernels
    attention          scaled_dot_product_attention over the cache
    KV cache writes    storing the step's keys and values (slices and copies into the cache)
    norms              RMSNorm / LayerNorm
    elementwise        RoPE, residual additions, SiLU, the mask and positions of the step
    views              view / transpose / split / chunk / contiguous (no arithmetic)
    other operators    anything else

and "Python and dispatch" is the step's plain wall time less the time inside every top-level operator: the
interpreter, module calls and torch's dispatcher. Set ATEN_CPU_CAPABILITY=avx2 to run torch's AVX2 kernels on
an AVX-512 CPU (an emulation: it does not slow bf16 arithmetic as a CPU without native bf16 would); the table
says which capability ran. Writes results.md and results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = {
    "matmul kernels": ("_weight_int4pack_mm", "_weight_int8pack_mm", "aten::linear", "aten::mm", "aten::addmm",
                       "aten::matmul", "aten::bmm"),
    "activation casts": ("aten::to", "aten::_to_copy", "aten::type_as"),
    "attention": ("scaled_dot_product_attention", "aten::softmax"),
    "KV cache writes": ("aten::copy_", "aten::slice", "aten::select", "aten::index_put_", "aten::fill_"),
    "norms": ("rms_norm", "layer_norm"),
    "elementwise": ("aten::mul", "aten::add", "aten::sub", "aten::neg", "aten::cat", "aten::silu", "aten::gelu",
                    "aten::cos", "aten::sin", "aten::cumsum", "aten::clamp", "aten::arange", "aten::expand",
                    "aten::le", "aten::eq", "aten::bitwise_or", "aten::bitwise_and", "aten::__or__",
                    "aten::__and__", "aten::embedding", "aten::rsub", "aten::div"),
    "views": ("aten::view", "aten::transpose", "aten::split", "aten::chunk", "aten::contiguous",
              "aten::reshape", "aten::unsqueeze", "aten::t", "aten::_unsafe_view", "aten::narrow",
              "aten::as_strided", "aten::clone", "aten::empty", "aten::detach"),
}


def group_of(name: str) -> str:
    for group, keys in GROUPS.items():
        if any(key in name for key in keys):
            return group
    return "other operators"


def profile(model, steps: int) -> tuple[dict[str, float], dict[str, int], float]:
    """(ms per step by group, top-level operator calls per step by group, profiled ms per step)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from backbone.quantize import decode_step_seconds

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = decode_step_seconds(model, steps=steps)
    events = [e for e in prof.events() if e.cpu_parent is None and not e.name.startswith("ProfilerStep")]
    total = defaultdict(float)
    calls = defaultdict(int)
    for e in events:
        group = group_of(e.name)
        total[group] += e.cpu_time_total / 1e3  # microseconds -> ms
        calls[group] += 1
    # the trace holds the prompt's prefill and one warm-up step besides steps - 1 timed ones: steps + 1 calls,
    # the prefill's small share counted as a step's
    runs = steps + 1
    return ({g: t / runs for g, t in total.items()}, {g: round(c / runs) for g, c in calls.items()}, seconds * 1e3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    p.add_argument("--quantize", nargs="+", default=["int4"], help="modes to profile (none, int8, int4)")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="benchmarks/decode-profile")
    args = p.parse_args(argv)

    import torch

    from backbone.artifact import load_backbone
    from backbone.perf import cpu_model
    from backbone.quantize import decode_step_seconds

    torch.set_num_threads(args.threads)
    rows = []
    for mode in args.quantize:
        model, _ = load_backbone(args.backbone, quantize=mode)
        model.eval()
        decode_step_seconds(model, steps=8)  # warm-up
        wall = min(decode_step_seconds(model, steps=args.steps) for _ in range(3)) * 1e3
        by_group, calls, profiled = profile(model, args.steps)
        inside = sum(by_group.values())
        row = {"quantize": mode, "step_ms": round(wall, 2), "profiled_step_ms": round(profiled, 2),
               "groups_ms": {g: round(t, 2) for g, t in sorted(by_group.items(), key=lambda kv: -kv[1])},
               "calls_per_step": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
               "python_and_dispatch_ms": round(max(wall - inside, 0.0), 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    from backbone.quantize import fastest_activation_dtype

    meta = {"backbone": args.backbone, "cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "int4_activations": fastest_activation_dtype()[1],
            "emulated": "ATEN_CPU_CAPABILITY" in os.environ, "threads": args.threads, "torch": torch.__version__,
            "steps": args.steps, "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out / "results.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    how = ("torch's AVX2 kernels on an AVX-512 CPU (ATEN_CPU_CAPABILITY: emulated)" if meta["emulated"]
           else f"torch's {meta['capability']} kernels")
    lines = [f"A batch-1 greedy decode step of {meta['backbone']}, {meta['cpu']}, {how}, {meta['threads']} threads, "
             f"torch {meta['torch']}, {meta['date']}; mean of {meta['steps']} steps (ms per step; calls per step). "
             f"Activations into the weight-only kernels: {meta['int4_activations']}.", ""]
    groups = list(GROUPS) + ["other operators"]
    lines.append("| group | " + " | ".join(r["quantize"] for r in rows) + " |")
    lines.append("|---|" + "---|" * len(rows))
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(f"{r['groups_ms'].get(g, 0):.2f} ({r['calls_per_step'].get(g, 0)})"
                                             for r in rows) + " |")
    lines.append("| Python and dispatch | " + " | ".join(f"{r['python_and_dispatch_ms']:.2f}" for r in rows) + " |")
    lines.append("| **step, unprofiled** | " + " | ".join(f"**{r['step_ms']:.2f}**" for r in rows) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
