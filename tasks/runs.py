"""Where a measuring command writes: a fresh run folder under runs/ (git-ignored) unless --out names one.

The committed tables under benchmarks/ are the reference a user compares a run with, so a run must not replace
them by default; `--out benchmarks/...` updates them on purpose.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

RUNS = Path("runs")  # relative to the working directory, like every other default output path


class RunDefault(str):
    """An --out default that stands for a run folder not made yet: the folder is made only when the command
    writes (`write --title` and `safety --prompt` write nothing), and a folder given with --out is told apart
    from the default by this type, not by its text. argparse keeps a string default's object as it is."""


def default_out(command: str, name: str | None = None) -> RunDefault:
    """The --out default of a command, as its --help shows it: runs/<command>/[<name>-]<YYYYmmdd-HHMMSS>."""
    return RunDefault(f"{RUNS / command}/{f'<{name}>-' if name else ''}<YYYYmmdd-HHMMSS>")


def out_help(command: str, reference: str, writes: str) -> str:
    """An --out help text that says the default and how to update the committed reference."""
    return (f"{writes} go here (default: a fresh runs/{command}/<YYYYmmdd-HHMMSS>/, printed; "
            f"--out {reference} updates the committed reference)")


def run_folder(command: str, name: str | None = None) -> Path:
    """A folder made now for one run: runs/<command>/[<name>-]<YYYYmmdd-HHMMSS>, with -2, -3, ... when a run in
    the same second has it. mkdir without exist_ok claims it atomically, so no two runs ever share one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{name}-{stamp}" if name else stamp
    parent = RUNS / command
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")  # itertools.count never ends; this keeps type checkers content


def given_out(out: str | Path | None) -> Path | None:
    """The folder --out names, or None when it is the default (the caller makes the run folder)."""
    return None if out is None or isinstance(out, RunDefault) else Path(out)


def out_folder(out: str | Path | None, command: str, name: str | None = None) -> Path:
    """The folder to write: the one --out names, else a fresh run folder (said on stderr, before the work, so a
    long run's user knows where to look)."""
    folder = given_out(out)
    if folder is None:
        folder = run_folder(command, name)
        print(f"[{command}] writing to {folder}/ (--out DIR to choose)", file=sys.stderr)
    return folder
