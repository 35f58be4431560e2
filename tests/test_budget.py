"""TimeBudget: as many steps as fit in a wall-clock budget, with the learning-rate schedule ending there."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from backbone import budget as budget_module
from backbone.budget import TimeBudget
from backbone.optim import WarmupCosine, build_optimizer, warmup_cosine


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Regression(L.LightningModule):
    """A one-weight model whose every training step costs `step_seconds` on the fake clock."""

    def __init__(self, clock: FakeClock, step_seconds: float, total_steps: int):
        super().__init__()
        self.w = torch.nn.Linear(1, 1)
        self.clock, self.step_seconds, self.total_steps = clock, step_seconds, total_steps
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        self.clock.now += self.step_seconds
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return ((self.w(batch[0]) - 1.0) ** 2).mean()

    def configure_optimizers(self):
        return build_optimizer([self], 0.1, 0.0, (0.9, 0.95), warmup_steps=10, total_steps=self.total_steps,
                               min_lr_ratio=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(64, 1)), batch_size=1)

    def validation_step(self, batch, batch_idx):
        self.clock.now += self.step_seconds  # validation costs time too

    def val_dataloader(self):
        return self.train_dataloader()


def fit(monkeypatch, step_seconds: float, seconds: float, max_steps: int = 100, val_every: int | None = None):
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(seconds=seconds, probe_steps=3)
    model = Regression(clock, step_seconds, max_steps)
    validation = (dict(val_check_interval=val_every, check_val_every_n_epoch=None, limit_val_batches=1)
                  if val_every else {})
    trainer = L.Trainer(max_steps=max_steps, max_epochs=-1, callbacks=[budget], logger=False, precision="32-true",
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, **validation)
    trainer.fit(model)
    return trainer, model, budget


@pytest.mark.parametrize("val_every", [None, 10])
def test_slow_machine_trains_fewer_steps_with_a_complete_schedule(monkeypatch, val_every):
    trainer, model, budget = fit(monkeypatch, step_seconds=1.0, seconds=30.0 + (3 if val_every else 0),
                                 val_every=val_every)
    # 1 s per step and a 30 s budget: about 30 of the planned 100 steps
    assert 28 <= trainer.global_step <= 31
    assert budget.report["planned_steps"] == 100 and budget.report["fitted_steps"] == trainer.global_step
    schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert schedule.total_steps == trainer.global_step and schedule.warmup_steps == 3  # 10 of 100 -> 3 of 30
    # the last step ran at (close to) the schedule's end: the minimum, not the middle of the cosine
    assert model.lrs[-1] == pytest.approx(0.1 * 0.1, rel=0.05)


@pytest.mark.parametrize("val_every", [None, 20, 50])
def test_fast_machine_trains_every_planned_step_on_the_planned_schedule(monkeypatch, val_every):
    trainer, model, budget = fit(monkeypatch, step_seconds=0.01, seconds=30.0, val_every=val_every)
    # exactly the planned steps: a refit after the last validation must not add one
    assert trainer.global_step == 100 and budget.report["fitted_steps"] == 100 and len(model.lrs) == 100
    assert not budget.report.get("stopped_by_budget")
    assert model.lrs[50] == pytest.approx(0.1 * warmup_cosine(50, 10, 100, 0.1))


def test_budget_is_a_hard_stop_when_steps_slow_down(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)

    class Slowing(Regression):
        def training_step(self, batch, batch_idx):
            self.step_seconds = 0.1 if self.global_step < 10 else 5.0  # fast probe, then 50x slower
            return super().training_step(batch, batch_idx)

    budget = TimeBudget(seconds=20.0, probe_steps=3)
    trainer = L.Trainer(max_steps=100, max_epochs=-1, callbacks=[budget], logger=False, precision="32-true",
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(Slowing(clock, 0.1, 100))
    assert clock.now <= 20.0 + 5.0  # stopped at the first step past the budget
    assert budget.report["stopped_by_budget"]


def test_schedule_follows_steps_that_slow_down_after_the_probe(monkeypatch):
    """A first estimate from quick steps would end the schedule far too late; refits as the measured steps
    double bring its end back to where the budget runs out, so the last steps run at the minimum rate."""
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)

    class Slowing(Regression):
        def training_step(self, batch, batch_idx):
            self.step_seconds = 0.2 if self.global_step < 8 else 1.0
            return super().training_step(batch, batch_idx)

    budget = TimeBudget(seconds=60.0, probe_steps=3)
    trainer = L.Trainer(max_steps=500, max_epochs=-1, callbacks=[budget], logger=False, precision="32-true",
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    model = Slowing(clock, 0.2, 500)
    trainer.fit(model)
    assert 62 <= trainer.global_step <= 68  # 8 quick steps (1.6 s), then about 58 at 1 s a step
    assert abs(budget.report["fitted_steps"] - trainer.global_step) <= 2  # the schedule ended where training did
    assert model.lrs[-1] <= 0.1 * 0.2  # near the minimum (0.1 x peak), not the middle of the cosine


def test_fitted_schedule_survives_a_checkpoint():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(100, 1000, 0.1))
    schedule.lr_lambdas[0].fit_to(300)
    state = schedule.state_dict()
    fresh = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(100, 1000, 0.1))
    fresh.load_state_dict(state)
    assert (fresh.lr_lambdas[0].warmup_steps, fresh.lr_lambdas[0].total_steps) == (30, 300)


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="positive"):
        TimeBudget(seconds=0)


def test_resumed_run_refits_a_schedule_an_earlier_budget_shortened(monkeypatch, tmp_path):
    """Stopped by a 30 s budget at about step 30, then resumed with room for all 100 steps: the schedule
    must stretch back to 100, not stay at the minimum learning rate from step 30 on."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)

    def trainer(seconds: float):
        return L.Trainer(max_steps=100, max_epochs=-1, logger=False, precision="32-true", enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[TimeBudget(seconds=seconds, probe_steps=3),
                                    ModelCheckpoint(dirpath=tmp_path, save_last=True)])

    first = trainer(30.0)
    first.fit(Regression(clock, 1.0, 100))
    assert first.global_step < 40
    second, model = trainer(1000.0), Regression(clock, 1.0, 100)
    second.fit(model, ckpt_path=str(tmp_path / "last.ckpt"))
    assert second.global_step == 100
    assert second.lr_scheduler_configs[0].scheduler.lr_lambdas[0].total_steps == 100
    assert model.lrs[1] > 0.5 * 0.1  # just after the resume: high on the stretched cosine, not the 0.01 floor


def test_a_run_without_any_length_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="max_steps or trainer.max_epochs"):
        fit(monkeypatch, step_seconds=1.0, seconds=10.0, max_steps=-1)
