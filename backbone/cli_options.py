"""Command-line options that several gptsuite commands share, each written once (argparse).

    --quantize   generate, bench, the apps (sweep, write, safety) and the demo
"""

from __future__ import annotations

import argparse

from backbone.quantize import AUTO, CHOICES, CHOICES_HELP


def add_quantize_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--quantize on an argparse parser: `what` says what runs quantised in this command; the choices and
    their description are backbone.quantize's."""
    parser.add_argument("--quantize", default=AUTO, choices=list(CHOICES), help=f"{what}: {CHOICES_HELP}")
