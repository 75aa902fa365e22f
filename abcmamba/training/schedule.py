"""How many optimizer steps a run takes and the learning rate at each of them.

The learning rate warms up linearly, then follows a cosine down to
``lr * min_lr_ratio``.  With a time budget (``--max-minutes``) and no
``--max-steps``, the number of steps is unknown at the start: :class:`TimeBudget`
measures the speed of the first steps and fits the cosine to the budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from abcmamba.training.config import TrainConfig

logger = logging.getLogger(__name__)


class CosineSchedule:
    """Warm-up then cosine to ``floor``; ``total`` may be set after calibration.

    Holds only numbers: LambdaLR pickles a callable's ``__dict__`` into the
    checkpoint, and torch.load(weights_only=True) refuses arbitrary classes.
    """

    def __init__(self, config: TrainConfig, total: int, processes: int):
        self.warmup_steps = int(config.warmup_steps)
        self.floor = float(config.min_lr_ratio)
        self.total, self.processes = int(total), int(processes)

    def __call__(self, sched_step: int) -> float:
        # Accelerate steps a prepared scheduler once per process per optimizer step
        step = sched_step / self.processes
        total = max(1, self.total)
        warmup = min(self.warmup_steps, max(1, total // 10))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class StepPlan:
    """Optimizer steps per epoch, the --epochs bound, the planned total, and the
    tokens of one optimizer step over all processes."""

    steps_per_epoch: int
    epoch_steps: int
    total: int
    tokens_per_step: int


def plan_steps(config: TrainConfig, batches: int, processes: int) -> StepPlan:
    """Steps from --max-steps and --epochs, given the batches of one (unsharded) epoch."""
    steps_per_epoch = max(1, batches // (processes * config.grad_accum))
    epoch_steps = int(config.epochs * steps_per_epoch) if config.epochs > 0 else 10**9
    total = min(config.max_steps, epoch_steps) if config.max_steps > 0 else epoch_steps
    tokens = config.batch_size * config.block_size * config.grad_accum * processes
    return StepPlan(steps_per_epoch, epoch_steps, total, tokens)


@dataclass
class TimeBudget:
    """Fits the run's total steps to ``--max-minutes`` from the measured speed.

    Measured once early (step 5), then again over steps 5..25, because the
    first steps also pay for compiling and warming caches.  ``calibrated`` and
    ``t5`` live in the trainer state so that a resumed run carries on.
    """

    seconds: float
    max_total: int
    calibrated: bool = False
    t5: float | None = None
    s_per_step: float | None = None
    """The speed the total was last fitted to."""

    FIRST = 5
    SECOND = 25

    @classmethod
    def from_state(cls, config: TrainConfig, max_total: int, state: dict) -> TimeBudget:
        """The budget of ``--max-minutes`` (none when 0), resumed from ``state``."""
        minutes = config.max_minutes or 0.0
        seconds = minutes * 60 if minutes > 0 else math.inf
        return cls(
            seconds,
            max_total,
            state["calibrated"],
            state.get("t5"),
            state.get("s_per_step"),
        )

    def fit(self, step: int, elapsed: float, total: int) -> int | None:
        """The new total steps when ``step`` is a calibration step, else None."""
        if self.calibrated or self.seconds == math.inf or step >= total:
            return None
        if step == self.FIRST:
            per_step, self.t5 = elapsed / step, elapsed
        elif step == self.SECOND and self.t5 is not None:
            per_step = (elapsed - self.t5) / (self.SECOND - self.FIRST)
            self.calibrated = True
        else:
            return None
        self.s_per_step = per_step
        fit = step + int((self.seconds - elapsed) / per_step)
        fitted = max(step + 1, min(self.max_total, fit))
        logger.info(
            "%.2f s/step: %d steps fit in %.0f minutes",
            per_step,
            fitted,
            self.seconds / 60,
        )
        return fitted

    def state(self) -> dict:
        """The fields kept in the trainer state (``t5`` and the speed once measured)."""
        kept = {"calibrated": self.calibrated}
        if self.t5 is not None:
            kept["t5"] = self.t5
        if self.s_per_step is not None:
            kept["s_per_step"] = self.s_per_step
        return kept


SHORT_RUN = 0.5
"""A time-budgeted run that ends under this fraction of its planned steps warns."""


def short_run_warning(state: dict, minutes: float) -> str | None:
    """The end-of-run warning of a run the time budget stopped far short of its
    plan (``state``: the trainer state at the end), or None."""
    done, planned = state["step"], state["total_steps"]
    if minutes <= 0 or done >= SHORT_RUN * planned:
        return None
    message = (
        f"the {minutes:g}-minute time budget ran out after {done} of {planned} "
        f"planned optimizer steps ({100 * done / planned:.0f}%)"
    )
    planned_speed = state.get("s_per_step")
    if planned_speed is not None:
        actual = state["train_seconds"] / max(1, done)
        message += (
            f": the machine was slower than calibrated ({actual:.2f} s/step "
            f"against {planned_speed:.2f} s/step measured over the first steps; "
            "busy with other work?)"
        )
    else:
        message += ": the budget ran out before the speed was calibrated"
    steps = planned if planned_speed is not None else "N"
    return (
        message + "; the learning rate had not decayed and the model is weaker "
        "than planned. For the same model on any machine pass --max-steps "
        f"{steps} (no time budget)"
    )
