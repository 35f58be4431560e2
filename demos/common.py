"""What every tab shares: the artifact store (lazy, cached, thread-safe loading), input checks, limits.

Task models are found by folder, not by name: any folder under <artifacts>/tasks (or one level below it) that
holds a task.json, plus the folders given with `gptsuite demo --task DIR`, each listed under the task its
task.json names; a task has as many models as folders (the benchmark's export, a user's own fine-tune).

A tab never crashes on a missing or broken artifact: it raises a `gr.Error` whose message names the
command that creates the artifact. Bad input (empty, huge, binary) gets a message saying what is wrong
(demos.limits holds every limit and check).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gradio as gr
import torch

from backbone.artifact import PRETRAIN_COMMAND, ArtifactError, load_backbone
from backbone.config import MODEL_PRESETS, GPTConfig
from backbone.decoding_model import CompiledSteps
from backbone.llama_cpp_engine import GPTSUITE, check_engine, llama_cpp_model
from backbone.model import GPT
from backbone.precision import resolve_precision, set_inference_precision
from backbone.quantize import check_mode
from demos.exposure import private_dir
from demos.limits import fail
from tasks.artifact import TASK_FILE, load_task, read_task_file, saved_task_name
from tasks.catalog import TASKS

OUTPUTS = "outputs"  # the subfolder of the private folder (demos.exposure.private_dir) for request outputs


def output_path(prefix: str, suffix: str, keep_s: float = 600.0) -> Path:
    """A fresh file path for one request's output (an image, an export), in a folder only this user can
    read (a fixed /tmp name could be made first, or read, by any local user), where files older than keep_s
    are removed on the way: a demo that runs for days does not fill the disk."""
    folder = private_dir() / OUTPUTS
    folder.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > keep_s:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass  # another request removed it first
    return folder / f"{prefix}-{uuid.uuid4().hex}{suffix}"


@dataclass(frozen=True)
class TaskModel:
    """One exported task folder, as listed under one task."""

    task: str | None  # the registered task it is listed under; None: a broken folder whose name says no task
    path: Path
    name: str  # its path under <artifacts>/tasks, or the folder as given with --task
    backbone: str | None = None  # hparams.backbone as task.json records it
    problem: str | None = None  # why it cannot load (task.json unreadable or refused); None: it looks usable
    note: str | None = None  # a doubt about the task it is listed under

    @property
    def label(self) -> str:
        return self.name + (" (broken)" if self.problem else "")


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # missing or unreadable: nothing to list
        return []


def _task_folders(tasks: Path) -> list[tuple[Path, str]]:
    """(folder, name) of every folder at most two levels under `tasks` that holds a task.json: tasks/my-ner,
    tasks/smollm2/ner."""
    folders = [sub for child in _subfolders(tasks) for sub in (child, *_subfolders(child))]
    return [(f, f.relative_to(tasks).as_posix()) for f in folders if (f / "task.json").is_file()]


def _named_tasks(name: str, tasks) -> list[str]:
    """The tasks whose name is a word of the folder's own name, else of its parent's (ner-mine, ner_smollm2,
    smollm2/ner): how a user tells apart folders of one module class that several tasks share."""
    for part in reversed(Path(name).parts[-2:]):
        named = [t for t in tasks if re.search(rf"(?<![A-Za-z0-9]){re.escape(t)}(?![A-Za-z0-9])", part)]
        if named:
            return named
    return []


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@lru_cache(maxsize=256)
def _described(folder: Path, name: str, mtime_ns: int | None) -> list[TaskModel]:
    """describe_task_folder once per version of the folder's task.json: every request lists the models (to
    find the one it names), and reading and checking each task.json every time would put file reads on the
    path of every prediction; a new export changes the file's time, so it is read again."""
    return describe_task_folder(folder, name)


def describe_task_folder(folder: Path, name: str) -> list[TaskModel]:
    """The folder as listed: under the registered task whose module class its task.json names. Several tasks
    share SequenceClassifier: then the task task.json records, else the one the folder's name says, else
    each of them, with a note. A broken task.json is listed under the task its folder's name says, so that
    tab says what is wrong."""
    try:
        if not (folder / TASK_FILE).is_file():  # a --task DIR that is no export: say so plainly
            raise ArtifactError(f"{folder} holds no {TASK_FILE} (a fit with --model.export_dir writes one there)")
        module, hparams, _, _ = read_task_file(folder / TASK_FILE)
    except ArtifactError as err:
        recorded = saved_task_name(folder / TASK_FILE)
        guess = [recorded] if recorded in TASKS else _named_tasks(name, TASKS) or [None]
        return [TaskModel(guess[0], folder, name, problem=str(err))]
    candidates = [task for task, spec in TASKS.items() if module in spec.module_paths]
    recorded = saved_task_name(folder / TASK_FILE)
    tasks = [recorded] if recorded in candidates else _named_tasks(name, candidates) or candidates
    note = None if len(tasks) == 1 else (
        f"{module.rpartition('.')[2]} serves {', '.join(tasks)}, and the folder's name does not say which of "
        "them it was trained for: it is listed under each (name the folder after its task to list it once)")
    backbone = hparams.get("backbone") if isinstance(hparams.get("backbone"), str) else None
    return [TaskModel(task, folder, name, backbone, note=note) for task in tasks]


@lru_cache(maxsize=64)
def _backbone_shape(config_path: str, mtime: float) -> str:
    config = GPTConfig.load(config_path)
    shape = ("n_layer", "n_head", "n_kv_head", "n_embd", "intermediate_size", "norm", "positions", "mlp")
    presets = [name for name in MODEL_PRESETS
               if all(getattr(GPTConfig.from_preset(name), k) == getattr(config, k) for k in shape)]
    with torch.device("meta"):  # counts the parameters without allocating them
        params = GPT(config).num_params()
    size = f"{params / 1e6:.1f}M parameters" if params >= 1e5 else f"{params:,} parameters"
    return (f"{presets[0]} preset, " if presets else f"{config.n_layer} layers x {config.n_embd} wide, ") + size


def backbone_shape(folder: Path) -> str | None:
    """"tiny preset, 5.3M parameters" (the preset whose shape the config.json has; any vocabulary), or None
    when the config cannot be read."""
    path = folder / "config.json"
    try:
        return _backbone_shape(str(path), path.stat().st_mtime)
    except Exception:  # noqa: BLE001 - an unreadable config only means less to show
        return None


class ArtifactStore:
    """Finds artifacts under `root` (backbones/<name>/, task folders under tasks/) and in the extra task
    folders, and loads each once, on first use."""

    def __init__(self, root: str | Path = "artifacts", precision: str = "auto", quantize: str = "auto",
                 task_dirs=(), engine: str = GPTSUITE, compile_steps: bool = False):
        self.root = Path(root)
        self.extra_task_dirs = tuple(Path(d) for d in task_dirs)  # `gptsuite demo --task DIR`, may be anywhere
        self.precision = resolve_precision(precision)  # every model this store loads runs in it
        self.quantize = check_mode(quantize)  # for the backbones it loads (a task decodes as its own says)
        self.engine = check_engine(engine)  # what the tabs that generate decode with (decoder)
        if compile_steps and engine != GPTSUITE:
            raise ValueError("--compile compiles gptsuite's own steps; the llama.cpp engine has its own kernels")
        self.compile_steps = compile_steps  # the decoder's steps through torch.compile
        self._cache: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # --- backbones -------------------------------------------------------------------------------------
    def backbones(self) -> list[str]:
        folder = self.root / "backbones"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())

    def backbone_dir(self, name: str | None) -> Path:
        """artifacts/backbones/<name>, or a message saying how to make one."""
        if not name:
            fail(f"No backbone found under {self.root / 'backbones'}: create one with `{PRETRAIN_COMMAND}`.")
        directory = self.root / "backbones" / Path(name).name
        if not (directory / "config.json").is_file():
            fail(f"Backbone {directory} does not exist: create it with `{PRETRAIN_COMMAND}`.")
        return directory

    def backbone(self, name: str | None):
        """(model, tokenizer) of artifacts/backbones/<name>."""
        directory = self.backbone_dir(name)

        def load():
            model, tokenizer = load_backbone(directory, quantize=self.quantize)
            return set_inference_precision(model.eval(), self.precision), tokenizer

        return self.cached(("backbone", str(directory)), load, f"backbone {directory}", PRETRAIN_COMMAND)

    def decoder(self, name: str | None):
        """(the model the tabs that generate decode with, tokenizer): the backbone itself, or with the llama.cpp
        engine the backbone exported as a GGUF (of the type --quantize maps to) and run by llama.cpp. The tabs
        that read inside the model (attention, lens) keep the backbone itself."""
        if self.engine == GPTSUITE and not self.compile_steps:
            return self.backbone(name)
        directory = self.backbone_dir(name)
        if self.engine == GPTSUITE:  # the backbone's steps compiled (at the first request that decodes)
            model, tokenizer = self.backbone(name)  # loaded first: the store's lock is not re-entrant
            return self.cached(("compiled", str(directory)), lambda: (CompiledSteps(model), tokenizer),
                               f"backbone {directory}, compiled", PRETRAIN_COMMAND)

        def load():
            model, tokenizer = load_backbone(directory)
            return llama_cpp_model(model, tokenizer, self.quantize), tokenizer

        return self.cached(("llama.cpp", str(directory)), load, f"backbone {directory} on llama.cpp",
                           "pip install -e '.[llama]'")

    # --- tasks -----------------------------------------------------------------------------------------
    def task_dir(self, task: str) -> Path:
        """Where `gptsuite <task> fit --config configs/tasks/<task>.yaml` exports (one of the folders listed)."""
        return self.root / "tasks" / task

    def task_models(self) -> list[TaskModel]:
        """Every task folder: those under <root>/tasks (up to two levels deep) that hold a task.json, then the
        extra ones (--task DIR), each described once. Read on every call: a fit may export while the demo runs."""
        models, seen = [], set()
        for folder, name in [*_task_folders(self.root / "tasks"), *((d, str(d)) for d in self.extra_task_dirs)]:
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                models += _described(folder, name, _mtime_ns(folder / "task.json"))
        return models

    def models(self, task: str) -> list[TaskModel]:
        """The folders listed under `task`, usable ones first."""
        return sorted((m for m in self.task_models() if m.task == task), key=lambda m: m.problem is not None)

    def default_model(self, task: str) -> TaskModel | None:
        """The folder named <task>, else the first one sure to be of this task, else any usable one, else a
        broken one (whose message then says what to do)."""
        models = self.models(task)
        usable = [m for m in models if m.problem is None]
        for picks in ([m for m in usable if m.name == task], [m for m in usable if m.note is None], usable, models):
            if picks:
                return picks[0]
        return None

    def has_task(self, task: str) -> bool:
        return self.default_model(task) is not None

    def find(self, task: str, folder: str | Path | None) -> TaskModel:
        """The listed model of `task` in `folder` (None: the default); only listed folders load, so an API
        client cannot point the demo at any folder on the machine."""
        if not folder:
            model = self.default_model(task)
            if model is None:
                fail(self.missing_message(task))
            return model
        wanted = Path(folder).resolve()
        for model in self.models(task):
            if model.path.resolve() == wanted:
                return model
        fail(f"{folder} is not a {TASKS[task].title.lower()} model this demo lists (see the list at the top). "
             f"Create one with `{TASKS[task].fit_command}`.")

    def missing_message(self, task: str) -> str:
        return (f"No {TASKS[task].title.lower()} model yet: no folder under {self.root / 'tasks'} (or given with "
                f"--task) holds one. Create it with `{TASKS[task].fit_command}`.")

    def task(self, task: str, folder: str | Path | None = None):
        """The fine-tuned task module of a listed folder (None: the task's default), ready for .predict."""
        model = self.find(task, folder)
        what, command = f"the {task} artifact {model.path}", TASKS[task].fit_command
        if model.problem:
            fail(f"Could not load {what}: {model.problem}. Recreate it with `{command}`.")

        def load():
            backbone = self.backbone_folder(model.backbone)
            module = load_task(model.path, backbone=str(backbone) if backbone else None)
            set_inference_precision(module.backbone, self.precision)
            return module

        return self.cached(("task", str(model.path.resolve())), load, what, command)

    def backbone_folder(self, recorded: str | None) -> Path | None:
        """Where a task's recorded backbone is from here: the recorded path, else the same-named one under
        this store's root (a recorded path is often relative to the repository); None when neither exists."""
        if not recorded:
            return None
        for folder in (Path(recorded), self.root / "backbones" / Path(recorded).name):
            if (folder / "config.json").is_file():
                return folder
        return None

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
        models = self.task_models()
        listed = [f"{task}: " + ", ".join(f"`{m.label}`" for m in models if m.task == task)
                  for task in TASKS if any(m.task == task for m in models)]
        lines = [f"**Backbones** in `{self.root / 'backbones'}`: "
                 f"{', '.join(names) if names else f'none (`{PRETRAIN_COMMAND}`)'}",
                 f"**Task models** in `{self.root / 'tasks'}`"
                 + (" and --task folders" if self.extra_task_dirs else "") + f": {'; '.join(listed) or 'none'}",
                 *(f"⚠️ Skipped `{m.name}`: {m.problem}" for m in models if m.task is None),
                 f"**Precision**: {self.precision} (`gptsuite info` says why)"]
        return "  \n".join(lines)
