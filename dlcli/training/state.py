"""The trainer's mutable counters in one object: checkpoints, resume and the summary all read it
through state_dict()/load_state_dict() instead of copying fields one by one."""

from dataclasses import dataclass
from typing import Any

COUNTERS = ("epoch", "step", "best", "best_epoch", "skipped_batches")


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress, or the last one finished
    step: int = 0  # optimizer steps so far
    best: float | None = None  # best value of the monitored metric
    best_epoch: int = 0
    skipped_batches: int = 0  # on_nan: skip_batch
    seconds_before: float = 0.0  # training time of earlier sessions (a resumed run)
    # Position inside the current epoch, for an exact mid-epoch resume.
    batch_in_epoch: int = 0
    epoch_shuffle_state: Any = None  # the shuffle generator's state before this epoch's order was drawn
    running: Any = None  # this epoch's running training metrics (an accumulator)

    def state_dict(self, running: dict | None = None, seconds: float = 0.0) -> dict:
        """The checkpoint's `state` and `position` sections; `running`: the running metrics' state
        (summed over the DDP ranks), `seconds`: the run's training time so far."""
        return {"state": {**{key: getattr(self, key) for key in COUNTERS}, "seconds": round(seconds, 3)},
                "position": {"batch_in_epoch": self.batch_in_epoch, "epoch_shuffle_state": self.epoch_shuffle_state,
                             "running": running}}

    def load_state_dict(self, payload: dict) -> None:
        """Counters and position from a checkpoint (the running metrics are rebuilt by the caller)."""
        state, position = payload["state"], payload["position"]
        for key in COUNTERS:
            setattr(self, key, state.get(key, 0) if key == "skipped_batches" else state[key])
        self.seconds_before = state.get("seconds", 0.0)
        self.batch_in_epoch = position["batch_in_epoch"]
        self.epoch_shuffle_state = position["epoch_shuffle_state"]
