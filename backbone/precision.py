"""`precision: auto`: bf16-mixed only where bf16 matmuls are actually fast on this machine, else fp32.

Why measure instead of assuming: a CPU with AMX or AVX-512-bf16 runs a bf16 matmul several times faster than
fp32, while an AVX2-only CPU emulates bf16 and runs it two orders of magnitude *slower* (the measured rates
are in docs/precision-and-budgets.md). Neither the torch build nor the CPU flags alone say which; a 1024^3
matmul in each dtype does, in about a second. The rates are measured once per machine (CPU model, kernel
capability, threads, torch version) and cached in `$GPTSUITE_CACHE/machine.json`; `gptsuite info` prints them.

An explicit precision (`--trainer.precision 32-true`, `--precision bf16-mixed`) is used as given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch

from backbone.data.download import cache_dir
from backbone.perf import machine_fingerprint, measure_matmul_flops

AUTO = "auto"
FP32, BF16_MIXED = "32-true", "bf16-mixed"
# bf16-mixed pays casts and keeps fp32 master weights: choose it only for a clear matmul gain
SPEEDUP_NEEDED = 1.5
MACHINE_FILE = "machine.json"
MACHINE_FILE_ENV = "GPTSUITE_MACHINE_FILE"  # where the measured rates are cached (default: the data cache)
RATE_KEYS = {"fingerprint", "fp32_gflops", "bf16_gflops"}


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # a Lightning precision string
    reason: str  # one sentence for the console


def choose_precision(fp32_gflops: float, bf16_gflops: float) -> tuple[str, str]:
    """The rule, from measured rates alone: (precision, why)."""
    ratio = bf16_gflops / max(fp32_gflops, 1e-9)
    rates = f"bf16 matmul {bf16_gflops:.0f} GFLOP/s vs fp32 {fp32_gflops:.0f} GFLOP/s ({ratio:.2g}x)"
    if ratio >= SPEEDUP_NEEDED:
        return BF16_MIXED, f"{rates}: bf16 is fast here"
    return FP32, f"{rates}: bf16 is not at least {SPEEDUP_NEEDED}x faster here"


def _cache_path() -> Path:
    return Path(os.environ[MACHINE_FILE_ENV]) if os.environ.get(MACHINE_FILE_ENV) else cache_dir() / MACHINE_FILE


def machine_rates(device: str = "cpu", refresh: bool = False) -> dict:
    """Fingerprint + fp32/bf16 matmul GFLOP/s of this machine: measured once, then read from the cache."""
    fingerprint = machine_fingerprint(device)
    path = _cache_path()
    try:
        known = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        known = []
    # a damaged or hand-edited file is measured again, not fatal: only well-formed entries are kept
    known = [e for e in known if isinstance(e, dict) and RATE_KEYS <= e.keys()] if isinstance(known, list) else []
    for entry in known:
        if not refresh and entry["fingerprint"] == fingerprint:
            return entry
    rates = {name: measure_matmul_flops(dtype, device=device) for name, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    entry = {"fingerprint": fingerprint,
             **{f"{name}_gflops": round(r.gflops, 1) for name, r in rates.items()},
             **{f"{name}_spread": round(r.spread, 2) for name, r in rates.items()}}
    known = [e for e in known if e.get("fingerprint") != fingerprint] + [entry]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # processes starting together (DDP ranks) each write whole
        tmp.write_text(json.dumps(known, indent=2) + "\n")
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs a second measurement next time
    return entry


def auto_precision(device: str = "cpu") -> PrecisionChoice:
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)  # pre-Ampere GPUs only emulate it
        return PrecisionChoice(BF16_MIXED if bf16 else "16-mixed",
                               f"{torch.cuda.get_device_name()} {'supports' if bf16 else 'lacks'} bf16")
    entry = machine_rates(device)
    precision, why = choose_precision(entry["fp32_gflops"], entry["bf16_gflops"])
    fp = entry["fingerprint"]
    return PrecisionChoice(precision, f"{why} ({fp['cpu']}, {fp['capability']}, {fp['threads']} threads)")


def machine_summary(requested: str = AUTO, refresh: bool = False) -> dict:
    """The CPU a run's figures belong to: model, kernel capability, threads, measured fp32 / bf16 GFLOP/s, and
    the precision `requested` resolves to there (what `gptsuite info` prints and the benchmark table records;
    the presets' YAMLs run on the CPU)."""
    rates = machine_rates("cpu", refresh=refresh)
    fp = rates["fingerprint"]
    return {"cpu": fp["cpu"], "capability": fp["capability"], "threads": fp["threads"],
            "precision": resolve_precision(requested, "cpu", announce=False), "requested_precision": requested,
            "fp32_gflops": rates["fp32_gflops"], "bf16_gflops": rates["bf16_gflops"],
            **({"kernel_limits": fp["env"]} if fp["env"] else {})}


_announced: set[str] = set()


def resolve_precision(requested: str | int | None, device: str = "cpu", announce: bool = True) -> str:
    """A Lightning precision string: `requested` as given, or auto's choice (announced once per process)."""
    if requested not in (None, AUTO):
        return str(requested)
    choice = auto_precision(device)
    if announce and choice.reason not in _announced:
        _announced.add(choice.reason)
        print(f"precision auto -> {choice.precision}: {choice.reason}", file=sys.stderr)
    return choice.precision


def set_inference_precision(model, precision: str):
    """Run a GPT's forward in a resolved precision from now on (bf16-mixed: its blocks under bf16 autocast,
    except incremental decoding steps, which are faster in fp32; 32-true: fp32). A model attribute, not a
    context, so every caller on every thread (the demo serves requests from a thread pool; autocast state is
    per thread) gets the same precision. Returns the model."""
    model.autocast_dtype = {BF16_MIXED: torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return model


def device_of(accelerator: str | None) -> str:
    """The device a Trainer's accelerator setting runs on ("auto" takes CUDA when there is one)."""
    if accelerator in ("gpu", "cuda") or (accelerator in (None, "auto") and torch.cuda.is_available()):
        return "cuda"
    return "cpu"
