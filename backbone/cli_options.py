"""Command-line options that several gptsuite commands share, each written once (argparse).

    --quantize   generate, bench, the apps (sweep, write, safety) and the demo
    --engine     generate, bench and the demo: which engine computes the decoding steps
    --compile    generate, bench and the demo: gptsuite's decoding steps through torch.compile
"""

from __future__ import annotations

import argparse

from backbone.llama_cpp_engine import ENGINES, ENGINES_HELP, GPTSUITE
from backbone.quantize import AUTO, CHOICES, CHOICES_HELP


def add_quantize_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--quantize on an argparse parser: `what` says what runs quantised in this command; the choices and
    their description are backbone.quantize's."""
    parser.add_argument("--quantize", default=AUTO, choices=list(CHOICES), help=f"{what}: {CHOICES_HELP}")


def add_engine_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--engine on an argparse parser: `what` says what it decodes in this command."""
    parser.add_argument("--engine", default=GPTSUITE, choices=list(ENGINES), help=f"{what}: {ENGINES_HELP}")


def add_compile_option(parser: argparse.ArgumentParser) -> None:
    """--compile on an argparse parser: gptsuite's decoding steps through torch.compile."""
    parser.add_argument("--compile", action="store_true",
                        help="run gptsuite's decoding steps through torch.compile: about a minute to compile on "
                             "2 cores (kernels cached in ~/.cache/gptsuite/inductor), then faster steps: for long runs "
                             "(a benchmark, a demo that stays up), not one short generation")
