"""TaskModule: a backbone loaded from an artifact folder + an adapter + a head, fine-tuned with Lightning.

Everything every task shares lives here once: loading the backbone (with an error that names the command
that creates it), attaching the adapter, the optimizer and schedule, the train/val/test steps, metrics
logging, typed prediction (`predict`), and the hooks that call its collaborators: the feature cache
(tasks.features.FeatureCaches), the test files and intervals (tasks.evaluation) and the task artifact written
at the end of fit (tasks.artifact). A task subclass adds its head (`build_head`), its loss and its scoring
(`loss`, `update_metrics`, `metrics`), and `predict_batch`. Subclasses declare only their own constructor
arguments and pass the rest on (`**kwargs`); LightningCLI follows them here, so `--help` lists them all.
The command line over it is tasks.task_cli.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from backbone.artifact import CREATE_BACKBONE, ArtifactError, load_backbone
from backbone.optim import build_optimizer
from tasks.adapters import Adapter, FullFineTune
from tasks.artifact import save_task
from tasks.evaluation import ScoredExamples, write_test_files
from tasks.features import FeatureCaches
from tasks.outputs import check_inputs


class TaskModule(L.LightningModule):
    """Shared fine-tuning logic. Subclasses: build_head(), loss(batch), update_metrics(stage, batch),
    metrics(stage), predict_batch(items), and the class attributes input_type and output_type.

    Args:
        backbone: backbone artifact folder (config.json, model.safetensors, tokenizer.json).
        adapter: how the backbone is adapted (tasks.adapters: FullFineTune, Frozen, LoRA, PromptTuning,
            PrefixTuning, FrozenLayers, TopBlocks).
        learning_rate: peak AdamW learning rate.
        adapter_learning_rate: the peak rate of the adapter's parameters (adapter_params(): fine-tuned blocks,
            LoRA updates, a layer mix), when it should differ from the head's; None: learning_rate.
        weight_decay: decoupled weight decay on linear weight matrices.
        warmup_ratio: fraction of the training steps spent in linear warmup.
        min_lr_ratio: the cosine ends at learning_rate * min_lr_ratio.
        max_length: most input tokens per example (None: the backbone's context minus virtual tokens).
        export_dir: where the fine-tuned task artifact is written at the end of fit (None: not written).
        gradient_checkpointing: recompute the backbone's activations in the backward pass (less memory, about
            a third more compute); for LoRA and full fine-tuning of long inputs.
    """

    input_type: type = str  # what predict takes (one, or a list of them); tasks.outputs
    output_type: type = object  # what predict returns for each (a tasks.outputs dataclass)

    def __init__(
        self,
        backbone: str,
        adapter: Adapter | None = None,
        learning_rate: float = 1e-4,
        adapter_learning_rate: float | None = None,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        min_lr_ratio: float = 0.0,
        max_length: int | None = None,
        export_dir: str | None = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        if adapter_learning_rate is not None and adapter_learning_rate <= 0:
            raise ValueError(f"adapter_learning_rate must be > 0 (or null: learning_rate), got {adapter_learning_rate}")
        self.save_hyperparameters(ignore=["adapter"])
        self.adapter = adapter if adapter is not None else FullFineTune()
        self.backbone = None
        self.tokenizer = None
        self._train_tokens = 0  # summed where the batches live: read (one host sync) only through train_tokens
        self._padded_tokens = 0  # the same with padding: their ratio is the share of compute spent on padding
        self.feature_caches = FeatureCaches()  # per split, for an adapter with cache=True (FrozenLayers, TopBlocks)
        self.scored_examples = ScoredExamples()  # the test epoch's records and per-example statistics
        self.task_name: str | None = None  # the registered task this module serves (set by its command)
        # its head and adapter hold trained weights: fit in this run, or loaded (a checkpoint, a saved task)
        self.trained = False

    @property
    def attached_datamodule(self):
        """The trainer's data module; None when the module is used on its own (a loaded task predicting)."""
        return self.trainer.datamodule if self._trainer is not None else None

    # --- building --------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.backbone is not None:
            return
        directory = Path(self.hparams.backbone)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"backbone {directory} not found (from {Path.cwd()}): {CREATE_BACKBONE}; a "
                                    "saved task records its backbone's path as trained: tasks.artifact.load_task("
                                    "folder, backbone=PATH) names another")
        try:
            self.backbone, self.tokenizer = load_backbone(directory)
        except ArtifactError as err:
            raise ArtifactError(f"{err}; recreate the backbone: {CREATE_BACKBONE}") from err
        self.backbone.train()
        self.backbone.gradient_checkpointing = self.hparams.get("gradient_checkpointing", False)
        self.adapter.attach(self.backbone, self.tokenizer)
        self.build_head()

    def build_head(self) -> None:
        raise NotImplementedError

    @property
    def max_input_tokens(self) -> int:
        room = (self.backbone.config.block_size - self.adapter.n_virtual_tokens) // self.adapter.input_copies
        return min(room, self.hparams.max_length or room)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, C) of the real input positions, through the adapter."""
        return self.adapter.encode(self.backbone, input_ids, attention_mask)

    # --- units: what the head reads ---------------------------------------------------------------------
    def units(self, hidden: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of the batch's sequences (S, T, ...) -> the units the head reads (S, U, ...) and a
        (S, U) mask of the real ones, every row's real units first. Default: every real token. The trailing
        dims are free, so the same rule picks units from mixed (C) and per-layer (nL, C) states."""
        return hidden, batch["attention_mask"].bool()

    def sequence_rows(self, batch: dict) -> list[int]:
        """The row (example) of each sequence of a batch: one each, unless a task splits rows (QA windows)."""
        return list(range(len(batch["input_ids"])))

    def unit_states(self, batch: dict, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, U, C) unit states and their (S, U) mask, from the feature cache when this split has one.
        grad: keep the autograd graph through frozen layers too (token attribution differentiates them)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        cache = self.feature_caches.get(batch.get("split"))
        if cache is not None and "row" in batch and self.adapter.caches_tokens:
            cached = cache.gather_tokens(batch["row"], mask)  # the input of the trained blocks, (S, T, 1, C)
            states, unit_mask = self.units(self.adapter.from_cached(self.backbone, cached, mask), batch)
        elif cache is not None and "row" in batch:
            states, unit_mask = cache.gather(batch["row"])
            states, unit_mask = states.to(ids.device), unit_mask.to(ids.device)
        else:  # units are picked from the per-layer states before the mix, exactly as the cache stores them
            states = self.adapter.states(self.backbone, ids, mask, batch.get("segment_ids"), grad=grad)
            states, unit_mask = self.units(states, batch)
        return self.adapter.mix(states), unit_mask

    def feature_spec(self) -> dict:
        """What, beyond the backbone, data and layers, the cached units depend on (subclasses add theirs)."""
        return {"task": type(self).__qualname__, "max_tokens": self.max_input_tokens}

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
        self._padded_tokens = self._padded_tokens + batch["attention_mask"].numel()
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), prog_bar=True, batch_size=len(batch["input_ids"]))
        self.update_metrics("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics("test", batch)

    def record_predictions(self, stage: str, records: list[dict]) -> None:
        """One JSON-safe record per scored test example (what it was, what the model said, the gold): written
        to test_predictions.jsonl, and counted as the test examples reported next to the scores."""
        if stage == "test":
            self.scored_examples.add_records(records)

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
        self.trained = True
        self.feature_caches.prepare(self, ["train"])

    def on_validation_start(self) -> None:  # only when a validation loop runs (not with limit_val_batches=0)
        self.feature_caches.prepare(self, ["validation"])

    def on_test_start(self) -> None:
        self.feature_caches.prepare(self, ["test"])

    @property
    def train_tokens(self) -> int:
        """Real (unpadded) tokens the training steps saw, over resumes."""
        return int(self._train_tokens)

    @property
    def padding_share(self) -> float:
        """Share of the training batches' token slots that were padding."""
        padded = int(self._padded_tokens)
        return round(1 - self.train_tokens / padded, 4) if padded else 0.0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_tokens"] = self.train_tokens

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.trained = True
        self._train_tokens = checkpoint.get("train_tokens", 0)

    # --- confidence intervals ----------------------------------------------------------------------------
    def record_example_stats(self, stage: str, name: str, rows) -> None:
        """Per-example statistics of the test set (tasks.confidence), kept for the bootstrap intervals."""
        if stage == "test":
            self.scored_examples.add_stats(name, rows)

    def interval_metrics(self) -> dict:
        """{metric: (statistics name, f(sums) -> score on the metric's own scale)} of this task's test metrics."""
        return {}

    def test_intervals(self) -> dict[str, list[float]]:
        """95% bootstrap interval of every test metric that has per-example statistics: {metric: [low, high]}."""
        world_size = self.trainer.world_size if self._trainer is not None else 1  # each process scored a shard
        return self.scored_examples.intervals(self.interval_metrics(), world_size)

    def on_test_epoch_start(self) -> None:
        self.scored_examples.clear()
        head_params = [p for p in self.trainable_parameters() if p.requires_grad]
        if head_params and not self.trained:
            rank_zero_warn("testing a task that was neither trained in this run nor loaded from a checkpoint: its "
                           "head and adapter are untrained. Pass --ckpt_path last (after fit) or use "
                           "tasks.artifact.load_task(export_dir).")

    def test_report(self) -> dict:
        """How the test scores were computed, beyond the numbers (adapter, decoding, metric mode, sacreBLEU's
        signature), JSON-safe; read after a test epoch (some entries count what it saw). Written next to
        the scores in the test metrics JSON and into the benchmark table; subclasses add to this one."""
        return {"test/adapter": type(self.adapter).__name__}

    def on_test_epoch_end(self) -> None:
        values = self._log_metrics("test")
        values["test/examples"] = float(len(self.scored_examples.records))
        self.log("test/examples", values["test/examples"])
        intervals = {f"test/{metric}_ci95": bounds for metric, bounds in self.test_intervals().items()}
        write_test_files(Path(self.trainer.log_dir or self.trainer.default_root_dir),
                         {**values, **intervals, **self.test_report()}, self.scored_examples.records,
                         self.trainer.is_global_zero)

    def configure_optimizers(self):
        h = self.hparams
        total = int(self.trainer.estimated_stepping_batches)
        params = self.trainable_parameters()
        if not params:
            raise ValueError("nothing to train: the adapter and the head have no parameters "
                             "(a frozen backbone with the prompt path is evaluation-only: run `test`)")
        adapter_rate, adapted = h.get("adapter_learning_rate"), self.adapter.adapter_params(self.backbone)
        if adapter_rate is not None and not adapted:
            rank_zero_warn(f"adapter_learning_rate is set, but {type(self.adapter).__name__} trains nothing: ignored")
        rates = {id(p): adapter_rate for p in adapted} if adapter_rate is not None else None
        return build_optimizer([self], h.learning_rate, h.weight_decay, (0.9, 0.999), int(h.warmup_ratio * total),
                               total, h.min_lr_ratio, only=params, learning_rates=rates)

    # --- use -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, items, **options):
        """Predictions for a list of inputs (input_type), one output_type each, in order; given one input,
        its one output. Options are the task's (see its predict_batch)."""
        single = isinstance(items, self.input_type)
        if not single and not isinstance(items, (list, tuple)):
            raise TypeError(f"predict takes a {self.input_type.__name__} or a list of them, got a "
                            f"{type(items).__name__}")
        items = [items] if single else list(items)
        check_inputs(items, self.input_type)
        was_training = self.training
        self.eval()
        try:
            outputs = self.predict_batch(items, **options) if items else []
        finally:
            self.train(was_training)
        return outputs[0] if single else outputs

    def predict_batch(self, items: list, **options) -> list:
        raise NotImplementedError

    # --- task artifact ---------------------------------------------------------------------------------
    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            save_task(self, self.hparams.export_dir)


class LabelledTask(TaskModule):
    """A task whose outputs come from a fixed label map (classification, NER).

    Args:
        label_names: the label map; None takes it from the data module (when both are given they must agree;
            set data.label_names to fix a user file's map).
    """

    def __init__(self, label_names: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.label_names = label_names

    def configure_model(self) -> None:
        if self.backbone is None:  # the head's size comes from the label map: settle it first
            datamodule = self.attached_datamodule
            if datamodule is not None:
                data_names = list(datamodule.label_names)
                if self.label_names is not None and list(self.label_names) != data_names:
                    raise ValueError(f"model.label_names {list(self.label_names)} and the data's label map "
                                     f"{data_names} differ: the labels would be read under the wrong names; pass "
                                     "the same list as data.label_names, or leave model.label_names out")
                self.label_names = data_names
            if not self.label_names:
                raise ValueError(f"{type(self).__name__} needs label_names, or a data module to take them from")
            self.hparams.label_names = self.label_names
        super().configure_model()

