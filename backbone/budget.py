"""`TimeBudget`: train for as many steps as fit in a wall-clock budget, on whatever machine this is.

Step counts measured on one machine do not transfer: the same 1,000 pretraining steps take 8 minutes where
bf16 is fast and hours where it is emulated. Lightning's `max_time` alone would stop such a run on time but
in the middle of its learning-rate schedule, at a high learning rate. This callback instead measures the
pace (wall seconds per optimizer step, validation included) over the first steps, again whenever the steps
measured have doubled (batches of varying length make a first estimate rough, and a run without validation
would otherwise keep it), and after every validation, and sets the run's last step to the one the budget
reaches:

    last_step = steps_done + (budget - elapsed) / pace          (never beyond the configured max_steps)

and refits the warmup-cosine schedule (`backbone.optim.WarmupCosine.fit_to`) to end there. A fast machine
trains the configured steps; a slow one trains fewer with a complete schedule. The budget is also a hard
stop: past it, training ends at the next step whatever the estimate said.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info


class TimeBudget(Callback):
    """Args:
        seconds: wall-clock budget of this fit call, validation included (not data preparation or export).
        probe_steps: steps timed before the first estimate (the first step, which warms up, is not timed).
    """

    def __init__(self, seconds: float, probe_steps: int = 5):
        if seconds <= 0:
            raise ValueError(f"TimeBudget seconds must be positive, got {seconds}")
        self.seconds, self.probe_steps = float(seconds), max(1, int(probe_steps))
        self.report: dict = {}
        # set when training starts: its clock, the pace clock (from the end of the first step), the step count
        # of the next refit, and the steps the run plans before the budget's estimate
        self._begin = 0.0
        self._clock_step: int | None = None
        self._clock: float | None = None
        self._next_refit = self.probe_steps
        self._planned = 0

    # --- bookkeeping --------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._begin = time.perf_counter()
        self._clock_step, self._clock = None, None  # pace is timed from the end of the first step
        self._next_refit = self.probe_steps  # timed steps at the next refit: probe_steps x 1, 2, 4, ...
        planned = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        if planned == float("inf"):
            raise ValueError("TimeBudget needs a planned length to fit its schedule to: set trainer.max_steps or "
                             "trainer.max_epochs")
        self._planned = int(planned)
        # a resumed run's schedule may have been fitted to an earlier budget: plan the whole run again until
        # this budget's own pace says otherwise
        for schedule in self._schedules(trainer):
            schedule.fit_to(self._planned)
        self.report = {"budget_s": self.seconds, "planned_steps": self._planned, "fitted_steps": self._planned}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._clock is None:
            self._clock_step, self._clock = trainer.global_step, time.perf_counter()
            return
        # rank 0's clock decides for every process (each rank timing itself would let them part ways)
        if trainer.strategy.broadcast(time.perf_counter() - self._begin >= self.seconds, src=0):
            if not trainer.should_stop:
                rank_zero_info(f"time budget of {self.seconds:.0f} s spent at step {trainer.global_step}: stopping")
            trainer.should_stop = True
            self.report["stopped_by_budget"] = True
        else:
            if trainer.global_step - self._clock_step == self._next_refit:
                self._next_refit *= 2
                self._refit(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if (not trainer.sanity_checking and self._clock is not None
                and trainer.global_step - self._clock_step >= self.probe_steps):
            self._refit(trainer)

    # --- the estimate -----------------------------------------------------------------------------------
    def _pace(self, step: int) -> float:
        """Wall seconds per optimizer step since the clock started (validation time included)."""
        return (time.perf_counter() - self._clock) / max(1, step - self._clock_step)

    @staticmethod
    def _schedules(trainer) -> list:
        return [fn for config in trainer.lr_scheduler_configs for fn in getattr(config.scheduler, "lr_lambdas", [])
                if hasattr(fn, "fit_to")]

    def _refit(self, trainer) -> None:
        pace = self._pace(trainer.global_step)
        left = self.seconds - (time.perf_counter() - self._begin)
        last = min(self._planned, trainer.global_step + max(0, int(left / pace)))  # == global_step: stop now
        last = trainer.strategy.broadcast(last, src=0)
        if last == self.report["fitted_steps"]:
            return
        rank_zero_info(f"time budget {self.seconds:.0f} s: {pace:.3f} s/step here, so {last} of the "
                       f"planned {self._planned} steps; the learning-rate schedule now ends at step {last}")
        trainer.fit_loop.epoch_loop.max_steps = last
        for schedule in self._schedules(trainer):
            schedule.fit_to(last)
        self.report["fitted_steps"] = last
