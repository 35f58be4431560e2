"""TaskModule: a backbone loaded from an artifact folder + an adapter + a head, fine-tuned with Lightning.

Everything every task shares lives here once: loading the backbone (with an error that names the command
that creates it), attaching the adapter, the optimizer and schedule, the train/val/test steps, metrics
logging, the test metrics JSON, and saving/loading a fine-tuned task as one artifact. A task subclass adds
its head (`build_head`), its loss and predictions (`loss`, `update_metrics`), and its metrics.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from safetensors.torch import load_file, save_file

from backbone.artifact import ArtifactError, load_backbone
from backbone.optim import build_optimizer
from backbone.trainer import Trainer
from tasks.adapters import Adapter, FullFineTune

TASK_FILE, WEIGHTS_FILE, METRICS_FILE = "task.json", "trainable.safetensors", "test_metrics.json"
# LightningCLI warns when it is given args while sys.argv has some too; gptsuite's dispatcher and the benchmark
# do that on purpose (sys.argv must stay whole: a DDP launcher re-runs it)
LIGHTNINGCLI_ARGS_WARNING = ".*args parameter is intended to run from within Python.*"
PRETRAIN_COMMAND = "gptsuite pretrain fit --config configs/pretrain/tiny.yaml"
CREATE_BACKBONE = (f"create it with `{PRETRAIN_COMMAND}` "
                   "(or `gptsuite import smollm2`)")


class TaskModule(L.LightningModule):
    """Shared fine-tuning logic. Subclasses: build_head(), loss(batch), update_metrics(stage, batch).

    Args:
        backbone: backbone artifact folder (config.json, model.safetensors, tokenizer.json).
        adapter: how the backbone is adapted (tasks.adapters: FullFineTune, Frozen, LoRA, PromptTuning, PrefixTuning).
        label_names: label map; None takes it from the data module.
        learning_rate: peak AdamW learning rate.
        weight_decay: decoupled weight decay on linear weight matrices.
        warmup_ratio: fraction of the training steps spent in linear warmup.
        min_lr_ratio: the cosine ends at learning_rate * min_lr_ratio.
        max_length: most input tokens per example (None: the backbone's context minus virtual tokens).
        export_dir: where the fine-tuned task artifact is written at the end of fit (None: not written).
    """

    def __init__(
        self,
        backbone: str,
        adapter: Adapter | None = None,
        label_names: list[str] | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        min_lr_ratio: float = 0.0,
        max_length: int | None = None,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["adapter"])
        self.adapter = adapter if adapter is not None else FullFineTune()
        self.label_names = label_names
        self.backbone = None
        self.tokenizer = None
        self._train_tokens = 0  # summed where the batches live: read (one host sync) only through train_tokens

    # --- building --------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.backbone is not None:
            return
        directory = Path(self.hparams.backbone)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"backbone {directory} not found: {CREATE_BACKBONE}")
        try:
            self.backbone, self.tokenizer = load_backbone(directory)
        except ArtifactError as err:
            raise ArtifactError(f"{err}; recreate the backbone: {CREATE_BACKBONE}") from err
        self.backbone.train()
        if self.label_names is None and self._trainer is not None and self.trainer.datamodule is not None:
            self.label_names = list(self.trainer.datamodule.label_names)
        self.hparams.label_names = self.label_names
        self.adapter.attach(self.backbone, self.tokenizer)
        self.build_head()

    def build_head(self) -> None:
        raise NotImplementedError

    @property
    def max_input_tokens(self) -> int:
        room = self.backbone.config.block_size - self.adapter.n_virtual_tokens
        return min(room, self.hparams.max_length or room)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, C) of the real input positions, through the adapter."""
        return self.adapter.encode(self.backbone, input_ids, attention_mask)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Exactly what the adapter and the head train."""
        head = [p for name, m in self.named_children() if name not in ("backbone", "adapter") for p in m.parameters()]
        return self.adapter.adapter_params(self.backbone) + head

    # --- steps -----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def update_metrics(self, stage: str, batch: dict) -> None:
        raise NotImplementedError

    def metrics(self, stage: str) -> dict:
        """The torchmetrics objects of a stage: {name: metric}."""
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        self._train_tokens = self._train_tokens + batch["attention_mask"].sum()  # real tokens, padding not counted
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), prog_bar=True, batch_size=len(batch["input_ids"]))
        self.update_metrics("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics("test", batch)

    def _log_metrics(self, stage: str) -> dict[str, float]:
        """Compute, log and reset a stage's metrics; a metric may return one value or a dict of them."""
        values = {}
        for name, metric in self.metrics(stage).items():
            result = metric.compute()
            items = result.items() if isinstance(result, dict) else [(name, result)]
            values.update({f"{stage}/{key}": float(value) for key, value in items})
            metric.reset()
        self.log_dict(values, prog_bar=stage == "val")
        return values

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_fit_start(self) -> None:
        self._trained = True

    @property
    def train_tokens(self) -> int:
        """Real (unpadded) tokens the training steps saw, over resumes."""
        return int(self._train_tokens)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_tokens"] = self.train_tokens

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._trained = True
        self._train_tokens = checkpoint.get("train_tokens", 0)

    def on_test_epoch_start(self) -> None:
        self._test_examples = 0  # counted by update_metrics, reported next to the scores
        head_params = [p for p in self.trainable_parameters() if p.requires_grad]
        if head_params and not getattr(self, "_trained", False):
            rank_zero_warn("testing a task that was neither trained in this run nor loaded from a checkpoint: its "
                           "head and adapter are untrained. Pass --ckpt_path last (after fit) or use "
                           "tasks.base.load_task(export_dir).")

    def test_report(self) -> dict:
        """How the test scores were computed, beyond the numbers (adapter, decoding, metric mode, sacreBLEU's
        signature), JSON-safe; read after a test epoch (some entries count what it saw). Written next to
        the scores in the test metrics JSON and into the benchmark table; subclasses add to this one."""
        return {"test/adapter": type(self.adapter).__name__}

    def on_test_epoch_end(self) -> None:
        values = self._log_metrics("test")
        values["test/examples"] = float(getattr(self, "_test_examples", 0))
        self.log("test/examples", values["test/examples"])
        written = json.dumps({**values, **self.test_report()}, indent=2)
        rank_zero_info(written)
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.trainer.is_global_zero:
            (out_dir / METRICS_FILE).write_text(written + "\n")
            rank_zero_info(f"test metrics written to {out_dir / METRICS_FILE}")

    def configure_optimizers(self):
        h = self.hparams
        total = int(self.trainer.estimated_stepping_batches)
        params = self.trainable_parameters()
        if not params:
            raise ValueError("nothing to train: the adapter and the head have no parameters "
                             "(a frozen backbone with the prompt path is evaluation-only: run `test`)")
        return build_optimizer([self], h.learning_rate, h.weight_decay, (0.9, 0.999), int(h.warmup_ratio * total),
                               total, h.min_lr_ratio, only=params)

    # --- task artifact ---------------------------------------------------------------------------------
    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            save_task(self, self.hparams.export_dir)


# --------------------------------------------------------------------------------------------------------
# one folder per fine-tuned task: task.json + trainable.safetensors
# --------------------------------------------------------------------------------------------------------
def _spec(obj) -> dict:
    """class_path + init_args of an object whose constructor arguments are stored as same-named attributes."""
    params = inspect.signature(type(obj).__init__).parameters.values()
    names = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "init_args": {n: getattr(obj, n) for n in names}}


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def save_task(task: TaskModule, directory: str | Path) -> Path:
    """Write what was trained (adapter + head, named as in the module) and how to rebuild the rest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    trainable = {id(p) for p in task.trainable_parameters()}
    state = {name: p.detach().cpu().contiguous() for name, p in task.named_parameters() if id(p) in trainable}
    save_file(state, str(directory / (WEIGHTS_FILE + ".tmp")))
    (directory / (WEIGHTS_FILE + ".tmp")).replace(directory / WEIGHTS_FILE)
    hparams = {k: v for k, v in dict(task.hparams).items() if k != "export_dir" and not k.startswith("_")}
    spec = {"task": f"{type(task).__module__}.{type(task).__qualname__}", "hparams": hparams,
            "adapter": _spec(task.adapter)}
    (directory / TASK_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    rank_zero_info(f"task saved to {directory}")
    return directory


def load_task(directory: str | Path, backbone: str | None = None) -> TaskModule:
    """Rebuild a fine-tuned task for prediction; `backbone` overrides the recorded backbone folder."""
    directory = Path(directory)
    for name in (TASK_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing: not a saved task (run `fit` with --model.export_dir)")
    spec = json.loads((directory / TASK_FILE).read_text())
    adapter = _import(spec["adapter"]["class_path"])(**spec["adapter"]["init_args"])
    hparams = {**spec["hparams"], **({"backbone": backbone} if backbone else {})}
    task = _import(spec["task"])(adapter=adapter, **hparams)
    task.configure_model()
    state = load_file(str(directory / WEIGHTS_FILE))
    own = dict(task.named_parameters())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ArtifactError(f"{directory / WEIGHTS_FILE} has tensors this task does not: {unknown[:5]}")
    trainable = {id(p) for p in task.trainable_parameters()}
    missing = sorted(name for name, p in own.items() if id(p) in trainable and name not in state)
    if missing:
        raise ArtifactError(f"{directory / WEIGHTS_FILE} lacks trained tensors of this task: {missing[:5]}")
    task._trained = True
    with torch.no_grad():
        for name, tensor in state.items():
            if own[name].shape != tensor.shape:
                raise ArtifactError(f"{directory / WEIGHTS_FILE}: {name} is {tuple(tensor.shape)}, "
                                    f"the task expects {tuple(own[name].shape)}")
            own[name].copy_(tensor)
    return task.eval()


# --------------------------------------------------------------------------------------------------------
# the command line: `gptsuite <task> fit|validate|test --config configs/tasks/<task>.yaml`
# --------------------------------------------------------------------------------------------------------
class TaskCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.backbone", "data.backbone")


def run_task_cli(model_class, data_class, args: list[str] | None = None, description: str = "",
                 run: bool = True) -> TaskCLI:
    """One LightningCLI for any task; args=None reads sys.argv (tests pass a list). With run=False the args
    hold no subcommand and the caller drives cli.trainer itself (the benchmark does: fit, then test)."""
    return TaskCLI(model_class, data_class, trainer_class=Trainer, args=args, run=run,
                   save_config_kwargs={"overwrite": True},
                   parser_kwargs={"description": description})
