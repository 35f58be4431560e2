"""The command line of a task: `gptsuite <task> fit|validate|test --config configs/tasks/<task>.yaml`.

One LightningCLI for every registered task (tasks.catalog), over its spec's module and data classes.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from backbone.renamed_keys import refuse_renamed_keys
from backbone.trainer import CommandLineCLI, Trainer, cli_parser_kwargs
from tasks.catalog import get
from tasks.evaluation import join_test_scores
from tasks.renamed_keys import RENAMED

# LightningCLI warns when it is given args while sys.argv has some too; gptsuite's dispatcher and the benchmark
# do that on purpose (sys.argv must stay whole: a DDP launcher re-runs it)
LIGHTNINGCLI_ARGS_WARNING = ".*args parameter is intended to run from within Python.*"


class TaskCLI(CommandLineCLI):
    """LightningCLI for a task: the data module reads the model's backbone; the optimizer and schedule are
    the module's own (configure_optimizers trains exactly trainable_parameters()), so no --optimizer flags.
    Lightning's `predict` subcommand is replaced by `gptsuite <task> predict` (tasks/predict.py), which reads
    a saved task and an unlabelled file. `fit` given a test file scores it after training, and the scores
    join the exported task folder."""

    def __init__(self, *args, task_name: str | None = None, **kwargs):
        self.task_name = task_name  # set before LightningCLI's __init__, which may run the subcommand
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: keys for name, keys in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser) -> None:
        model = "model"
        if self.subclass_mode_model:  # a task with variants (QA): the config names its class, its arguments nested
            model = "model.init_args"
            parser.set_defaults({"model": {"class_path": get(self.task_name).default_module}})  # unless one is named
        parser.link_arguments(f"{model}.backbone", "data.backbone")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self.model.task_name = self.task_name

    def after_fit(self) -> None:
        """Score the user's test file, if one was given, with the weights just trained."""
        files = getattr(self.datamodule, "data_files", None) or {}
        if "test" not in files or self.trainer.interrupted:
            return
        self.trainer.test(self.model, datamodule=self.datamodule)
        join_test_scores(self.trainer, self.model)


def run_cli(name: str, args: list[str] | None = None, run: bool = True) -> TaskCLI:
    """The task's LightningCLI (`gptsuite <name> fit|validate|test ...`); args=None reads sys.argv (tests pass a
    list). With run=False the args hold no subcommand and the caller drives cli.trainer itself (the benchmark
    does: fit, then test)."""
    spec = get(name)
    description = (f"{spec.title} ({spec.benchmark}): `{spec.fit_command}`; your own data: --data.train_file, "
                   f"--data.validation_file, --data.test_file, --model.export_dir DIR; then `gptsuite {name} predict "
                   "--task DIR --input FILE --output FILE`")
    refuse_renamed_keys(sys.argv[1:] if args is None else args, RENAMED)
    return TaskCLI(spec.module_class, spec.data_class, trainer_class=Trainer, args=args, run=run, task_name=name,
                   subclass_mode_model=bool(spec.variants), save_config_kwargs={"overwrite": True},
                   auto_configure_optimizers=False,
                   parser_kwargs=cli_parser_kwargs(TaskCLI.subcommands(), description=description,
                                                   prog=f"gptsuite {name}"))
