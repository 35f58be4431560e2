"""Speed benchmark: gptsuite's GPT against transformers' GPT2LMHeadModel, same config, same weights.

    (a) training tokens/s: forward + backward + AdamW step, cross-entropy over the lm logits
    (b) greedy generation tokens/s: our `generate` vs `model.generate`, outputs checked token-identical
    (c) our generation with and without the KV cache at 64, 256 and 512 new tokens
    (d) measured matmul peak (1024^3, fp32 and bf16) and achieved training GFLOP/s (MFU)

Run:  .venv/bin/python benchmarks/speed.py [--dtype bf16] [--json speed.json]
All times are medians over repeats, warmup excluded. This is a script, not a timed test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from backbone.config import GPTConfig
from backbone.generate import GenerationConfig, generate
from backbone.interop import to_hf
from backbone.model import GPT
from backbone.perf import measure_matmul_flops

TRAIN_TARGET, TRAIN_GOAL, GEN_TARGET = 1.0, 1.3, 1.3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", help="GPT-2 shaped preset of backbone.config (default: tiny)")
    p.add_argument("--batch", type=int, default=8, help="training batch size (generation uses batch // 2)")
    p.add_argument("--seq", type=int, default=None, help="training sequence length (default: block_size)")
    p.add_argument("--steps", type=int, default=8, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps / runs before timing")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per generation measurement")
    p.add_argument("--prompt", type=int, default=32, help="prompt length for generation")
    p.add_argument("--new-tokens", type=int, default=64, help="new tokens for (b)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16 = CPU autocast")
    p.add_argument("--json", metavar="OUT", help="also write every figure to this JSON file")
    return p.parse_args(argv)


def median_seconds(fn, repeats: int, warmup: int) -> float:
    return interleaved({"fn": fn}, repeats, warmup)[0]["fn"]


def interleaved(fns: dict, repeats: int, warmup: int) -> tuple[dict[str, float], dict]:
    """Run the functions in turn, so load from elsewhere on the machine hits them alike.
    Returns median seconds per function (warmup excluded) and each function's last output."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outputs = {}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            outputs[name] = fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


# --------------------------------------------------------------------------------------------------------
# (a) training
# --------------------------------------------------------------------------------------------------------
def bench_training(logit_fns: dict, params: dict, batches, vocab: int, args, amp) -> dict[str, float]:
    """Step the models in turn on the same batches (alternating evens out machine drift); seconds per step."""
    optims = {k: torch.optim.AdamW(params[k], lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1) for k in logit_fns}
    times: dict[str, list[float]] = {k: [] for k in logit_fns}
    for i in range(args.warmup + args.steps):
        x, y = batches[i % len(batches)]
        for name, logits_of in logit_fns.items():
            start = time.perf_counter()
            with amp():
                loss = F.cross_entropy(logits_of(x).float().view(-1, vocab), y.view(-1))
            loss.backward()
            optims[name].step()
            optims[name].zero_grad(set_to_none=True)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


# --------------------------------------------------------------------------------------------------------
# (b), (c) generation
# --------------------------------------------------------------------------------------------------------
def ours_generate(model: GPT, ids: torch.Tensor, new: int, use_cache: bool = True) -> torch.Tensor:
    return generate(model, ids, config=GenerationConfig(max_new_tokens=new, use_cache=use_cache))


def hf_generate(hf, ids: torch.Tensor, new: int) -> torch.Tensor:
    return hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None)


def longer_copy(model: GPT, block_size: int) -> GPT:
    """The same weights in a config with a longer learned-position table (new rows are GPT-2 initialised)."""
    long = GPT(dataclasses.replace(model.config, block_size=block_size)).eval()
    state = model.state_dict()
    wpe = long.transformer.wpe.weight.detach().clone()
    wpe[: model.config.block_size] = state.pop("transformer.wpe.weight")
    long.load_state_dict({**state, "transformer.wpe.weight": wpe})
    return long


# --------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------
def verdict(ratio: float, target: float) -> str:
    return "meets target" if ratio >= target else "BELOW target"


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    bf16 = args.dtype == "bf16"

    def amp():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

    config = GPTConfig.from_preset(args.preset, dropout=0.0)
    seq = args.seq or config.block_size
    model = GPT(config)
    hf = to_hf(model)
    hf.set_attn_implementation("sdpa")
    hf.generation_config.pad_token_id = 0
    probe = torch.randint(0, config.vocab_size, (2, 16))
    with torch.no_grad():
        diff = (model.lm_logits(model.eval()(probe)) - hf.eval()(probe).logits).abs().max().item()
    assert diff < 1e-4, f"converted weights disagree: max |logit diff| = {diff}"
    print(f"# speed benchmark: preset {args.preset!r} ({model.num_params() / 1e6:.2f}M params, "
          f"{config.n_layer}x{config.n_embd}, vocab {config.vocab_size}), dtype {args.dtype}"
          f"{' (autocast)' if bf16 else ''}, {threads} threads, torch {torch.__version__}, "
          f"transformers {__import__('transformers').__version__}; both attend through sdpa; "
          f"same weights (max |logit diff| {diff:.1e})")
    load_before = os.getloadavg()[0]
    out: dict = {"preset": args.preset, "dtype": args.dtype, "threads": threads, "config": config.to_dict()}

    # (d) first: the peak, on a quiet machine
    peak = {"fp32": measure_matmul_flops(torch.float32).gflops, "bf16": measure_matmul_flops(torch.bfloat16).gflops}

    # (a) training: same initial weights, same batches, same AdamW settings
    model.train()
    hf.train()
    hf.config.use_cache = False
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(4):
        data = torch.randint(0, config.vocab_size, (args.batch, seq + 1), generator=g)
        batches.append((data[:, :-1].contiguous(), data[:, 1:].contiguous()))
    fns = {"ours": lambda x: model.lm_logits(model(x)), "hf": lambda x: hf(input_ids=x, use_cache=False).logits}
    params = {"ours": list(model.parameters()), "hf": list(hf.parameters())}
    step_s = bench_training(fns, params, batches, config.vocab_size, args, amp)
    train_tps = {k: args.batch * seq / v for k, v in step_s.items()}
    flops = model.flops_per_token(seq)
    gflops = {k: flops * v / 1e9 for k, v in train_tps.items()}
    out["training"] = {"batch": args.batch, "seq": seq, "tokens_per_s": train_tps, "gflop_per_s": gflops,
                       "flops_per_token": flops, "mfu": {k: v / peak[args.dtype] for k, v in gflops.items()}}

    # (b) greedy generation, fresh weights again (training moved them; both models from one GPT)
    torch.manual_seed(0)
    model = GPT(config).eval()
    hf = to_hf(model)
    hf.set_attn_implementation("sdpa")
    gen_batch = max(1, args.batch // 2)
    prompts = torch.randint(0, config.vocab_size, (gen_batch, args.prompt), generator=g)
    new = args.new_tokens
    with amp():
        gen_s, outs = interleaved({"ours": lambda: ours_generate(model, prompts, new),
                                   "hf": lambda: hf_generate(hf, prompts, new)}, args.repeats, args.warmup)
    identical = torch.equal(outs["ours"], outs["hf"])
    gen_tps = {k: gen_batch * new / v for k, v in gen_s.items()}
    out["generation"] = {"batch": gen_batch, "prompt": args.prompt, "new_tokens": new,
                         "tokens_per_s": gen_tps, "identical": identical}

    # (c) our generation with / without the KV cache (batch 1; a longer position table if needed)
    lengths = (64, 256, 512)
    need = args.prompt + max(lengths)
    long = longer_copy(model, need) if need > config.block_size else model
    one = prompts[:1]
    cache_rows = []
    with amp():
        for n in lengths:
            reps = args.repeats if n < 512 else 1  # 512 uncached steps cost most of the run: timed once
            sec, outs = interleaved({"cached": lambda n=n: ours_generate(long, one, n),
                                     "uncached": lambda n=n: ours_generate(long, one, n, False)}, reps, 0)
            cache_rows.append({"new_tokens": n, "repeats": reps, "cached_tps": n / sec["cached"],
                               "uncached_tps": n / sec["uncached"], "speedup": sec["uncached"] / sec["cached"],
                               "identical": torch.equal(outs["cached"], outs["uncached"])})
    out["kv_cache"] = {"block_size": long.config.block_size, "rows": cache_rows}
    out["peak_gflop_per_s"] = peak

    # ---- report -----------------------------------------------------------------------------------------
    r_train = train_tps["ours"] / train_tps["hf"]
    r_gen = gen_tps["ours"] / gen_tps["hf"]
    out["ratios"] = {"training": r_train, "generation": r_gen}
    line = "{:<44} {:>12} {:>14} {:>8}  {}"
    print()
    print(line.format("measurement", "ours", "transformers", "ratio", "target"))
    print(line.format(f"(a) training tokens/s  (B={args.batch}, T={seq})", f"{train_tps['ours']:.0f}",
                      f"{train_tps['hf']:.0f}", f"{r_train:.2f}x",
                      f">={TRAIN_TARGET}x now, goal {TRAIN_GOAL}x: {verdict(r_train, TRAIN_TARGET)}"
                      f"{'' if r_train >= TRAIN_GOAL else ' (goal not reached)'}"))
    print(line.format(f"(b) greedy gen tokens/s (B={gen_batch}, {args.prompt}+{new})", f"{gen_tps['ours']:.0f}",
                      f"{gen_tps['hf']:.0f}", f"{r_gen:.2f}x", f">={GEN_TARGET}x: {verdict(r_gen, GEN_TARGET)}"))
    print(f"    greedy outputs token-identical to transformers: {'yes' if identical else 'NO'}")
    print()
    note = (f" (block_size raised {config.block_size} -> {long.config.block_size} to fit prompt {args.prompt} + 512;"
            " same weights, extra position rows freshly initialised)") if long is not model else ""
    print(f"(c) our greedy generation, batch 1, prompt {args.prompt}{note}")
    row = "{:>10} {:>16} {:>18} {:>10} {:>10}"
    print(row.format("new tokens", "cached tok/s", "no-cache tok/s", "speed-up", "identical"))
    for r in cache_rows:
        print(row.format(r["new_tokens"], f"{r['cached_tps']:.0f}", f"{r['uncached_tps']:.0f}",
                         f"{r['speedup']:.1f}x", "yes" if r["identical"] else "NO"))
    print()
    print(f"(d) matmul peak 1024^3: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    print(f"    training FLOPs/token (6N + 12LTC, T={seq}): {flops / 1e6:.1f} MFLOP")
    for k, name in (("ours", "ours"), ("hf", "transformers")):
        print(f"    {name:<13} {gflops[k]:8.1f} GFLOP/s = {gflops[k] / peak[args.dtype]:6.1%} of the "
              f"{args.dtype} peak")
    load = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    out["load_average"] = load
    print(f"\n1-min load average {load['before']:.1f} before, {load['after']:.1f} after, on {load['cpus']} CPUs"
          + ("  WARNING: other processes share the CPUs; absolute figures are noisy (ours and transformers"
             " are interleaved, so the ratios suffer less)"
             if load["before"] > 1 or load["after"] > threads + 1 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
