"""What this machine is and how fast it multiplies matrices: the denominator of model FLOP utilisation (MFU)
and the evidence behind the automatic precision (`backbone.precision`)."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time

import torch


@dataclasses.dataclass(frozen=True)
class MatmulRate:
    """FLOP/s of repeated (size x size) @ (size x size) matmuls (2 * size^3 FLOPs each).

    flops is the median run; spread = slowest / fastest run (1.0: every run alike). A rate measured in one
    run (the dtype was too slow to repeat within the time cap) has spread 1.0 and runs == 1.
    """

    flops: float
    spread: float
    runs: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def measure_matmul_flops(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 7,
                         device: torch.device | str = "cpu", max_seconds: float = 3.0) -> MatmulRate:
    """The median FLOP/s of `repeats` matmuls after a warm-up, stopping early once `max_seconds` are spent
    (an emulated dtype can be 100x slower than fp32: one run then says enough)."""
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    small = torch.randn(64, 64, device=device, dtype=dtype)
    small @ small  # loads the kernels without paying a full-size run at an unknown speed
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times: list[float] = []
    begin = time.perf_counter()
    for i in range(repeats + 1):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        if i > 0 or time.perf_counter() - start > max_seconds / 2:  # run 0 warms the caches unless it is slow
            times.append(time.perf_counter() - start)
        if times and time.perf_counter() - begin > max_seconds:
            break
    rates = [2 * size**3 / max(t, 1e-12) for t in times]
    return MatmulRate(statistics.median(rates), max(rates) / min(rates), len(rates))


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 9B14"), from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(device: str = "cpu") -> dict:
    """What a matmul rate depends on: the same fingerprint means the same measured rates."""
    if device == "cuda":
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    return {"device": "cpu", "cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            # both select kernels: a user forcing AVX2 on an AVX-512 machine gets AVX2's rates
            "env": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}}
