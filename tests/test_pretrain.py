"""Pretraining end to end through the CLI: fast_dev_run, export, SIGKILL + resume, DDP on 2 CPU processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from backbone.artifact import load_backbone
from backbone.optim import param_groups, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
NANO = ROOT / "configs" / "pretrain" / "nano.yaml"
TEXT = Path(textwrap.__file__)  # ~20 kB of real English + Python from the stdlib: always present, offline


# Paths in nano.yaml are relative (runs/pretrain/nano, artifacts/...): each test runs in its own folder.
RUN, BACKBONE = Path("runs/pretrain/nano"), Path("artifacts/backbones/nano")


def nano_args(*extra: str) -> list[str]:
    return [
        "fit", "--config", str(NANO), "--data.text_files", f"[{TEXT}]", "--data.ptb", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra,
    ]


def run_cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tasks.cli", "pretrain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss from every CSVLogger version under run_dir (a resumed run logs a new version)."""
    losses = {}
    for path in sorted(run_dir.rglob("metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses[int(row["step"])] = float(row["train/loss"])
    return losses


def test_fast_dev_run_in_process(tmp_path, monkeypatch):
    from backbone.pretrain_cli import cli_main

    cli_main(nano_args("--trainer.fast_dev_run", "2"))
    model, tokenizer = load_backbone(tmp_path / BACKBONE)
    assert model.config.vocab_size == tokenizer.vocab_size == 512
    assert (tmp_path / BACKBONE / "metrics.json").is_file()


def test_a_recipe_names_a_preset_with_explicit_overrides_and_old_shape_keys_are_refused(tmp_path):
    """model.preset is the shape (MODEL_PRESETS), model.overrides the fields that differ; the data's windows
    follow both. The old key (`model.config`, a repeated shape) is refused, in a file or on the command line,
    with a message naming the new one."""
    from backbone.config import GPTConfig
    from backbone.pretrain_cli import cli_main
    from backbone.renamed_keys import RenamedKeyError

    quiet = ["--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.callbacks", "null"]
    cli = cli_main(["--config", str(NANO), *quiet, "--model.overrides", "{block_size: 32, dropout: 0.1}"], run=False)
    assert cli.model.config == GPTConfig.from_preset("nano", block_size=32, dropout=0.1)
    assert cli.datamodule.block_size == 32
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  config: {vocab_size: 512, block_size: 64, n_layer: 2, n_head: 4, n_embd: 32}\n")
    for args in (["--config", str(old)], ["--config", str(NANO), "--model.config.n_layer", "3"]):
        with pytest.raises(RenamedKeyError, match="`model.config` was renamed `model.preset`.*model.overrides"):
            cli_main([*args, *quiet], run=False)
    with pytest.raises(Exception, match=r"unknown GPTConfig fields \['layers'\]"):
        cli_main(["--config", str(NANO), *quiet, "--model.overrides", "{layers: 3}"], run=False)


def interrupted_and_reference_losses(tmp_path, monkeypatch, max_steps: int, val_every: int, interrupt) -> tuple:
    """Train losses by step of an uninterrupted nano run (in tmp_path/a) and of one interrupted by
    `interrupt(args)` then resumed from last.ckpt (in tmp_path/b), both in process."""
    from backbone.pretrain_cli import cli_main

    common = ["--trainer.max_steps", str(max_steps), "--trainer.log_every_n_steps", "1",
              "--trainer.val_check_interval", str(val_every), "--trainer.precision", "32-true"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cli_main(nano_args(*common))
    monkeypatch.chdir(tmp_path / "b")
    interrupt(common)
    assert (tmp_path / "b" / RUN / "checkpoints" / "last.ckpt").is_file()
    assert cli_main(nano_args(*common, "--ckpt_path", "last")).trainer.global_step == max_steps
    return train_losses(tmp_path / "b" / RUN), train_losses(tmp_path / "a" / RUN)


def test_crash_then_resume_in_process_matches_uninterrupted_run(tmp_path, monkeypatch):
    """The fast twin of the SIGKILL test below: an exception at step 11 (after the step-10 checkpoint), then
    a resume from last.ckpt recomputes steps 10-15 exactly as an uninterrupted run did them."""
    from backbone.pretrain_cli import cli_main

    def crash(common):
        with pytest.raises(RuntimeError, match="crash at step 11"):
            cli_main(nano_args(*common, "--trainer.callbacks+=tests.helpers.CrashAtStep",
                               "--trainer.callbacks.step=11"))

    resumed, reference = interrupted_and_reference_losses(tmp_path, monkeypatch, 16, 8, crash)
    assert max(resumed) == max(reference) == 15
    for step in range(10, 16):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-5), step


def test_early_stop_then_resume_trains_on_the_windows_an_uninterrupted_run_would(tmp_path, monkeypatch):
    """A run stopped early and cleanly (as a time budget stops it) and then resumed: Lightning starts a new
    epoch after the restored step, and that epoch must continue with the next unseen windows, not replay
    the resumed epoch's (which an offset fixed when the loader was built did)."""
    from backbone.pretrain_cli import cli_main

    def stop(common):
        cli_main(nano_args(*common, "--trainer.callbacks+=tests.helpers.StopAtStep", "--trainer.callbacks.step=5"))

    resumed, reference = interrupted_and_reference_losses(tmp_path, monkeypatch, 8, 4, stop)
    for step in range(5, 8):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-5), step


def test_epoch_mode_trains_every_epoch(tmp_path):
    """max_steps -1, max_epochs 2: both epochs see the whole corpus (the second is not empty)."""
    from backbone.pretrain_cli import cli_main

    cli = cli_main(nano_args("--trainer.max_steps", "-1", "--trainer.max_epochs", "2", "--trainer.precision", "32-true",
                             "--trainer.val_check_interval", "1.0", "--trainer.check_val_every_n_epoch", "1"))
    per_epoch = len(cli.datamodule.train_tokens) // cli.datamodule.block_size // cli.datamodule.batch_size
    assert per_epoch > 1 and cli.trainer.global_step == 2 * per_epoch


@pytest.mark.slow
def test_fit_lowers_loss_and_exports_a_loadable_backbone(tmp_path):
    run_cli(nano_args("--trainer.max_steps", "30", "--trainer.log_every_n_steps", "1"), tmp_path)
    losses = train_losses(tmp_path / RUN)
    assert losses[max(losses)] < losses[min(losses)] - 0.5  # it learns something
    model, tokenizer = load_backbone(tmp_path / BACKBONE)
    from backbone.generate import generate_text

    assert isinstance(generate_text(model, tokenizer, "def ", max_new_tokens=5)[0], str)
    saved = list((tmp_path / RUN).rglob("config.yaml"))
    assert saved, "LightningCLI saves the resolved config with the run"


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    common = ["--trainer.max_steps", "16", "--trainer.log_every_n_steps", "1", "--trainer.val_check_interval", "8"]
    run_cli(nano_args(*common), tmp_path / "a")
    reference = train_losses(tmp_path / "a" / RUN)
    killer = [*common, "--trainer.callbacks+=tests.helpers.KillAtStep", "--trainer.callbacks.step=11"]
    crashed = run_cli(nano_args(*killer), tmp_path / "b", check=False)
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # really killed by SIGKILL
    assert (tmp_path / "b" / RUN / "checkpoints" / "last.ckpt").exists()
    run_cli(nano_args(*common, "--ckpt_path", "last"), tmp_path / "b")
    resumed = train_losses(tmp_path / "b" / RUN)
    assert max(resumed) == max(reference) == 15
    for step in range(10, 16):  # steps after the step-10 checkpoint were recomputed after the crash
        assert resumed[step] == pytest.approx(reference[step], abs=1e-5), step


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    # with a time budget too: its stop and refit decisions are rank 0's, broadcast (the ranks must not part ways)
    proc = run_cli(nano_args("--trainer.strategy", "ddp", "--trainer.devices", "2",
                             "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
                             "--trainer.callbacks+=backbone.budget.TimeBudget", "--trainer.callbacks.seconds=600",
                             "--trainer.callbacks.probe_steps=1"), tmp_path)
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout or "world_size=2" in proc.stderr + proc.stdout
    assert (tmp_path / BACKBONE / "model.safetensors").is_file()


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, warmup_steps=10, total_steps=110, min_lr_ratio=0.1) for s in range(130)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert values[110] == pytest.approx(0.1) and values[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_param_groups_decay_only_linear_weights():
    from backbone.config import GPTConfig
    from backbone.model import GPT

    model = GPT(GPTConfig.from_preset("nano"))
    decay, no_decay = param_groups([model], 0.1)
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    linear_weights.discard(id(model.transformer.wte.weight))  # the tied lm_head is the embedding
    assert {id(p) for p in decay["params"]} == linear_weights
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_continued_pretraining_starts_from_a_backbones_weights(tmp_path, monkeypatch):
    """--model.init_from DIR starts a new run from the saved weights (with their tokenizer): the new run starts
    exactly at the saved model, counts its own steps and exports to its own folder; a shape that differs is
    refused."""
    import json

    from backbone.artifact import ArtifactError
    from backbone.pretrain_cli import cli_main

    monkeypatch.chdir(tmp_path)
    cli_main(nano_args("--trainer.max_steps", "4"))
    first, tokenizer = load_backbone(BACKBONE)
    cli_main(nano_args("--model.init_from", str(BACKBONE), "--data.tokenizer", str(BACKBONE), "--model.learning_rate",
                       "0", "--model.export_dir", "artifacts/backbones/nano-same", "--trainer.max_steps", "1"))
    same, _ = load_backbone("artifacts/backbones/nano-same")  # a step at learning rate 0 moves nothing
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(same.state_dict()[name], tensor)
    cli_main(nano_args("--model.init_from", str(BACKBONE), "--data.tokenizer", str(BACKBONE),
                       "--model.export_dir", "artifacts/backbones/nano-more", "--trainer.max_steps", "3"))
    assert json.loads(Path("artifacts/backbones/nano-more/metrics.json").read_text())["steps"] == 3
    assert load_backbone("artifacts/backbones/nano-more")[1].vocab_size == tokenizer.vocab_size
    with pytest.raises(ArtifactError, match="shape differs"):
        cli_main(nano_args("--model.init_from", str(BACKBONE), "--data.tokenizer", str(BACKBONE),
                           "--model.overrides", "{n_layer: 3}", "--trainer.max_steps", "1"))


def test_a_resumed_run_takes_the_arguments_typed_not_the_checkpoints(tmp_path, monkeypatch):
    """--ckpt_path restores the weights, optimizer and step; the model's arguments are the ones given (Lightning
    2.6 alone would read the checkpoint's over them, and export over the first run's folder)."""
    import json

    from backbone.pretrain_cli import cli_main

    monkeypatch.chdir(tmp_path)
    cli_main(nano_args("--trainer.max_steps", "3", "--model.export_dir", "out/first"))
    first = json.loads(Path("out/first/metrics.json").read_text())
    cli_main(nano_args("--trainer.max_steps", "5", "--model.export_dir", "out/second",
                       "--ckpt_path", str(RUN / "checkpoints" / "last.ckpt")))
    assert json.loads(Path("out/second/metrics.json").read_text())["steps"] == 5  # resumed at step 3, went on
    assert json.loads(Path("out/first/metrics.json").read_text()) == first  # the first run's export untouched
