"""The task registry: one row per task package, each package defining its TaskSpec as `SPEC`.

Adding a task: write its package (`SPEC` in `__init__.py`, a TaskModule, a TaskData), its YAML in
configs/tasks/, and one row below. The `gptsuite <task>` command (tasks.task_cli), the benchmark, the demo's
tab and the config tests then find it here; `register` adds a task from outside the project (a test's toy task).
"""

from __future__ import annotations

import importlib

from tasks.spec import TaskSpec

PACKAGES = (
    "tasks.classification",
    "tasks.sentiment",
    "tasks.toxicity",
    "tasks.ner",
    "tasks.kg",
    "tasks.qa",
    "tasks.translation",
    "tasks.codegen",
)

TASKS: dict[str, TaskSpec] = {}  # name -> spec, in registration order (the table's and the demo's order)


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"a task named {spec.name!r} is registered already")
    if not spec.name.isidentifier():
        raise ValueError(f"a task name must be an identifier (it is a subcommand and a folder): {spec.name!r}")
    TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    TASKS.pop(name, None)


def get(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[name]


def register_package(package: str) -> TaskSpec:
    """Register the task a package defines (its `SPEC`): what each row of PACKAGES does."""
    try:
        spec = importlib.import_module(package).SPEC
    except (ImportError, AttributeError) as err:
        raise ImportError(f"the task registry's row {package!r} (tasks/catalog.py PACKAGES) does not give a "
                          f"task: its __init__.py must import and define SPEC = TaskSpec(...) ({err})") from err
    return register(spec)


for _package in PACKAGES:
    register_package(_package)
