"""`gptsuite pretrain fit|validate|test ...`: the LightningCLI over backbone.lit's LitGPT and
backbone.pretrain_data's PretrainData. Parsing only; the training is theirs."""

from __future__ import annotations

import sys
from typing import Any

import torch

from backbone.lit import LitGPT, preset_config
from backbone.pretrain_data import PretrainData
from backbone.renamed_keys import refuse_renamed_keys
from backbone.trainer import CommandLineCLI, Trainer, cli_parser_kwargs

# pretraining keys that were renamed (old dotted key -> new): `gptsuite pretrain` refuses the old ones
RENAMED_KEYS = {"model.config": "model.preset"}
RENAMED_HINT = ("the shape is a preset of backbone.config.MODEL_PRESETS, e.g. `model.preset: tiny`, with any field "
                "that differs under `model.overrides`, e.g. `model.overrides: {dropout: 0.1}`")


def preset_block_size(preset: str, overrides: dict[str, Any] | None) -> int:
    """The context length of model.preset with model.overrides: the data module's windows (a CLI link)."""
    return preset_config(preset, overrides).block_size


class PretrainCLI(CommandLineCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(("model.preset", "model.overrides"), "data.block_size", compute_fn=preset_block_size)


def cli_main(args: list[str] | None = None, run: bool = True) -> PretrainCLI:
    """`gptsuite pretrain fit|validate|test ...`; args=None reads sys.argv (tests pass a list); run=False only
    builds the objects (args then hold no subcommand)."""
    refuse_renamed_keys(sys.argv[1:] if args is None else args, RENAMED_KEYS, RENAMED_HINT)
    torch.set_float32_matmul_precision("high")
    return PretrainCLI(
        LitGPT, PretrainData, trainer_class=Trainer, args=args, run=run, save_config_kwargs={"overwrite": True},
        parser_kwargs=cli_parser_kwargs(PretrainCLI.subcommands(),
                                        description="Pretrain a GPT backbone on the offline corpus."),
    )

