"""Optimizer and learning-rate schedule shared by pretraining and every task.

AdamW with decoupled weight decay (Loshchilov & Hutter, 2019) applied only to the weight matrices of
linear layers: decaying norm gains, biases or embeddings pulls them toward zero for no benefit.
The split is decided by module type, not by matching parameter names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def param_groups(modules: Iterable[nn.Module], weight_decay: float,
                 only: Iterable[nn.Parameter] | None = None,
                 learning_rates: dict[int, float] | None = None) -> list[dict]:
    """AdamW groups over the trainable parameters of `modules` (restricted to `only` when given): Linear
    weights decay, the rest do not. learning_rates: {id(parameter): peak rate} for parameters that train at
    their own rate (a fine-tuned block slower than a new head); they get groups of their own."""
    groups: dict[tuple[bool, float | None], list[nn.Parameter]] = {(True, None): [], (False, None): []}
    seen = set()
    allowed = None if only is None else {id(p) for p in only}
    rates = learning_rates or {}
    for root in modules:
        for module in root.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen or (allowed is not None and id(p) not in allowed):
                    continue
                seen.add(id(p))
                is_matrix = isinstance(module, nn.Linear) and name == "weight"
                groups.setdefault((is_matrix, rates.get(id(p))), []).append(p)
    # A tied lm_head weight is the embedding: it was seen first through wte (an Embedding), so no decay.
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0, **({"lr": lr} if lr else {})}
            for (decays, lr), params in groups.items() if params or lr is None]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate: linear warmup over warmup_steps (step t uses (t + 1) / warmup,
    so the first step already moves), then a half cosine from 1 down to min_lr_ratio at total_steps, then flat.

        lr(t) = peak * (t + 1) / warmup                                  t < warmup
        lr(t) = peak * (r + (1 - r) * (1 + cos(pi * progress)) / 2)      progress = (t - warmup) / (total - warmup)
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """warmup_cosine as a callable object: LambdaLR saves its fields in checkpoints (it saves no plain
    lambda), so a schedule refitted to a time budget (`backbone.budget.TimeBudget`) resumes refitted."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float):
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)

    def fit_to(self, total_steps: int) -> None:
        """End the cosine at `total_steps` instead; the warmup keeps its share of the schedule."""
        if total_steps == self.total_steps or self.total_steps <= 0:
            return
        self.warmup_steps = (max(1, round(self.warmup_steps * total_steps / self.total_steps))
                             if self.warmup_steps else 0)
        self.total_steps = total_steps


def build_optimizer(modules: Iterable[nn.Module], lr: float, weight_decay: float, betas: tuple[float, float],
                    warmup_steps: int, total_steps: int, min_lr_ratio: float,
                    only: Iterable[nn.Parameter] | None = None, learning_rates: dict[int, float] | None = None):
    """AdamW + the warmup-cosine schedule, stepped every optimizer step, in Lightning's return format; every
    group's rate follows the same schedule from its own peak (param_groups' learning_rates)."""
    optimizer = torch.optim.AdamW(param_groups(modules, weight_decay, only, learning_rates), lr=lr, betas=betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_lr_ratio))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
