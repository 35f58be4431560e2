"""The machine a measuring command ran on, as one line of its report (sweep, bias, safety, optimize)."""

from __future__ import annotations

from backbone.precision import machine_summary


def machine_line() -> str:
    """The CPU the figures belong to, as the benchmark table records it (backbone.precision.machine_summary):
    "<cpu>, <kernel capability>, <n> threads"."""
    m = machine_summary()
    return f"{m['cpu']}, {m['capability']}, {m['threads']} threads"
