"""TaskSpec: everything the command line, the benchmark, the demo and the tests know about one task.

Each task package defines one `SPEC` in its `__init__.py`; `tasks.catalog` lists the packages. Nothing
else names the tasks one by one: the `gptsuite <task>` subcommands, the benchmark's stages, the demo's tabs
and the config tests are all derived from the registered specs. This module imports nothing heavy, so
`gptsuite --help` stays fast: classes are named by dotted path and imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    """A published score to read ours against (full training data, usually a bigger model). `benchmark`: the
    one benchmark it belongs to where a task scores several (codegen: HumanEval and MBPP); None: all of the
    task's."""

    metric: str
    name: str
    value: float
    source: str
    benchmark: str | None = None


def load_object(path: str):
    """"package.module.Name" -> the object."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one spec per task
class TaskSpec:
    """One task.

    name: the subcommand, the YAML's stem (configs/tasks/<name>.yaml), the artifact folder
        (artifacts/tasks/<name>) and the demo tab's id.
    title: what people read (the demo tab, `gptsuite --help`).
    module, data: dotted paths of its TaskModule and its TaskData.
    variants: where a task has several module classes (QA: a span head, generated answers), their dotted paths;
        a config names one (`model: {class_path: ..., init_args: ...}`, LightningCLI's subclass mode) and
        `module` is their common base.
    benchmark, split: what the benchmark scores, in words (the data module's `dataset` names the loader).
    metrics: the test metrics the table shows, in order of preference: a benchmark is headlined on the first
        one its rows report (main_metric: code chosen among samples reports chosen_pass@1, plain sampling
        pass@1, greedy decoding only greedy_pass@1).
    sample: the demo's example input: an instance of the module's input_type (a str, a tasks.outputs.Question).
    baselines: dotted path of f(data module) -> {baseline: {metric: value}}, scored on the test examples
        (values on the same scale as the task's metrics).
    anchors: published scores (tasks.spec.Anchor).
    fraction: the metrics are fractions (shown as %), not already percentages.
    """

    name: str
    title: str
    module: str
    data: str
    benchmark: str
    split: str
    metrics: tuple[str, ...]
    sample: object
    baselines: str | None = None
    anchors: tuple[Anchor, ...] = ()
    fraction: bool = True
    variants: tuple[str, ...] = ()

    @property
    def config(self) -> str:
        return f"configs/tasks/{self.name}.yaml"

    @property
    def fit_command(self) -> str:
        return f"gptsuite {self.name} fit --config {self.config}"

    @property
    def module_class(self) -> type:
        return load_object(self.module)

    @property
    def default_module(self) -> str:
        """The module class a config that names none builds: the first variant, else the module."""
        return self.variants[0] if self.variants else self.module

    @property
    def module_paths(self) -> tuple[str, ...]:
        """The module classes a config and a saved task (task.json) may name."""
        return self.variants or (self.module,)

    @property
    def data_class(self) -> type:
        return load_object(self.data)

    @property
    def input_type(self) -> type:
        return self.module_class.input_type

    @property
    def output_type(self) -> type:
        return self.module_class.output_type

    def main_metric(self, reported) -> str | None:
        """The first of the task's metrics among `reported` (names with a value), or None."""
        have = set(reported)
        return next((m for m in self.metrics if m in have), None)

    def score_baselines(self, datamodule) -> dict:
        return load_object(self.baselines)(datamodule) if self.baselines else {}
