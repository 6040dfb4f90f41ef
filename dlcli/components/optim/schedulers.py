"""LR schedule registry. Builders get (optimizer, steps_per_epoch, epochs) and return an LRSchedule.

Epoch-based decays (step, multistep, exponential) are written as functions of the global step,
so every schedule steps once per optimizer step and a linear warm-up can sit in front of any of
them: the decay starts when the warm-up ends, so its epochs count from there. reduce_on_plateau
steps once per epoch on a monitored metric.
"""

import math
from typing import Literal

from dlcli.registry import Registry
from dlcli.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability

SCHEDULERS = Registry("scheduler")


class LRSchedule:
    """Per-step LambdaLR (or OneCycleLR) and/or per-epoch ReduceLROnPlateau, stepped by the engine."""

    def __init__(self, per_step=None, plateau=None, monitor: str | None = None, warmup_steps: int = 0):
        self.per_step, self.plateau, self.monitor = per_step, plateau, monitor
        self.warmup_steps = warmup_steps

    def after_optimizer_step(self) -> None:
        if self.per_step is None:
            return
        if self.plateau is not None and self.per_step.last_epoch >= self.warmup_steps:
            return  # warm-up done: the plateau scheduler owns the learning rate now
        self.per_step.step()

    def after_epoch(self, metrics: dict) -> None:
        warming = self.per_step is not None and self.per_step.last_epoch < self.warmup_steps
        if self.plateau is not None and self.monitor in metrics and not warming:
            self.plateau.step(metrics[self.monitor])

    def state_dict(self) -> dict:
        return {
            "per_step": self.per_step.state_dict() if self.per_step else None,
            "plateau": self.plateau.state_dict() if self.plateau else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.per_step and state.get("per_step"):
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])


def _lambda_schedule(optimizer, warmup_steps: int, decay) -> LRSchedule:
    """LambdaLR with factor warmup(step) * decay(steps after warm-up)."""
    import torch

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return warm * decay(max(0, step - warmup_steps))

    return LRSchedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor), warmup_steps=warmup_steps)


@SCHEDULERS.register("constant")
def constant(optimizer, steps_per_epoch, epochs, *, warmup_epochs: NonNegativeFloat = 0):
    """Constant learning rate (with optional linear warm-up)."""
    return _lambda_schedule(optimizer, round(warmup_epochs * steps_per_epoch), lambda step: 1.0)


@SCHEDULERS.register("step")
def step(optimizer, steps_per_epoch, epochs, *, step_size: PositiveInt = 10, gamma: PositiveFloat = 0.1,
         warmup_epochs: NonNegativeFloat = 0):
    """Multiply the LR by gamma every step_size epochs (counted after any warm-up)."""
    return _lambda_schedule(optimizer, round(warmup_epochs * steps_per_epoch),
                            lambda s: gamma ** ((s // steps_per_epoch) // step_size))


@SCHEDULERS.register("multistep")
def multistep(optimizer, steps_per_epoch, epochs, *, milestones: list[PositiveInt] = [30, 60],
              gamma: PositiveFloat = 0.1, warmup_epochs: NonNegativeFloat = 0):
    """Multiply the LR by gamma at each milestone epoch (counted after any warm-up)."""
    return _lambda_schedule(optimizer, round(warmup_epochs * steps_per_epoch),
                            lambda s: gamma ** sum(s // steps_per_epoch >= m for m in milestones))


@SCHEDULERS.register("exponential")
def exponential(optimizer, steps_per_epoch, epochs, *, gamma: PositiveFloat = 0.95,
                warmup_epochs: NonNegativeFloat = 0):
    """Multiply the LR by gamma after every epoch (after any warm-up)."""
    return _lambda_schedule(optimizer, round(warmup_epochs * steps_per_epoch),
                            lambda s: gamma ** (s // steps_per_epoch))


@SCHEDULERS.register("cosine")
def cosine(optimizer, steps_per_epoch, epochs, *, min_lr_ratio: Probability = 0.0,
           warmup_epochs: NonNegativeFloat = 0):
    """Cosine decay, per step, from the optimizer's LR to min_lr_ratio x LR at the end of training."""
    warmup = round(warmup_epochs * steps_per_epoch)
    total = max(1, int(steps_per_epoch * epochs) - warmup)  # int: a GAN generator steps batches / n_critic times

    def decay(s: int) -> float:
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))

    return _lambda_schedule(optimizer, warmup, decay)


@SCHEDULERS.register("onecycle")
def onecycle(optimizer, steps_per_epoch, epochs, *, max_lr_factor: PositiveFloat = 1.0,
             pct_start: Probability = 0.25, div_factor: PositiveFloat = 25.0,
             final_div_factor: PositiveFloat = 1e4, anneal_strategy: Literal["cos", "linear"] = "cos"):
    """One-cycle policy (warm-up built in), per step; peak LR = optimizer LR x max_lr_factor."""
    import torch

    max_lrs = [group["lr"] * max_lr_factor for group in optimizer.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=max(2, int(steps_per_epoch * epochs)), pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
        cycle_momentum=any("momentum" in g or "betas" in g for g in optimizer.param_groups)
        and not any(g.get("momentum", 1) == 0 for g in optimizer.param_groups),
    )
    return LRSchedule(sched)


@SCHEDULERS.register("reduce_on_plateau")
def reduce_on_plateau(optimizer, steps_per_epoch, epochs, *, monitor: str = "val/loss",
                      mode: Literal["auto", "min", "max"] = "auto", factor: Probability = 0.1,
                      patience: NonNegativeInt = 10, threshold: NonNegativeFloat = 1e-4,
                      min_lr: NonNegativeFloat = 0.0, warmup_epochs: NonNegativeFloat = 0):
    """Divide the LR by 1/factor when `monitor` stops improving for `patience` epochs (mode auto: the
    task's mode for that metric, filled in before building)."""
    import torch

    if mode == "auto":
        raise ValueError("reduce_on_plateau: mode 'auto' must be resolved by the task before building")
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr
    )
    warmup = round(warmup_epochs * steps_per_epoch)
    warm = _lambda_schedule(optimizer, warmup, lambda s: 1.0).per_step if warmup else None
    return LRSchedule(warm, plateau, monitor, warmup)
