"""The one training engine: fit / evaluate / predict for every task, on CPU or CUDA.

The step reads top to bottom. Strategies that change its arithmetic (mixed precision,
clipping, accumulation, scheduler stepping) are inline here; strategies that watch metrics
and decide (early stopping) are callbacks.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dlcli.components.callbacks import improved
from dlcli.compute import autocast
from dlcli.errors import TrainingError
from dlcli.training.state import TrainState


@dataclass(frozen=True)
class EpochHooks:
    """What the session around the engine does during an epoch, handed to train_epoch."""

    log: Callable[[dict], None] | None = None  # a record at each log interval (metrics.jsonl)
    after_step: Callable[[], None] | None = None  # after each optimizer step but the last (signals, saves)


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
    forward_model: Any = None  # what the step calls: the model, its DDP wrapper, or its compiled form
    monitor: str = "val/loss"
    mode: str = "min"
    state: TrainState = field(default_factory=TrainState)  # counters and position, saved in checkpoints
    grads_pending: bool = False  # a backward since the last optimizer step (false when all were skipped)
    ema: Any = None  # WeightEma (train.ema) or None
    swa: Any = None  # Swa (train.swa) or None

    @property
    def active_schedule(self):
        """The config's LR schedule, unless SWA's SWALR sets the LR in this epoch."""
        return None if self.swa is not None and self.swa.owns_lr(self.state.epoch) else self.schedule

    @property
    def evaluated_model(self):
        """What validation, callbacks and checkpoints see: the weight average with train.ema, else the model."""
        return self.ema.model if self.ema is not None else self.model
    freeze: Any = None  # train.freeze (training/transfer.py): which parameters get no gradient, by epoch
    rewrap: Callable[[], Any] | None = None  # under DDP: a new wrapper when the trainable parameters change
    notes: list = field(default_factory=list)  # what building did to the model (a new head...), for the log

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_step(self, batch, share: float, should_step: bool, metrics) -> bool:
        """Forward, backward (the loss times this batch's share of the step), and when due clip +
        optimizer step. Returns True at the end of each optimizer step, including one whose
        batches were all skipped (on_nan: skip_batch): that one leaves weights and schedule alone.

        A task with its own step (a GAN: two networks, two optimizers) runs it instead, on the
        same backward/apply_step helpers."""
        if self.task.own_step:
            return self.task.train_step(self, batch, metrics)
        with autocast(self.device, self.precision):
            # "is None", not "or": torch.compile's wrapper raises on bool() for a module without len()
            loss, logits = self.task.train_loss(self.model if self.forward_model is None else self.forward_model,
                                                batch)
        # train.l1 regularises what is minimised; reported losses (train, val, eval) stay the data loss
        objective = loss + l1_penalty(self.model, self.config.train.l1) if self.config.train.l1 else loss
        if self.skip_bad_batch(objective):
            self.state.skipped_batches += 1
            self.task.reset()  # a language model's carried hidden state may be what went non-finite
        else:
            metrics.update(loss, logits, batch)
            self.backward(objective, self.scaler, share)
            self.grads_pending = True
        if not should_step:
            return False
        if self.grads_pending:
            self.apply_step(self.optimizer, self.scaler, self.active_schedule, self.model.parameters())
        self.grads_pending = False
        self.state.step += 1
        return True

    def skip_bad_batch(self, loss) -> bool:
        """on_nan: skip_batch checks every loss on the host (one sync per step, only in that mode);
        under DDP a batch is skipped on every rank when its loss is not finite on any."""
        import torch

        from dlcli.training.distributed import any_rank

        return self.config.train.on_nan == "skip_batch" and any_rank(not torch.isfinite(loss.detach()).item())

    @staticmethod
    def backward(loss, scaler, share: float = 1.0) -> None:
        scaler.scale(loss * share if share != 1 else loss).backward()

    def apply_step(self, optimizer, scaler, schedule, parameters) -> None:
        """Clip (unscaled) gradients, step, update the scaler, clear gradients, advance the schedule."""
        from torch.nn.utils import clip_grad_norm_, clip_grad_value_

        clip = self.config.train.grad_clip
        if clip is not None:
            scaler.unscale_(optimizer)
            if clip.max_norm is not None:
                clip_grad_norm_(parameters, clip.max_norm, clip.norm_type)
            else:
                clip_grad_value_(parameters, clip.max_value)
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        # fp16: a step GradScaler skipped (inf/nan grads) must not advance the LR schedule.
        skipped = scale_before is not None and scaler.get_scale() < scale_before
        if schedule is not None and not skipped:
            schedule.after_optimizer_step()

    def train_epoch(self, progress, resume_at: int = 0, on_resumed=None, hooks: EpochHooks = EpochHooks()) -> dict:
        """One pass over the training data, from batch `resume_at` when resuming mid-epoch."""
        self.model.train()
        if self.swa is not None:
            self.swa.start_epoch_if_due(self.optimizer, self.state.epoch)
        if self.freeze is not None and self.freeze.apply(self.model, self.state.epoch) and self.rewrap is not None:
            self.forward_model = self.rewrap()  # DDP syncs only the parameters trainable when it wrapped
        if not resume_at:
            self.task.reset()
            self.state.running = self.task.metrics(self.device, full=False)
            self.state.epoch_shuffle_state = self.generator.get_state() if self.generator is not None else None
        accumulate = self.config.train.accumulate
        total = len(self.train_batches)
        progress.epoch_start(self.state.epoch, total, resume_at)
        for i, batch in self.train_batches.iterate(resume_at, on_resumed):
            share = self.step_share(i, total, accumulate)
            stepped = self.train_step(batch, share, (i + 1) % accumulate == 0 or i + 1 == total, self.state.running)
            self.state.batch_in_epoch = i + 1
            progress.advance(self.task.counted(batch), self.state.running)
            if not stepped:
                continue
            if self.ema is not None:
                self.ema.update(self.model, self.state.step)
            if self.state.step % self.config.train.log_interval == 0:
                self._log_running(progress, hooks.log)
            if hooks.after_step is not None and i + 1 < total:
                hooks.after_step()
        result = self.synced(self.state.running).compute("train")
        if result:  # empty only when on_nan: skip_batch skipped every batch so far
            check_finite(result["train/loss"], self.state.epoch, self.state.step)
        self.state.batch_in_epoch = 0
        return result

    def step_share(self, index: int, total: int, accumulate: int) -> float:
        """Batch `index`'s share of its accumulated optimizer step: its rows over the rows of its
        group, so a short last batch (or last group) weighs what it would inside one large batch."""
        if accumulate == 1:
            return 1.0
        start = index - index % accumulate
        rows = self.train_batches.batch_rows
        return rows(index) / sum(rows(j) for j in range(start, min(start + accumulate, total)))

    def _log_running(self, progress, log) -> None:
        running = self.synced(self.state.running).compute("train")  # running averages over the epoch so far
        if not running:
            return
        check_finite(running["train/loss"], self.state.epoch, self.state.step)
        progress.log(self.state.step, running, self.lr)
        if log is not None:
            log({"event": "step", "epoch": self.state.epoch, "step": self.state.step, **running,
                              "lr": self.lr})

    def synced(self, metrics):
        """Under DDP, the metrics summed over all ranks (every rank calls this at the same step)."""
        from dlcli.training.distributed import synced

        return synced(metrics, lambda: self.task.metrics(self.device, full=getattr(metrics, "full", True)))

    def end_epoch(self, metrics: dict) -> bool:
        """Update best, LR-on-plateau and callbacks; True when the monitored value improved (with
        monitor `last`, every epoch is the best so far)."""
        if self.monitor not in metrics and self.monitor != "last":
            raise TrainingError(f"monitored metric {self.monitor!r} not produced; "
                                f"available: {', '.join(sorted(metrics))}")
        if self.active_schedule is not None:
            self.active_schedule.after_epoch(metrics)
        for callback in self.callbacks:
            if callback.monitor not in metrics:
                raise TrainingError(f"callback monitor {callback.monitor!r} not produced; "
                                    f"available: {', '.join(sorted(metrics))}")
            callback.on_epoch_end(self.state.epoch, metrics, self.evaluated_model)
        if self.monitor == "last":
            self.state.best_epoch = self.state.epoch
            return True
        value = metrics[self.monitor]
        if math.isfinite(value) and improved(value, self.state.best, self.mode):
            self.state.best, self.state.best_epoch = value, self.state.epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return any(getattr(c, "should_stop", False) for c in self.callbacks)


def evaluate(model, task, batches, device, precision: str):
    """Metrics over all batches in inference mode; returns the metrics accumulator."""
    import torch

    model.eval()
    task.reset()
    metrics = task.metrics(device)
    with torch.inference_mode(), autocast(device, precision):
        for batch in batches:
            loss, logits = task.loss(model, batch)
            metrics.update(loss, logits, batch)
    return metrics


def l1_penalty(model, strength: float):
    """strength x the sum of |w| over weight matrices and kernels (not biases or norms)."""
    return strength * sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


def check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise TrainingError(
            f"loss became {loss} at epoch {epoch}, step {step}",
            hint="likely causes: learning rate too high, fp16 overflow (try precision: bf16 or fp32), "
                 "or bad values in the data",
        )
