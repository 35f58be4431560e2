"""Decode speed on a CPU: gptsuite's options against transformers and llama.cpp on the same SmolLM2 weights.

    python benchmarks/decode_speed.py [--new-tokens 128] [--ptb-lines 0] [--out benchmarks/decode]

Each engine runs in a fresh process (so its resident memory is its own), greedy, on the same prompts, with
every row decoding exactly --new-tokens tokens (eos does not stop it):

    gptsuite none / int8 / int4     backbone.quantize's modes, KV cache on (and `none` once without it)
    gptsuite int4 compiled          int4 with its decoding steps through torch.compile (CompiledSteps; the
                                    compile is in the untimed warm-up)
    transformers                    LlamaForCausalLM.generate, fp32, the same weights (backbone.interop.to_hf)
    llama.cpp                       llama-cpp-python on the GGUF itself (batch 1, its own loop), when installed
    llama.cpp, gptsuite's loop      `--engine llama.cpp`: gptsuite's decoding loop on llama.cpp's forward pass
                                    (backbone.llama_cpp_engine: SmolLM2 exported as q4_1, the same codes;
                                    batches row by row)
    head to head                    int4 and llama.cpp alternating in one process (the ratio, robust to load)
    head to head compiled           the same with int4's steps compiled

Columns: tokens/s at batch 1 and batch 8 (eight different prompts, left-padded), greedy and sampled
(temperature 0.8, top-p 0.95), time to first token (the prompt's prefill and one token, batch 1), weight
bytes, resident memory after loading and its peak while decoding, and PTB test perplexity (token level,
512-token windows; --ptb-lines 0 = all 3,761 lines) of gptsuite's rows.
Writes results.md, results.json and results.png to --out. Run it on an idle machine: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = [
    "The history of the Roman Empire begins",
    "Here is a recipe for a simple tomato soup:",
    "The three laws of motion describe",
    "In the morning the village market",
    "Photosynthesis is the process by which",
    "A good night's sleep matters because",
    "The first computers were built to",
    "Dear hiring manager, I am writing to",
]
SMOLLM2 = "artifacts/backbones/smollm2-135m"
SAMPLING = {"temperature": 0.8, "top_p": 0.95}  # the batch-8 sampled column (pass@k-style decoding)
ENGINES = ["gptsuite none", "gptsuite none, no KV cache", "gptsuite int8", "gptsuite int4", "gptsuite int4 compiled",
           "transformers", "llama.cpp", "llama.cpp, gptsuite's loop", "head to head", "head to head compiled"]


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Start VmHWM afresh at the current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def timed(fn, repeats: int) -> float:
    """Median seconds of fn() over repeats, after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------------------
# one engine, in its own process
# --------------------------------------------------------------------------------------------------------
def gptsuite_engine(name: str, args):
    import torch

    from backbone.artifact import load_backbone
    from backbone.decoding_model import CompiledSteps
    from backbone.generate import GenerationConfig, encode_prompts, generate

    mode = name.split()[1].rstrip(",")
    model, tokenizer = load_backbone(args.backbone, quantize=mode)
    if name.endswith("compiled"):
        model = CompiledSteps(model)
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, use_cache="no KV cache" not in name)

    def run(batch: int, new_tokens: int, sample: bool = False):
        ids, mask = encode_prompts(tokenizer, PROMPTS[:batch])
        settings = dict(temperature=SAMPLING["temperature"], top_p=SAMPLING["top_p"], seed=0) if sample else {}
        with torch.inference_mode():
            return generate(model, ids, mask, cfg.replace(max_new_tokens=new_tokens, **settings))[:, ids.size(1):]

    def ptb():
        from backbone.data.loaders import load_benchmark
        from backbone.perplexity import perplexity

        lines = [t for t in load_benchmark("ptb")["test"]["sentence"] if t.strip()]
        text = "\n".join(lines[: args.ptb_lines or None])
        with torch.inference_mode():
            return perplexity(model, tokenizer, text, batch_size=4, block_size=512)["ppl_token"]

    from backbone.quantize import weight_bytes

    return run, (ptb if "no KV cache" not in name and not args.skip_ptb else None), weight_bytes(model), \
        lambda ids: tokenizer.decode(ids)


def transformers_engine(args):
    import torch

    from backbone.artifact import load_backbone
    from backbone.generate import encode_prompts
    from backbone.interop import to_hf
    from backbone.quantize import weight_bytes

    model, tokenizer = load_backbone(args.backbone)
    hf = to_hf(model).eval()
    del model

    def run(batch: int, new_tokens: int, sample: bool = False):
        ids, mask = encode_prompts(tokenizer, PROMPTS[:batch])
        settings = dict(do_sample=True, **SAMPLING) if sample else dict(do_sample=False)
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, pad_token_id=0, **settings)
        return out[:, ids.size(1):]

    return run, None, weight_bytes(hf), lambda ids: tokenizer.decode(ids)


def llama_cpp_engine(args):
    import torch

    from backbone.llama_cpp_engine import open_llama

    llm = open_llama(args.gguf, 512, torch.get_num_threads())  # AMX off where the CPU has it (it crashed)

    def run(batch: int, new_tokens: int, sample: bool = False):
        if batch != 1 or sample:
            return None  # llama-cpp-python's high-level API decodes one sequence
        llm.reset()
        prompt = llm.tokenize(PROMPTS[0].encode(), add_bos=True)
        out = []
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            out.append(token)
            if len(out) == new_tokens:
                break
        return out

    return run, None, os.path.getsize(args.gguf), lambda ids: llm.detokenize(ids).decode(errors="replace")


def engine_llama_cpp(args):
    """`--engine llama.cpp`: gptsuite's generate over backbone.llama_cpp_engine's model (q4_1 GGUF)."""
    import torch

    from backbone.artifact import load_backbone
    from backbone.generate import GenerationConfig, encode_prompts, generate
    from backbone.llama_cpp_engine import llama_cpp_model

    float_model, tokenizer = load_backbone(args.backbone)
    model = llama_cpp_model(float_model, tokenizer, "int4")
    del float_model
    cfg = GenerationConfig(max_new_tokens=args.new_tokens)

    def run(batch: int, new_tokens: int, sample: bool = False):
        ids, mask = encode_prompts(tokenizer, PROMPTS[:batch])
        settings = dict(temperature=SAMPLING["temperature"], top_p=SAMPLING["top_p"], seed=0) if sample else {}
        with torch.inference_mode():
            return generate(model, ids, mask, cfg.replace(max_new_tokens=new_tokens, **settings))[:, ids.size(1):]

    return run, None, os.path.getsize(model.gguf_path), lambda ids: tokenizer.decode(ids)


def head_to_head(args, compiled: bool = False) -> dict:
    """gptsuite int4 (its steps compiled or not) and llama.cpp in one process, batch 1, alternating for --rounds
    rounds: the ratio of their speeds under the same conditions (a busy neighbour slows both alike)."""
    mine = "gptsuite int4" + (" compiled" if compiled else "")
    ours, _, _, _ = gptsuite_engine(mine, args)
    theirs, _, _, _ = llama_cpp_engine(args)
    ours(1, args.new_tokens), theirs(1, 8)  # warm-up (and the compile)
    rates = {mine: [], "llama.cpp": []}
    for _ in range(args.rounds):
        for name, run in ((mine, ours), ("llama.cpp", theirs)):
            start = time.perf_counter()
            run(1, args.new_tokens)
            rates[name].append(args.new_tokens / (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(rates[mine], rates["llama.cpp"])]
    return {"engine": "head to head" + (" compiled" if compiled else ""), "ours": mine, "rounds": args.rounds,
            **{f"{k} tok/s": [round(r, 1) for r in v] for k, v in rates.items()},
            "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3)}


def measure(name: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if name.startswith("head to head"):
        return head_to_head(args, compiled=name.endswith("compiled"))
    if name == "transformers":
        run, ptb, weights, decode = transformers_engine(args)
    elif name == "llama.cpp":
        run, ptb, weights, decode = llama_cpp_engine(args)
    elif name == "llama.cpp, gptsuite's loop":
        run, ptb, weights, decode = engine_llama_cpp(args)
    else:
        run, ptb, weights, decode = gptsuite_engine(name, args)
    row = {"engine": name, "weights_mb": round(weights / 1e6, 1), "rss_loaded_mb": round(rss_mb(), 1)}
    reset_peak_rss()  # from here on VmHWM is the peak of decoding alone (loading fp32 weights peaks higher)
    row["first_token_s"] = round(timed(lambda: run(1, 1), args.repeats), 4)
    sample = run(1, args.new_tokens)
    row["text"] = decode(list(sample[0]) if hasattr(sample, "shape") else sample)[:160]
    for batch in (1, 8):
        if "no KV cache" in name and batch == 8:
            continue
        if run(batch, 1) is None:
            continue
        seconds = timed(lambda b=batch: run(b, args.new_tokens), args.repeats)
        row[f"tok_s_batch{batch}"] = round(batch * args.new_tokens / seconds, 1)
    if "no KV cache" not in name and run(8, 1, sample=True) is not None:
        seconds = timed(lambda: run(8, args.new_tokens, sample=True), args.repeats)
        row["tok_s_batch8_sampled"] = round(8 * args.new_tokens / seconds, 1)
    row["rss_peak_decoding_mb"] = round(rss_mb("VmHWM"), 1)
    if ptb is not None:
        start = time.perf_counter()
        row["ptb_ppl"] = round(ptb(), 3)
        row["ptb_s"] = round(time.perf_counter() - start, 1)
    return row


# --------------------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------------------
def markdown(rows: list[dict], meta: dict) -> str:
    duels = [r for r in rows if r["engine"].startswith("head to head")]
    rows = [r for r in rows if r not in duels]
    by = {r["engine"]: r for r in rows}
    reference = by.get("llama.cpp", {}).get("tok_s_batch1")
    fp32_ppl = by.get("gptsuite none", {}).get("ptb_ppl")
    bf16 = (f"; matmul fp32 {meta['fp32_gflops']:,.0f} / bf16 {meta['bf16_gflops']:,.0f} GFLOP/s"
            if meta.get("bf16_gflops") else "")
    lines = [f"Decoding {meta['new_tokens']} new tokens, greedy, {meta['cpu']} ({meta['capability']}{bf16}), "
             f"{meta['threads']} threads, torch {meta['torch']}, {meta['date']}.", "",
             "| engine | tok/s batch 1 | vs llama.cpp | tok/s batch 8 | batch 8 sampled | first token s | weights MB | "
             "RSS loaded / decoding peak MB | PTB ppl (vs fp32) |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(value, fmt="{:,.1f}"):
        return "–" if value is None else fmt.format(value)

    for r in rows:
        ratio = f"{r['tok_s_batch1'] / reference:.0%}" if reference and r.get("tok_s_batch1") else "–"
        ppl = r.get("ptb_ppl")
        ppl_cell = "–" if ppl is None else (f"{ppl:.2f}" + (f" ({(ppl / fp32_ppl - 1):+.2%})" if fp32_ppl else ""))
        lines.append(f"| {r['engine']} | {cell(r.get('tok_s_batch1'))} | {ratio} | {cell(r.get('tok_s_batch8'))} | "
                     f"{cell(r.get('tok_s_batch8_sampled'))} | {cell(r.get('first_token_s'), '{:.3f}')} | "
                     f"{cell(r['weights_mb'])} | {cell(r['rss_loaded_mb'], '{:,.0f}')} / "
                     f"{cell(r['rss_peak_decoding_mb'], '{:,.0f}')} | {ppl_cell} |")
    for duel in duels:
        mine = duel.get("ours", "gptsuite int4")
        lines += ["", f"{duel['engine'].capitalize()}, batch 1, one process, {duel['rounds']} alternating rounds: "
                      f"{mine} {duel[mine + ' tok/s']} tok/s, llama.cpp {duel['llama.cpp tok/s']} tok/s; ratio median "
                      f"{duel['ratio_median']:.0%} (range {duel['ratio_min']:.0%} to {duel['ratio_max']:.0%})."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    rows = [r for r in rows if not r["engine"].startswith("head to head")]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["engine"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
    y = range(len(rows))
    ax.barh([i - 0.2 for i in y], [r.get("tok_s_batch1") or 0 for r in rows], height=0.4, label="batch 1")
    ax.barh([i + 0.2 for i in y], [r.get("tok_s_batch8") or 0 for r in rows], height=0.4, label="batch 8")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("new tokens per second (greedy)")
    ax.legend(loc="lower right")
    ax.set_title("SmolLM2-135M decoding on this CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default=SMOLLM2, help="backbone folder (default: `gptsuite import smollm2`'s)")
    p.add_argument("--gguf", default=None, help="the GGUF for llama.cpp (default: SmolLM2's, from the data cache)")
    p.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the median is reported)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the int4 / llama.cpp head to head")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--ptb-lines", type=int, default=0, help="PTB test lines scored (0 = all)")
    p.add_argument("--skip-ptb", action="store_true")
    p.add_argument("--out", default="benchmarks/decode")
    p.add_argument("--engine", help=argparse.SUPPRESS)  # the child process: measure one engine, print JSON
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.gguf is None and {"llama.cpp", "head to head", "head to head compiled"} & set(args.engines):
        from backbone.data.download import fetch
        from backbone.gguf import SMOLLM2_FILE, SMOLLM2_SOURCE

        args.gguf = fetch(SMOLLM2_SOURCE) / SMOLLM2_FILE
    if args.engine:
        print("RESULT " + json.dumps(measure(args.engine, args)))
        return 0
    rows = []
    for name in args.engines:
        if "llama.cpp" in name or name.startswith("head to head"):
            try:
                import llama_cpp  # noqa: F401
            except ImportError:
                print("llama-cpp-python is not installed: no llama.cpp row (pip install llama-cpp-python)")
                continue
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--engine", name,
                 *(["--gguf", str(args.gguf)] if args.gguf else [])]
        print(f"[decode] {name} ...", flush=True)
        done = subprocess.run(child, capture_output=True, text=True)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not result:
            print(f"[decode] {name} failed:\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(result[0][len("RESULT "):]))
        print(f"[decode] {json.dumps(rows[-1])}", flush=True)
    import torch

    from backbone.perf import cpu_model
    from backbone.precision import machine_summary
    from backbone.quantize import fastest_activation_dtype

    rates = machine_summary()
    meta = {"new_tokens": args.new_tokens, "cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "fp32_gflops": round(rates["fp32_gflops"], 1), "bf16_gflops": round(rates["bf16_gflops"], 1),
            "int4_activations": fastest_activation_dtype()[1],
            "threads": args.threads, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "ptb_lines": args.ptb_lines or "all", "env": {k: v for k, v in os.environ.items()
                                                         if k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, meta)
    (out / "results.md").write_text(table)
    plot(rows, out / "results.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
