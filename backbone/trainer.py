"""gptsuite's Trainer and what its LightningCLIs share.

The Trainer is Lightning's, with `precision: auto` (see `backbone.precision`) as its default: every YAML says
`precision: auto`; an explicit `--trainer.precision 32-true` or `bf16-mixed` is passed to Lightning untouched.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.pytorch.cli import LightningCLI

from backbone.precision import AUTO, device_of, resolve_precision


class Trainer(L.Trainer):
    """Lightning's Trainer with a measured default precision.

    Args:
        precision: "auto" (bf16-mixed where bf16 matmuls are fast on this machine, else 32-true; `gptsuite
            info` says why), or any Lightning precision (32-true, bf16-mixed, 16-mixed).
    """

    def __init__(self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO, **kwargs):
        super().__init__(precision=resolve_precision(precision, device_of(kwargs.get("accelerator", "auto"))),
                         **kwargs)


def cli_parser_kwargs(subcommands, **kwargs) -> dict:
    """LightningCLI's parser_kwargs for the main parser and each subcommand's, with parse errors raised
    (exit_on_error=False) instead of printed under a usage block: `gptsuite` prints them on one line."""
    return {**kwargs, "exit_on_error": False, **{name: {"exit_on_error": False} for name in subcommands}}


class CommandLineCLI(LightningCLI):
    """A LightningCLI in which what the command line and its --config files say is what runs.

    Lightning 2.6 reads a --ckpt_path checkpoint's hyperparameters over the parsed configuration, so a resumed
    run silently took the checkpoint's `model.export_dir` (and every other model argument) over the one typed
    (Lightning-AI/pytorch-lightning#21455). Here the checkpoint restores the weights, optimizer, schedule and
    step, and the model is built from the arguments given, as it was before Lightning 2.5.
    """

    def _parse_ckpt_path(self) -> None:  # Lightning's hook (private): its merge is the behaviour replaced
        return
