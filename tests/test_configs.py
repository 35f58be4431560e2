"""Every YAML under configs/ parses and instantiates (model, data module, trainer) through its own CLI."""

from __future__ import annotations

import pytest

from backbone.config import GPTConfig
from tasks.catalog import TASKS
from tasks.task_cli import run_cli
from tests.helpers import ROOT

PRETRAIN = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.logger", "false"]


def test_every_config_is_covered():
    assert {p.stem for p in PRETRAIN} >= {"nano", "tiny", "small", "gpt2-124m"}
    # every registered task has its YAML, and every task YAML belongs to a registered task
    assert {p.stem for p in (ROOT / "configs" / "tasks").glob("*.yaml")} == set(TASKS)


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.stem)
def test_pretrain_config_instantiates(path, monkeypatch, tmp_path):
    from backbone.lit import LitGPT
    from backbone.pretrain_cli import cli_main
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


def _preset_methods():
    from tasks.recipes import load_preset, preset_names

    return [(name, task, method) for name in preset_names() for task, plan in load_preset(name).tasks.items()
            for method in plan.methods.values()]


def test_every_method_file_belongs_to_a_preset_and_every_preset_loads():
    """No recipe lies unused, and every preset's files exist (load_preset checks them)."""
    used = {method.config for _, _, method in _preset_methods()}
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "configs" / "tasks").glob("*/*.yaml")}
    assert on_disk == used


@pytest.mark.parametrize("preset, task, method", _preset_methods(), ids=lambda v: getattr(v, "name", v))
def test_every_method_instantiates_with_its_task_config(preset, task, method):
    """The row's recipe runs with the task's own command: `gptsuite <task> fit --config <task>.yaml --config
    <method>.yaml` parses and builds its model, data module and trainer."""
    from tasks.recipes import load_preset

    spec = TASKS[task]
    cli = run_cli(task, ["--config", str(ROOT / spec.config), "--config", str(ROOT / method.config), *CPU], run=False)
    assert isinstance(cli.model, spec.module_class)
    assert cli.model.hparams.backbone == load_preset(preset).backbone  # the file names the preset's backbone


def test_every_committed_row_names_its_recipe_and_a_hashed_row_still_matches_it():
    """A row of the committed table is current exactly when its recipe files still hash to what it records:
    editing a recipe means running it again (`gptsuite bench --preset P --out benchmarks`). Rows run before
    recipes were files record no hash (docs/recipes.md)."""
    import json

    from tasks.recipes import recipe_hash

    rows = json.loads((ROOT / "benchmarks" / "results.json").read_text())["rows"]
    for row in rows:
        files = row["recipe"]["files"]
        assert all((ROOT / f).is_file() for f in files), (row["task"], row["method"], files)
        if row["recipe"]["sha256"] is not None:
            assert row["recipe"]["sha256"] == recipe_hash(files), (row["task"], row["method"])
            assert row["run"]["machine"] and row["run"]["commit"]
    assert any(row["recipe"]["sha256"] for row in rows)
