"""Callbacks watch epoch metrics and decide (stop, restore). They never touch the step's arithmetic."""

import copy
from typing import Literal

from dlcli.registry import Registry
from dlcli.types import NonNegativeFloat, NonNegativeInt

CALLBACKS = Registry("callback")


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return value == value  # NaN never counts as an improvement
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping:
    """Stop when `monitor` has not improved by min_delta for `patience` epochs."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float, restore_best: bool):
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights = None
        self.should_stop = False

    def on_epoch_end(self, epoch: int, metrics: dict, model) -> None:
        value = metrics[self.monitor]
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.should_stop = True

    def on_train_end(self, model) -> str | None:
        if self.should_stop and self.restore_best and self.best_weights is not None:
            model.load_state_dict(self.best_weights)
            return f"restored weights from epoch {self.best_epoch} ({self.monitor}={self.best:.4g})"
        return None

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "should_stop": self.should_stop, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.should_stop = state["wait"], state["should_stop"]
        self.best_weights = state.get("best_weights")


@CALLBACKS.register("early_stopping")
def early_stopping(default_monitor: str, mode_of, *, monitor: str | None = None,
                   mode: Literal["auto", "min", "max"] = "auto", patience: NonNegativeInt = 5,
                   min_delta: NonNegativeFloat = 0.0, restore_best: bool = True):
    """Stop training when `monitor` stops improving; optionally restore the best weights."""
    metric = monitor or default_monitor
    return EarlyStopping(metric, mode_of(metric, mode), patience, min_delta, restore_best)
