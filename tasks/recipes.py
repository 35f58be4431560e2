"""Benchmark recipes are files: a preset is `configs/bench/<preset>.yaml`, a method is a task config overlay.

A preset names its backbone (an existing folder, a pretraining config that makes it, or an import), its
pretraining budget, and for each task the methods it runs and each stage's training time budget:

    title: the main job                             # one line, for --help
    backbone: artifacts/backbones/tiny
    pretrain_config: configs/pretrain/tiny.yaml     # or  import: smollm2
    minutes: 30                                     # the preset's nominal wall time (--time-budget scales)
    budget_s: 660                                   # pretraining's training budget
    tasks:
      ner:
        budget_s: 80
        methods:
          fine-tuned: {config: configs/tasks/ner/quick.yaml}
          frozen+mix, linear: {config: configs/tasks/ner/frozen-mix-linear.yaml, ablation: true}

A method's file is what the task's own command runs on top of the task's YAML, so every row of the table
can be run by hand:

    gptsuite ner fit --config configs/tasks/ner.yaml --config configs/tasks/ner/quick.yaml

`ablation: true` keeps a method out of the headline (it shows what a choice is worth); `benchmark` names what
the method scores when it is not the task's benchmark (codegen's MBPP, a translation direction).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks.catalog import TASKS

PROJECT_DIR = Path(__file__).resolve().parents[1]
BENCH_DIR = Path("configs/bench")  # relative to the project: recipe paths are written as a user types them

PRESET_KEYS = {"title", "backbone", "pretrain_config", "import", "minutes", "budget_s", "tasks"}
TASK_KEYS = {"budget_s", "methods"}
METHOD_KEYS = {"config", "ablation", "benchmark"}


@dataclass(frozen=True)
class Method:
    """One row of the table: the task's YAML plus `config` on top."""

    name: str
    config: str
    ablation: bool = False
    benchmark: str | None = None


@dataclass(frozen=True)
class TaskPlan:
    budget_s: float | None
    methods: dict[str, Method]


@dataclass(frozen=True)
class Preset:
    name: str
    path: str
    backbone: str
    title: str = ""
    pretrain_config: str | None = None
    import_: str | None = None
    minutes: float | None = None
    budget_s: float | None = None  # pretraining's
    tasks: dict[str, TaskPlan] = field(default_factory=dict)


def project_path(path: str | Path) -> Path:
    """A file the project ships, found from any working directory (a local file of that name wins)."""
    return Path(path) if Path(path).is_file() else PROJECT_DIR / path


def preset_names() -> list[str]:
    return sorted(p.stem for p in (PROJECT_DIR / BENCH_DIR).glob("*.yaml"))


def preset_help() -> str:
    """--preset's help: every preset file's name and title (configs/bench/<name>.yaml), not a typed list."""

    def title(name: str) -> str:
        try:
            return load_preset(name).title
        except (ValueError, OSError) as err:  # a broken preset file must not break every other command
            return f"unreadable ({' '.join(str(err).split())[:80]})"

    return ("a preset in configs/bench/ (" + "; ".join(f"{n}: {title(n)}" for n in preset_names())
            + "), or a preset file of your own (.yaml)")


def _mapping(value, what: str) -> dict:
    """A YAML mapping (an empty entry reads as an empty one), or an error that names where."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _refuse_unknown(what: str, got: dict, allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def preset_file(name: str) -> Path:
    """A preset's file: configs/bench/<name>.yaml, or a YAML file of the user's own (a path ending in .yaml)."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise FileNotFoundError(f"the preset file {name} does not exist")
        return Path(name)
    path = BENCH_DIR / f"{name}.yaml"
    if not project_path(path).is_file():
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(preset_names())} (configs/bench/), "
                         "or give a preset file (.yaml)")
    return path


def load_preset(name: str) -> Preset:
    """The preset `name` (configs/bench/<name>.yaml, or a .yaml path), checked: unknown keys, missing method
    files and unregistered tasks are errors that name the file."""
    path = preset_file(name)
    name = path.stem
    try:
        raw = yaml.safe_load(project_path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a preset is a mapping (backbone, tasks, ...)")
    _refuse_unknown(str(path), raw, PRESET_KEYS)
    if "backbone" not in raw:
        raise ValueError(f"{path}: no backbone")
    tasks = {}
    for task, entry in _mapping(raw.get("tasks"), f"{path}: tasks").items():
        where = f"{path}: tasks.{task}"
        if task not in TASKS:
            raise ValueError(f"{where}: {task!r} is not a registered task ({', '.join(TASKS)})")
        entry = _mapping(entry, where)
        _refuse_unknown(where, entry, TASK_KEYS)
        methods = {}
        for method, spec in _mapping(entry.get("methods"), f"{where}.methods").items():
            spec = _mapping(spec, f"{where}.methods.{method} (a mapping: {{config: FILE}})")
            _refuse_unknown(f"{where}.methods.{method}", spec, METHOD_KEYS)
            if not project_path(spec.get("config", "")).is_file():
                raise ValueError(f"{where}.methods.{method}: config {spec.get('config')!r} does not exist")
            methods[method] = Method(method, spec["config"], bool(spec.get("ablation", False)), spec.get("benchmark"))
        if not methods:
            raise ValueError(f"{where}: no methods")
        tasks[task] = TaskPlan(entry.get("budget_s"), methods)
    return Preset(name, str(path), raw["backbone"], raw.get("title", ""), raw.get("pretrain_config"),
                  raw.get("import"), raw.get("minutes"), raw.get("budget_s"), tasks)


def recipe_files(task_config: str, method: Method) -> list[str]:
    """The files a method's row comes from, in the order the command reads them."""
    return [task_config, method.config]


def recipe_hash(files: list[str]) -> str:
    """sha256 over the files' bytes, in order: a row's recipe is current when its files still hash to this."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(project_path(file).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
