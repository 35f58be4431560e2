"""Every YAML under configs/ parses and instantiates (model, data module, trainer) through its own CLI."""

from __future__ import annotations

import pytest

from backbone.config import GPTConfig
from tasks.registry import TASKS, run_cli
from tests.helpers import ROOT

PRETRAIN = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.logger", "false"]


def test_every_config_is_covered():
    assert {p.stem for p in PRETRAIN} >= {"nano", "tiny", "small", "gpt2-124m"}
    # every registered task has its YAML, and every task YAML belongs to a registered task
    assert {p.stem for p in (ROOT / "configs" / "tasks").glob("*.yaml")} == set(TASKS)


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.stem)
def test_pretrain_config_instantiates(path, monkeypatch, tmp_path):
    from backbone.lit import LitGPT, cli_main
    from backbone.pretrain_data import PretrainData

    cli = cli_main(["--config", str(path), *CPU, "--trainer.callbacks", "null"], run=False)
    assert isinstance(cli.model, LitGPT) and isinstance(cli.datamodule, PretrainData)
    assert isinstance(cli.model.config, GPTConfig)
    assert cli.datamodule.block_size == cli.model.config.block_size  # linked
    assert cli.model.hparams.export_dir == f"artifacts/backbones/{path.stem}"


@pytest.mark.parametrize("name", list(TASKS))
def test_task_config_instantiates(name):
    from tasks.base import TaskModule
    from tasks.data import TaskData

    spec = TASKS[name]
    cli = run_cli(name, ["--config", str(ROOT / spec.config), *CPU], run=False)
    assert isinstance(cli.model, spec.module_class) and isinstance(cli.model, TaskModule)
    assert isinstance(cli.datamodule, spec.data_class) and isinstance(cli.datamodule, TaskData)
    assert cli.datamodule.backbone == cli.model.hparams.backbone == "artifacts/backbones/tiny"  # linked
    assert cli.model.hparams.export_dir == f"artifacts/tasks/{name}"
