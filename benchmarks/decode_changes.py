"""What each change to the decode step was worth: the same decode timed at several commits, side by side.

    python benchmarks/decode_changes.py REV [REV ...] [--quantize int4] [--rounds 5] [--out benchmarks/decode-changes]

Each commit's code is unpacked (git archive) into a temporary folder and loaded once in its own process
(the same backbone folder for all); then, for --rounds rounds, every commit times in turn a batch-1 greedy
decode: ms per step (backbone.quantize.decode_step_seconds: 64 cached steps after an 8-token prompt) and
tokens/s of `generate` (128 new tokens).
Alternating rounds put every commit under the same load, so the ratio of each commit to the one before it is
what its change was worth here. The table gives medians, and each commit's step time against the previous
commit's. Writes results.md and results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from backbone.artifact import load_backbone
from backbone.generate import GenerationConfig, generate
from backbone.quantize import decode_step_seconds  # the step `auto` times, in every commit compared
model, tokenizer = load_backbone(sys.argv[1], quantize=sys.argv[2])
model.eval()
prompt = torch.tensor([tokenizer.encode("The history of the Roman Empire begins", add_bos=True)])

def step_ms(steps=64):
    return decode_step_seconds(model, steps=steps) * 1e3

def generate_tok_s(new=128):
    start = time.perf_counter()
    with torch.inference_mode():
        generate(model, prompt, None, GenerationConfig(max_new_tokens=new))
    return new / (time.perf_counter() - start)

step_ms(8), generate_tok_s(8)  # warm-up
print("READY", flush=True)
for line in sys.stdin:
    print(json.dumps({"step_ms": step_ms(), "tok_s": generate_tok_s()}), flush=True)
"""


def unpack(rev: str, into: Path) -> tuple[str, Path]:
    """(the commit's short hash and subject, a folder of its own holding its tracked files: the same commit may
    be named twice, to see the machine's noise)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    subject = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%s", rev], check=True,
                             capture_output=True, text=True).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix=f"{sha}-", dir=into))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return f"{sha} {subject}", folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("revs", nargs="+", help="commits, oldest first (each is compared with the one before)")
    p.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    p.add_argument("--quantize", default="int4")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default="benchmarks/decode-changes")
    args = p.parse_args(argv)

    import torch

    from backbone.perf import cpu_model

    backbone = str(Path(args.backbone).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        children = []
        for rev in args.revs:
            name, folder = unpack(rev, Path(tmp))
            env = {**os.environ, "PYTHONPATH": str(folder)}
            child = subprocess.Popen([sys.executable, "-c", CHILD, backbone, args.quantize, str(args.threads)],
                                     cwd=folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if child.stdout.readline().strip() != "READY":
                raise SystemExit(f"{name}: the child process failed to load the backbone")
            children.append((name, child))
            print(f"[changes] loaded {name}", flush=True)
        timings = [[] for _ in children]  # per commit, in the order given (a commit may be named twice)
        for r in range(args.rounds):
            for (_, child), runs in zip(children, timings):
                child.stdin.write("go\n")
                child.stdin.flush()
                runs.append(json.loads(child.stdout.readline()))
            print(f"[changes] round {r + 1}: " + ", ".join(f"{t[-1]['step_ms']:.2f}" for t in timings), flush=True)
        for _, child in children:
            child.stdin.close()
            child.wait()
    rows = []
    for (name, _), runs in zip(children, timings):
        rows.append({"commit": name, "step_ms": [round(t["step_ms"], 3) for t in runs],
                     "tok_s": [round(t["tok_s"], 1) for t in runs],
                     "step_ms_median": round(statistics.median(t["step_ms"] for t in runs), 3),
                     "tok_s_median": round(statistics.median(t["tok_s"] for t in runs), 1)})
    meta = {"backbone": args.backbone, "quantize": args.quantize, "rounds": args.rounds, "threads": args.threads,
            "cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "emulated": "ATEN_CPU_CAPABILITY" in os.environ, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, meta)
    (out / "results.md").write_text(table)
    print(table)
    return 0


def markdown(rows: list[dict], meta: dict) -> str:
    how = "AVX2 emulated (ATEN_CPU_CAPABILITY)" if meta["emulated"] else meta["capability"]
    lines = [f"Batch-1 greedy decoding of {meta['backbone']} ({meta['quantize']}), {meta['cpu']} ({how}), "
             f"{meta['threads']} threads, torch {meta['torch']}, {meta['date']}; medians of {meta['rounds']} "
             "alternating rounds, each commit in its own process.", "",
             "| commit | ms per step | vs the commit before | generate tok/s (128 new) |", "|---|---|---|---|"]
    before = None
    for r in rows:
        versus = "–" if before is None else f"{before / r['step_ms_median']:.3f}x"
        lines.append(f"| {r['commit'][:90]} | {r['step_ms_median']:.2f} | {versus} | {r['tok_s_median']:.1f} |")
        before = r["step_ms_median"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
