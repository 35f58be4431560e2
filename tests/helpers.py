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


# the prompt path of the sequence tasks, as a method file of their own: the model scores label words after solved
# demonstrations, nothing trained
PROMPT_FLAGS = {"model.head": "prompt", "model.few_shot": 4, "model.adapter": "tasks.adapters.Frozen",
                "trainer.max_epochs": 0}


def nested(flags: dict) -> dict:
    """Dotted LightningCLI flags -> the nested mapping a YAML config holds ("model.adapter" naming a class becomes
    its class_path, the adapter's own flags its init_args)."""
    tree: dict = {}
    for key in sorted(flags, key=lambda k: k.count(".")):
        node, parts = tree, key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            node = child.setdefault("init_args", {}) if "class_path" in child else child
        value = flags[key]
        node[parts[-1]] = {"class_path": value} if isinstance(value, str) and value.startswith("tasks.adapters.") \
            else value
    return tree


def write_preset(folder, name: str, preset: dict, entries: dict[str, dict]) -> str:
    """A preset file for a test, and a method file per method: `entries` maps a task to its budget_s and its
    methods ({name: flags, with optional "benchmark" / "ablation"}); flags given without `methods` make one
    method, "fine-tuned" (with the prompt path beside it for tasks that have one). -> the preset file's path."""
    import yaml

    folder = Path(folder)
    tasks = {}
    for task, entry in entries.items():
        entry = dict(entry)
        budget = entry.pop("budget_s", None)
        methods = entry.pop("methods", None)
        if methods is None:
            methods = {"fine-tuned": entry}
            if task in ("classification", "sentiment", "toxicity", "relations"):
                methods["prompt"] = {**entry, **PROMPT_FLAGS}
        else:
            methods = {m: {**entry, **flags} for m, flags in methods.items()}
        listed = {}
        for method, flags in methods.items():
            flags = dict(flags)
            extra = {k: flags.pop(k) for k in ("benchmark", "ablation") if k in flags}
            path = folder / "methods" / task / f"{''.join(c if c.isalnum() else '-' for c in method)}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(nested(flags)) if flags else "{}\n")
            listed[method] = {"config": str(path), **extra}
        tasks[task] = {**({"budget_s": budget} if budget is not None else {}), "methods": listed}
    file = folder / f"{name}.yaml"
    file.write_text(yaml.safe_dump({"title": f"{name}, made in a test", **preset, "tasks": tasks}))
    return str(file)
