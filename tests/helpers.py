"""Callbacks that tests inject through the CLI (importable as tests.helpers)."""

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]


class KillAtStep(Callback):
    """SIGKILL the training process when global_step reaches `step`: a crash with no chance to clean up."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class CrashAtStep(Callback):
    """Raise when global_step reaches `step`: an in-process crash (the checkpoints on disk are all that is left)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError(f"crash at step {self.step}")


class StopAtStep(Callback):
    """End fit cleanly once global_step reaches `step`: an interruption with the schedule planned for more."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


SENTENCES = [
    ("a wonderful, moving film with great acting", "positive"),
    ("the best movie i have seen this year", "positive"),
    ("funny, warm and beautifully made", "positive"),
    ("a delight from start to finish", "positive"),
    ("dull, slow and far too long", "negative"),
    ("the worst script i have ever endured", "negative"),
    ("boring characters and a silly plot", "negative"),
    ("a mess that wastes its cast", "negative"),
]


def make_backbone(directory, positions: str = "learned", vocab_size: int = 300, **overrides):
    """A random nano backbone + a byte-level BPE trained on a few sentences: a real artifact folder."""
    import torch

    from backbone.artifact import save_backbone
    from backbone.config import GPTConfig
    from backbone.model import GPT
    from backbone.tokenizer import Tokenizer

    torch.manual_seed(0)
    texts = [s for s, _ in SENTENCES] * 4 + ["Review: Sentiment: Label: Topic: positive negative"] * 4
    tokenizer = Tokenizer.train(texts, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    flavour = {"rope": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)}.get(
        positions, {"positions": positions})
    config = GPTConfig.from_preset("nano", vocab_size=tokenizer.vocab_size, **{**flavour, **overrides})
    save_backbone(directory, GPT(config), tokenizer)
    return directory


def write_sentiment_files(directory):
    """train/validation/test CSVs of the sentences above."""
    import csv

    paths = {}
    for split in ("train", "validation", "test"):
        path = directory / f"{split}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(SENTENCES)
        paths[split] = str(path)
    return paths


class SignalAtStep(Callback):
    """Send this process `signum` when global_step reaches `step`: a user's Ctrl-C or a scheduler's SIGTERM."""

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), self.signum)


def newest_file(folder, name: str) -> Path:
    """The file called `name` that a command wrote last under `folder` (a fit given a test file writes the
    test files first, then a `test` command its own)."""
    written = list(Path(folder).rglob(name))
    assert written, f"no {name} under {folder}"
    return max(written, key=lambda p: p.stat().st_mtime_ns)


def newest_metrics(folder) -> dict:
    """The test metrics a command wrote last under `folder`."""
    import json

    return json.loads(newest_file(folder, "test_metrics.json").read_text())
