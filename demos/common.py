"""What every tab shares: the artifact store (lazy, cached, thread-safe loading), input checks, limits.

A tab never crashes on a missing or broken artifact: it raises a `gr.Error` whose message names the
command that creates the artifact. Bad input (empty, huge, binary) gets a message saying what is wrong.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr

from backbone.artifact import PRETRAIN_COMMAND
from tasks.registry import TASKS

MAX_CHARS = 5_000  # longest text a task tab accepts
MAX_CODE_CHARS = 20_000  # prompt, completion and tests of the code tab
MAX_NEW_TOKENS = 256  # generation length is clamped to this (and to the backbone's context)
MAX_ATTENTION_TOKENS = 32  # the attention view is for short inputs



OUTPUT_DIR = Path(tempfile.gettempdir()) / "gptsuite-demo"


def output_path(prefix: str, suffix: str, keep_s: float = 600.0) -> Path:
    """A fresh file path for one request's output (an image, an export), under a folder where files older
    than keep_s are removed on the way: a demo that runs for days does not fill the disk."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    now = time.time()
    for old in OUTPUT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > keep_s:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass  # another request removed it first
    return OUTPUT_DIR / f"{prefix}-{uuid.uuid4().hex}{suffix}"


def fail(message: str):
    """Stop a handler and show `message` to the person (a toast in the browser, an error to API clients)."""
    raise gr.Error(message, print_exception=False)


def check_text(text, what: str = "text", max_chars: int = MAX_CHARS) -> str:
    """The text itself, or a clear message when it is empty, too long or looks like binary data."""
    if text is None or not str(text).strip():
        fail(f"The {what} is empty: type or paste some text.")
    text = str(text)
    if len(text) > max_chars:
        fail(f"The {what} is too long: {len(text):,} characters; this demo accepts at most {max_chars:,}. "
             "Shorten it.")
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\n\r") or ch in "\x7f\ufffd")
    if "\x00" in text or bad > max(1, len(text) // 100):
        fail(f"The {what} looks like binary data ({bad} control or undecodable characters): paste plain text.")
    return text


class ArtifactStore:
    """Finds artifacts under `root` (backbones/<name>/, tasks/<task>/) and loads each once, on first use."""

    def __init__(self, root: str | Path = "artifacts", precision: str = "auto", quantize: str = "auto"):
        from backbone.precision import resolve_precision
        from backbone.quantize import check_mode

        self.root = Path(root)
        self.precision = resolve_precision(precision)  # every model this store loads runs in it
        self.quantize = check_mode(quantize)  # for the backbones it loads (a task decodes as its own says)
        self._cache: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # --- backbones -------------------------------------------------------------------------------------
    def backbones(self) -> list[str]:
        folder = self.root / "backbones"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())

    def backbone(self, name: str | None):
        """(model, tokenizer) of artifacts/backbones/<name>."""
        if not name:
            fail(f"No backbone found under {self.root / 'backbones'}: create one with `{PRETRAIN_COMMAND}`.")
        directory = self.root / "backbones" / Path(name).name
        if not (directory / "config.json").is_file():
            fail(f"Backbone {directory} does not exist: create it with `{PRETRAIN_COMMAND}`.")

        def load():
            from backbone.artifact import load_backbone
            from backbone.precision import set_inference_precision
            model, tokenizer = load_backbone(directory, quantize=self.quantize)
            return set_inference_precision(model.eval(), self.precision), tokenizer

        return self.cached(("backbone", str(directory)), load, f"backbone {directory}", PRETRAIN_COMMAND)

    # --- tasks -----------------------------------------------------------------------------------------
    def task_dir(self, task: str) -> Path:
        return self.root / "tasks" / task

    def has_task(self, task: str) -> bool:
        return (self.task_dir(task) / "task.json").is_file()

    def missing_message(self, task: str) -> str:
        return (f"No {TASKS[task].title.lower()} model yet: {self.task_dir(task)} does not exist. "
                f"Create it with `{TASKS[task].fit_command}`.")

    def task(self, task: str):
        """The fine-tuned task module of artifacts/tasks/<task>, ready for .predict."""
        if not self.has_task(task):
            fail(self.missing_message(task))
        directory = self.task_dir(task)

        def load():
            from backbone.precision import set_inference_precision
            from tasks.artifact import load_task

            task = load_task(directory, backbone=self._task_backbone(directory))
            set_inference_precision(task.backbone, self.precision)
            return task

        return self.cached(("task", str(directory)), load, f"the {task} artifact {directory}", TASKS[task].fit_command)

    def _task_backbone(self, directory: Path) -> str | None:
        """The recorded backbone, or the same-named one under this store's root when the recorded path
        (often relative to the repository) does not resolve from here."""
        recorded = json.loads((directory / "task.json").read_text()).get("hparams", {}).get("backbone")
        if not recorded or (Path(recorded) / "config.json").is_file():
            return None
        local = self.root / "backbones" / Path(recorded).name
        return str(local) if (local / "config.json").is_file() else None

    def cached(self, key: tuple, load, what: str, command: str):
        """load() once per key (under the store's lock); a failure becomes a message naming `command`."""
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = load()
                except gr.Error:
                    raise
                except Exception as err:  # noqa: BLE001 - any load failure becomes a message, not a crash
                    fail(f"Could not load {what}: {err}. Recreate it with `{command}`.")
            return self._cache[key]

    def summary(self) -> str:
        """One Markdown line per artifact kind: what this demo found."""
        names = self.backbones()
        found = [t for t in TASKS if self.has_task(t)]
        lines = [f"**Backbones** in `{self.root / 'backbones'}`: "
                 f"{', '.join(names) if names else f'none (`{PRETRAIN_COMMAND}`)'}",
                 f"**Tasks** in `{self.root / 'tasks'}`: {', '.join(found) if found else 'none'}",
                 f"**Precision**: {self.precision} (`gptsuite info` says why)"]
        return "  \n".join(lines)
