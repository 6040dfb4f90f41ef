"""The one training engine: fit / evaluate / predict for every task, on CPU or CUDA.

The step reads top to bottom. Strategies that change its arithmetic (mixed precision,
clipping, accumulation, scheduler stepping) are inline here; strategies that watch metrics
and decide (early stopping) are callbacks.
"""

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

from dlcli.callbacks import improved
from dlcli.errors import TrainingError

DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def autocast(device, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, DTYPES[precision]))


@dataclass
class Trainer:
    """Everything a run needs, plus its counters (all saved in checkpoints)."""

    model: Any
    task: Any
    optimizer: Any
    schedule: Any  # LRSchedule or None
    scaler: Any  # torch.amp.GradScaler, disabled unless fp16
    train_batches: Any
    val_batches: Any
    device: Any
    precision: str
    config: Any
    callbacks: list = field(default_factory=list)
    generator: Any = None  # drives the training-set shuffle
    step_logger: Any = None  # called with a record at each log interval (metrics.jsonl)
    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = 0
    monitor: str = "val/loss"
    mode: str = "min"

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, batch, group_size: int, should_step: bool, metrics) -> None:
        """Forward, backward (loss / micro-batches in this step), and when due clip + optimizer step."""
        from torch.nn.utils import clip_grad_norm_, clip_grad_value_

        train_cfg = self.config.train
        with autocast(self.device, self.precision):
            loss, logits = self.task.loss(self.model, batch)
        metrics.update(loss, logits, batch.y)
        self.scaler.scale(loss / group_size if group_size > 1 else loss).backward()
        if not should_step:
            return
        clip = train_cfg.grad_clip
        if clip is not None:
            self.scaler.unscale_(self.optimizer)
            if clip.max_norm is not None:
                clip_grad_norm_(self.model.parameters(), clip.max_norm, clip.norm_type)
            else:
                clip_grad_value_(self.model.parameters(), clip.max_value)
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        # fp16: a step GradScaler skipped (inf/nan grads) must not advance the LR schedule.
        skipped = scale_before is not None and self.scaler.get_scale() < scale_before
        if self.schedule is not None and not skipped:
            self.schedule.after_optimizer_step()

    def train_epoch(self, progress) -> dict:
        self.model.train()
        metrics = self.task.metrics(self.device, full=False)
        accumulate = self.config.train.accumulate
        total = len(self.train_batches)
        progress.epoch_start(self.epoch, total)
        last_full = total - total % accumulate  # a shorter last group averages over fewer batches
        for i, batch in enumerate(self.train_batches):
            group = accumulate if i < last_full else total - last_full
            self.train_step(batch, group, (i + 1) % accumulate == 0 or i + 1 == total, metrics)
            progress.advance(batch.y.shape[0])
            if self.step % self.config.train.log_interval == 0 and (i + 1) % accumulate == 0:
                running = metrics.compute("train")  # running averages over the epoch so far
                _check_finite(running["train/loss"], self.epoch, self.step)
                progress.log(self.step, running, self.lr)
                if self.step_logger is not None:
                    self.step_logger({"event": "step", "epoch": self.epoch, "step": self.step, **running,
                                      "lr": self.lr})
        result = metrics.compute("train")
        _check_finite(result["train/loss"], self.epoch, self.step)
        return result

    def end_epoch(self, metrics: dict) -> bool:
        """Update best, LR-on-plateau and callbacks; True when the monitored value improved."""
        if self.monitor not in metrics:
            raise TrainingError(f"monitored metric {self.monitor!r} not produced; "
                                f"available: {', '.join(sorted(metrics))}")
        if self.schedule is not None:
            self.schedule.after_epoch(metrics)
        for callback in self.callbacks:
            if callback.monitor not in metrics:
                raise TrainingError(f"callback monitor {callback.monitor!r} not produced; "
                                    f"available: {', '.join(sorted(metrics))}")
            callback.on_epoch_end(self.epoch, metrics, self.model)
        value = metrics[self.monitor]
        if math.isfinite(value) and improved(value, self.best, self.mode):
            self.best, self.best_epoch = value, self.epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return any(getattr(c, "should_stop", False) for c in self.callbacks)


def evaluate(model, task, batches, device, precision: str):
    """Metrics over all batches in inference mode; returns the metrics accumulator."""
    import torch

    model.eval()
    metrics = task.metrics(device)
    with torch.inference_mode(), autocast(device, precision):
        for batch in batches:
            loss, logits = task.loss(model, batch)
            metrics.update(loss, logits, batch.y)
    return metrics


def predict(model, task, inputs, device, precision: str, batch_size: int = 512):
    """Class probabilities for a tensor of preprocessed inputs."""
    import torch

    model.eval()
    outputs = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start:start + batch_size].to(device))
            outputs.append(task.predict(logits).cpu())
    return torch.cat(outputs)


def _check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"loss became {loss} at epoch {epoch}, step {step}",
            hint="likely causes: learning rate too high, fp16 overflow (try precision: bf16 or fp32), "
                 "or bad values in the data",
        )
