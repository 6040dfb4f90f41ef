"""Stochastic weight averaging (`train.swa`, Izmailov et al. 2018) on torch.optim.swa_utils: from
epoch `start_epoch` on, SWALR anneals the learning rate to `lr` over `anneal_epochs` epochs (the
config's scheduler stops stepping), and the weights at the end of each of those epochs join an
equal-weight average (AveragedModel). At the end of training the average's batch-norm statistics
are recomputed over the training data (update_bn) and it is saved as checkpoints/swa.pt."""

from typing import Any, Literal


class Swa:
    def __init__(self, model, start_epoch: int, lr: float, anneal_epochs: int,
                 anneal_strategy: Literal["cos", "linear"]):
        from torch.optim.swa_utils import AveragedModel

        self.average = AveragedModel(model)
        self.start_epoch, self.lr, self.anneal_epochs, self.anneal_strategy = (start_epoch, lr, anneal_epochs,
                                                                               anneal_strategy)
        self.schedule: Any = None  # SWALR, made when the first averaged epoch starts (it sets the LR as it is made)

    def owns_lr(self, epoch: int) -> bool:
        """Whether SWALR, not the config's scheduler, sets the LR during `epoch`."""
        return epoch >= self.start_epoch

    def start_epoch_if_due(self, optimizer, epoch: int) -> None:
        if self.owns_lr(epoch) and self.schedule is None:
            self._make_schedule(optimizer)

    def _make_schedule(self, optimizer) -> None:
        from torch.optim.swa_utils import SWALR

        self.schedule = SWALR(optimizer, swa_lr=self.lr, anneal_epochs=self.anneal_epochs,
                              anneal_strategy=self.anneal_strategy)

    def end_epoch(self, model, epoch: int) -> None:
        """Average this epoch's weights in and take SWALR's next step, once SWA has started."""
        if not self.owns_lr(epoch):
            return
        self.average.update_parameters(model)
        self.schedule.step()

    @property
    def averaged(self) -> int:
        return int(self.average.n_averaged)

    def recompute_batch_norm(self, batches) -> None:
        """Batch-norm running statistics of the averaged weights, from one pass over the training data."""
        from torch.optim.swa_utils import update_bn

        update_bn((batch.x for _, batch in batches.iterate(0, None)), self.average)

    def state_dict(self) -> dict:
        return {"average": self.average.state_dict(),
                "schedule": self.schedule.state_dict() if self.schedule is not None else None}

    def load_state_dict(self, state: dict, optimizer) -> None:
        """After the optimizer's own state: SWALR is remade without letting it touch the restored LR."""
        self.average.load_state_dict(state["average"])
        if state["schedule"] is not None:
            restored = [group["lr"] for group in optimizer.param_groups]
            self._make_schedule(optimizer)
            self.schedule.load_state_dict(state["schedule"])
            for group, lr in zip(optimizer.param_groups, restored):
                group["lr"] = lr

    def describe(self) -> dict:
        return {"start_epoch": self.start_epoch, "lr": self.lr, "anneal_epochs": self.anneal_epochs,
                "averaged_epochs": self.averaged}
