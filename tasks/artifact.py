"""A fine-tuned task on disk: task.json (what to build) + trainable.safetensors (what was trained).

A task folder may come from anywhere (downloaded, shared, or tampered with), and the demo loads every one
it finds, so a folder is data, never code:
* task.json may name only a registered task's module class, an adapter class of tasks.adapters, and in an
  argument that holds an object (QA's span head) a class that argument's declared type names; it is checked
  before anything is imported;
* their arguments are checked against the constructors' typed signatures (jsonargparse, as the command
  line checks them): unknown names and wrong types are refused;
* weights must be finite, of the shapes the task expects, and exactly the trained ones;
every refusal names the file at fault.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path

import torch
from jsonargparse import ArgumentParser
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from backbone.artifact import ArtifactError
from backbone.renamed_keys import renamed_keys_in
from tasks import adapters
from tasks.catalog import TASKS
from tasks.renamed_keys import RENAMED
from tasks.spec import load_object

TASK_FILE, WEIGHTS_FILE = "task.json", "trainable.safetensors"
METRICS_FILE, PREDICTIONS_FILE = "test_metrics.json", "test_predictions.jsonl"


def object_spec(obj) -> dict:
    """class_path + init_args of an object whose constructor arguments are stored as same-named attributes."""
    params = inspect.signature(type(obj).__init__).parameters.values()
    names = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "init_args": {n: getattr(obj, n) for n in names}}


# settings of the run, not of the trained task: a loaded task decodes with gptsuite's engine, uncompiled, unless
# its user asks (a task saved by `bench --engine llama.cpp` must load where llama-cpp-python is not installed)
NOT_SAVED = ("export_dir", "engine", "compile_steps")


def save_task(task, directory: str | Path) -> Path:
    """Write what was trained (adapter + head, named as in the module) and how to rebuild the rest."""
    from lightning.pytorch.utilities import rank_zero_info  # why: seconds to import; loading a task never needs it

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainable = {id(p) for p in task.trainable_parameters()}
    state = {name: p.detach().cpu().contiguous() for name, p in task.named_parameters() if id(p) in trainable}
    save_file(state, str(directory / (WEIGHTS_FILE + ".tmp")))
    (directory / (WEIGHTS_FILE + ".tmp")).replace(directory / WEIGHTS_FILE)
    hparams = {k: v for k, v in dict(task.hparams).items() if k not in NOT_SAVED and not k.startswith("_")}
    spec = {"name": task.task_name, "task": f"{type(task).__module__}.{type(task).__qualname__}",
            "hparams": hparams, "adapter": object_spec(task.adapter)}
    (directory / TASK_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    (directory / METRICS_FILE).unlink(missing_ok=True)  # an earlier model's score; a test of this one adds its own
    rank_zero_info(f"task saved to {directory}")
    return directory


def saved_task_name(path: Path) -> str | None:
    """The task name a task.json records ("name", written by `gptsuite <task> fit`; absent in older exports or
    in an unreadable file)."""
    try:
        name = json.loads(Path(path).read_text(encoding="utf-8")).get("name")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def adapter_classes() -> list[str]:
    """Dotted paths of the adapters tasks.adapters defines (the ones a task file may name)."""
    return sorted(f"tasks.adapters.{name}" for name, obj in vars(adapters).items() if isinstance(obj, type)
                  and issubclass(obj, adapters.Adapter) and obj is not adapters.Adapter
                  and obj.__module__ == adapters.__name__)


def read_task_file(path: Path) -> tuple[str, dict, str, dict]:
    """(task class path, hparams, adapter class path, adapter arguments) of a task.json, checked against the
    allow-list before anything is imported."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        task, hparams = spec["task"], spec["hparams"]
        adapter, adapter_args = spec["adapter"]["class_path"], spec["adapter"]["init_args"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{path} is not a task file ({type(err).__name__}: {err}): recreate the task with "
                            "`gptsuite <task> fit ... --model.export_dir DIR`") from None
    allowed = sorted({path for spec in TASKS.values() for path in spec.module_paths})
    if not isinstance(task, str) or task not in allowed:
        raise ArtifactError(f"{path} names the class {task!r}, which is not a registered task: a task file may "
                            f"name only {', '.join(allowed)}")
    adapter_paths = adapter_classes()
    if not isinstance(adapter, str) or adapter not in adapter_paths:
        raise ArtifactError(f"{path} names the adapter {adapter!r}: a task file may name only "
                            f"{', '.join(adapter_paths)}")
    if not isinstance(hparams, dict) or not isinstance(adapter_args, dict):
        raise ArtifactError(f"{path}: hparams and the adapter's init_args must be JSON objects")
    renamed = [f"`{old}` was renamed `{RENAMED[old]}`" for old in renamed_keys_in({"model": hparams}, RENAMED)]
    if renamed:
        raise ArtifactError(f"{path} was written before a rename ({'; '.join(renamed)}): edit the key in "
                            "task.json, or fit the task again")
    return task, hparams, adapter, adapter_args


def checked_arguments(cls, values: dict, path: Path, what: str, skip: set[str] = frozenset()) -> dict:
    """`values` checked against cls's constructor (through **kwargs to its bases) as LightningCLI checks a
    YAML: every name known, every value of its declared type."""
    for name, value in values.items():  # jsonargparse imports a class_path to check it: refuse unknown ones first
        if isinstance(value, dict) and "class_path" in value and value["class_path"] not in declared_classes(cls, name):
            raise ArtifactError(f"{path}: {name} names the class {value['class_path']!r}, which the {what} "
                                f"arguments of {cls.__name__} may not name")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "args", skip=set(skip))
    try:
        parsed = parser.parse_object({"args": values}, defaults=True)
    except Exception as err:  # noqa: BLE001 - jsonargparse's error says which argument and why
        message = str(err).replace("\n", " ")
        raise ArtifactError(f"{path}: the {what} arguments do not fit {cls.__name__}: {message}") from None
    group = parsed.get("args")  # None for a class without arguments
    args = group.as_dict() if group is not None else {}
    return {k: v for k, v in args.items() if k in values}


def declared_classes(cls, name: str) -> set[str]:
    """Dotted paths of the classes the declared type of cls's constructor argument `name` names (QA's span head:
    tasks.heads.SpanHead | tasks.qa.attention_flow.AttentionFlowHead), through **kwargs to its bases."""
    for owner in cls.__mro__:
        init = vars(owner).get("__init__")
        if init is not None and name in inspect.signature(init).parameters:
            hint = typing.get_type_hints(init).get(name)
            return {f"{t.__module__}.{t.__qualname__}" for t in typing.get_args(hint) or (hint,) if isinstance(t, type)}
    return set()


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, every floating one finite; errors name the file."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise ArtifactError(f"{path} is unreadable (truncated, or not safetensors): {err}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{path}: {name} holds NaN or infinite values; the weights are corrupt")
    return state


def load_task(directory: str | Path, backbone: str | None = None):
    """Rebuild a fine-tuned task for prediction; `backbone` overrides the recorded backbone folder."""
    directory = Path(directory)
    for name in (TASK_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing: not a saved task "
                                    "(run `fit` with --model.export_dir)")
    task_path, hparams, adapter_path, adapter_args = read_task_file(directory / TASK_FILE)
    adapter_class, task_class = load_object(adapter_path), load_object(task_path)
    adapter = adapter_class(**checked_arguments(adapter_class, adapter_args, directory / TASK_FILE, "adapter"))
    hparams = {**hparams, **({"backbone": backbone} if backbone else {})}
    task = task_class(adapter=adapter, **checked_arguments(task_class, hparams, directory / TASK_FILE, "task",
                                                           skip={"adapter"}))
    task.configure_model()
    state = load_weights(directory / WEIGHTS_FILE)
    own = dict(task.named_parameters())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ArtifactError(f"{directory / WEIGHTS_FILE} has tensors this task does not: {unknown[:5]}")
    trainable = {id(p) for p in task.trainable_parameters()}
    missing = sorted(name for name, p in own.items() if id(p) in trainable and name not in state)
    if missing:
        raise ArtifactError(f"{directory / WEIGHTS_FILE} lacks trained tensors of this task: {missing[:5]}")
    task.trained = True
    with torch.no_grad():
        for name, tensor in state.items():
            if own[name].shape != tensor.shape:
                raise ArtifactError(f"{directory / WEIGHTS_FILE}: {name} is {tuple(tensor.shape)}, "
                                    f"the task expects {tuple(own[name].shape)}")
            own[name].copy_(tensor)
    return task.eval()
