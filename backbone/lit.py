"""Causal-LM pretraining with Lightning: `gptsuite pretrain fit --config configs/pretrain/tiny.yaml`.

LitGPT trains a GPT on next-token prediction:  loss = -1/N sum_t log p(x_{t+1} | x_<=t).
Its shape is a named preset (backbone.config.MODEL_PRESETS) with any fields that differ given as overrides:

    model:
      preset: small
      overrides: {dropout: 0.0}   # optional

The model is built in `configure_model`, once the data module has its tokenizer, so the vocabulary size
always comes from the tokenizer the corpus was packed with. At the end of `fit` the backbone artifact
(config.json, model.safetensors, tokenizer.json, metrics.json) is exported for the tasks to load.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torchmetrics.aggregation import MeanMetric, SumMetric

from backbone.artifact import ArtifactError, load_model, save_backbone
from backbone.config import GPTConfig
from backbone.generate import generate_text
from backbone.model import GPT
from backbone.optim import build_optimizer
from backbone.perf import measure_matmul_flops
from backbone.perplexity import perplexity, window_nll

MFU_MAX_SPREAD = 1.5  # slowest / fastest matmul run beyond which the measured peak means nothing

def preset_config(preset: str, overrides: dict[str, Any] | None = None) -> GPTConfig:
    """A preset's GPTConfig with some of its fields replaced (a pretraining YAML's model.preset, model.overrides)."""
    unknown = sorted(set(overrides or {}) - {f.name for f in dataclasses.fields(GPTConfig)})
    if unknown:
        raise ValueError(f"model.overrides: unknown GPTConfig fields {unknown}")
    return GPTConfig.from_preset(preset, **(overrides or {}))


class LitGPT(L.LightningModule):
    """A GPT trained as a causal language model.

    Args:
        preset: the model's shape, a name in backbone.config.MODEL_PRESETS (nano, tiny, small, gpt2-124m, ...);
            vocab_size is replaced by the data module's tokenizer size.
        overrides: GPTConfig fields that differ from the preset's, e.g. {dropout: 0.1}.
        learning_rate: peak AdamW learning rate.
        weight_decay: decoupled weight decay on linear weight matrices.
        betas: AdamW betas.
        warmup_steps: linear warmup steps before the cosine decay.
        min_lr_ratio: the cosine decays to learning_rate * min_lr_ratio at trainer.max_steps.
        export_dir: where the backbone artifact is written when fit ends (None: do not export).
        sample_every_n_steps: print and save a text sample this often (0: never).
        sample_prompt: the prompt of those samples.
        peak_flops: the hardware's peak FLOP/s for MFU; None measures a matmul at fit start.
        init_from: a backbone folder whose weights training starts from (continued pretraining on your own
            text: give the same folder as --data.tokenizer, and the preset it was made with); None: random.
            Unlike --ckpt_path, which resumes a run where it stopped, this starts a new run (a fresh optimizer,
            schedule and export_dir) from the saved weights.
    """

    def __init__(
        self,
        preset: str,
        overrides: dict[str, Any] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        export_dir: str | None = None,
        sample_every_n_steps: int = 0,
        sample_prompt: str = "The",
        peak_flops: float | None = None,
        init_from: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.config = preset_config(preset, overrides)
        self.model: GPT | None = None
        self.val_loss = MeanMetric()
        self.test_nll, self.test_tokens = SumMetric(), SumMetric()
        self.train_seconds = 0.0  # accumulated over resumes (saved in checkpoints)
        self._step_start: float | None = None
        self._peak: float | None = None  # the MFU denominator, measured when fit starts

    # --- model -----------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and getattr(datamodule, "tokenizer", None) is not None:
            self.config = dataclasses.replace(self.config, vocab_size=datamodule.tokenizer.vocab_size)
        if self.hparams.init_from is None:
            self.model = GPT(self.config)
            return
        self.model = load_model(self.hparams.init_from)
        if self.model.config != self.config:
            theirs, ours = dataclasses.asdict(self.model.config), dataclasses.asdict(self.config)
            differ = {k: (theirs[k], ours[k]) for k in ours if theirs[k] != ours[k]}
            raise ArtifactError(f"model.init_from {self.hparams.init_from}: its shape differs from model.preset "
                                f"{self.hparams.preset!r} with model.overrides (saved, configured): {differ}; name the "
                                "preset it was made with, and its tokenizer folder as --data.tokenizer")

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.lm_logits(self.model(idx))

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]  # (B, T) inputs and next-token targets
        logits = self(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))

    # --- steps -----------------------------------------------------------------------------------------
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", torch.exp(loss.detach()))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.val_loss.update(self._loss(batch))

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/ppl", torch.exp(loss), sync_dist=True)
        self.val_loss.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        windows, lengths = batch
        nll, count = window_nll(self.model, windows, lengths)
        self.test_nll.update(nll)
        self.test_tokens.update(count.float())

    def on_test_epoch_end(self) -> None:
        nll, tokens = self.test_nll.compute(), self.test_tokens.compute()
        words = self.trainer.datamodule.test_words
        self.log("test/loss", nll / tokens)
        self.log("test/ppl_token", torch.exp(nll / tokens))
        self.log("test/ppl_word", torch.exp(nll / words))
        self.test_nll.reset()
        self.test_tokens.reset()

    def configure_optimizers(self):
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        h = self.hparams
        return build_optimizer([self.model], h.learning_rate, h.weight_decay, tuple(h.betas), h.warmup_steps,
                               int(total), h.min_lr_ratio)

    # --- throughput, MFU and samples -------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._peak, why = self._mfu_peak()
        rank_zero_info(f"{why}; model: {self.model.num_params() / 1e6:.2f}M parameters")

    def _mfu_peak(self) -> tuple[float | None, str]:
        """The MFU denominator: the median of several matmuls in the precision this run computes in. Left
        out (None) when the runs disagree too much to be a peak (a busy machine)."""
        if self.hparams.peak_flops is not None:
            return self.hparams.peak_flops, f"peak FLOP/s for MFU (given): {self.hparams.peak_flops / 1e9:.0f} GFLOP/s"
        precision = str(self.trainer.precision)
        dtype = (torch.bfloat16 if "bf16" in precision
                 else torch.float16 if precision.startswith("16") else torch.float32)
        rate = measure_matmul_flops(dtype, device=self.device)
        if rate.spread > MFU_MAX_SPREAD:
            return None, (f"MFU not reported: the {dtype} matmul peak varied {rate.spread:.1f}x over "
                          f"{rate.runs} runs (a busy machine)")
        return (rate.flops * self.trainer.world_size,
                f"peak FLOP/s for MFU: {rate.gflops:.0f} GFLOP/s ({dtype}, median of {rate.runs} runs, {precision})")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        seconds = time.perf_counter() - self._step_start
        self.train_seconds += seconds
        tokens = batch[:, :-1].numel() * self.trainer.world_size
        tokens_per_s = tokens / max(seconds, 1e-9)
        self.log("perf/tokens_per_s", tokens_per_s, prog_bar=True)
        mfu = tokens_per_s * self.model.flops_per_token(batch.size(1) - 1) / self._peak if self._peak else None
        if mfu is not None and mfu <= 1.0:  # above 1 the peak was measured wrong: left out, not logged wrong
            self.log("perf/mfu", mfu)
        self.log("train/tokens_seen", float(self.tokens_seen()))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        every = self.hparams.sample_every_n_steps
        if every and self.global_step % every == 0:
            self._write_sample()

    def tokens_seen(self) -> int:
        """Derived, not counted: optimizer steps x tokens per step (so it survives a resume exactly)."""
        return self.global_step * self.trainer.datamodule.tokens_per_step(self.trainer)

    @rank_zero_only
    def _write_sample(self) -> None:
        tokenizer = self.trainer.datamodule.tokenizer
        text = generate_text(self.model, tokenizer, self.hparams.sample_prompt, max_new_tokens=48,
                             temperature=0.8, top_k=40, seed=0)[0]
        line = f"step {self.global_step}: {self.hparams.sample_prompt}{text}"
        rank_zero_info(line.replace("\n", " "))
        if self.trainer.log_dir:
            with open(Path(self.trainer.log_dir) / "samples.txt", "a", encoding="utf-8") as f:
                f.write(line + "\n")

    # --- checkpoints and export ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_seconds"] = self.train_seconds
        checkpoint["gpt_config"] = dataclasses.asdict(self.config)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_seconds = checkpoint.get("train_seconds", 0.0)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.export(self.hparams.export_dir)

    def export(self, directory: str | Path) -> Path:
        """Write the backbone artifact with metrics.json (val loss, PTB perplexity, tokens seen, wall time)."""
        datamodule = self.trainer.datamodule
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        metrics.update(
            steps=self.global_step,
            tokens_seen=self.tokens_seen(),
            train_seconds=round(self.train_seconds, 1),
            parameters=self.model.num_params(),
        )
        ptb_text = datamodule.ptb_test_text()
        if ptb_text is not None:
            ptb = perplexity(self.model, datamodule.tokenizer, ptb_text, batch_size=datamodule.batch_size,
                             block_size=datamodule.block_size, progress=True)
            metrics.update({f"ptb_test/{k}": v for k, v in ptb.items()})
        out = save_backbone(directory, self.model, datamodule.tokenizer, metrics)
        rank_zero_info(f"exported backbone to {out}: " + json.dumps(
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in metrics.items()}))
        return out
