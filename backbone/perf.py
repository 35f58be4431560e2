"""The machine's achievable matmul throughput, the denominator of model FLOP utilisation (MFU)."""

from __future__ import annotations

import time

import torch


def measure_matmul_flops(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 10,
                         device: torch.device | str = "cpu") -> float:
    """FLOP/s of a (size x size) @ (size x size) matmul, best of `repeats` (2 * size^3 FLOPs each)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
