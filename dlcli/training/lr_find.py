"""The learning-rate range test (Smith, "Cyclical Learning Rates", 2017; as Lightning's Tuner.lr_find
and fastai's lr_find): the LR grows exponentially from `lr_min` to `lr_max`, one step each, on the
training data, and the suggestion is where the smoothed loss falls fastest. The model's weights and
the optimizer's state are restored afterwards, bitwise."""

import math

from dlcli.compute import autocast
from dlcli.errors import ConfigError

SMOOTHING = 0.98  # the loss is noisy from batch to batch: an exponential average with bias correction
DIVERGED = 4.0  # stop once the smoothed loss is this many times its lowest value (as fastai and Lightning)
SKIP_START, SKIP_END = 10, 1  # the first steps say little (Lightning's defaults), the last one has diverged


def lr_range_test(trainer, lr_min: float, lr_max: float, steps: int) -> dict:
    """{lrs, losses (smoothed), suggestion, diverged} for `trainer`, whose model and optimizer are left
    exactly as they were."""
    import copy

    if trainer.task.own_step:
        raise ConfigError(f"lr-find: task {trainer.task.name} trains {len(trainer.task.networks)} networks with "
                          f"their own optimizers; the range test takes one optimizer")
    model, optimizer = trainer.model, trainer.optimizer
    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    try:
        lrs, losses, diverged = _ramp(trainer, lr_min, lr_max, steps)
    finally:
        model.load_state_dict(weights)
        optimizer.load_state_dict(optimizer_state)
    return {"lrs": lrs, "losses": losses, "suggestion": suggest(lrs, losses), "diverged": diverged,
            "steps": len(lrs)}


def _ramp(trainer, lr_min: float, lr_max: float, steps: int) -> tuple[list[float], list[float], bool]:
    """One optimizer step per LR, through the task's own loss and the engine's clipping and scaling."""
    model, optimizer = trainer.model, trainer.optimizer
    lrs: list[float] = []
    losses: list[float] = []
    average, best = 0.0, math.inf
    model.train()
    trainer.task.reset()
    for step, batch in enumerate(_batches(trainer, steps)):
        lr = lr_min * (lr_max / lr_min) ** (step / max(steps - 1, 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(trainer.device, trainer.precision):
            loss, _ = trainer.task.loss(model if trainer.forward_model is None else trainer.forward_model, batch)
        value = float(loss.detach())  # one host sync a step: fine for a test of ~100 steps
        if not math.isfinite(value):
            return lrs, losses, True
        trainer.backward(loss, trainer.scaler)
        trainer.apply_step(optimizer, trainer.scaler, None, model.parameters())
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            return lrs, losses, True
    return lrs, losses, False


def _batches(trainer, steps: int):
    """`steps` training batches, going round the training set as often as that takes."""
    given = 0
    while given < steps:
        for _, batch in trainer.train_batches.iterate(0, None):
            yield batch
            given += 1
            if given == steps:
                return


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The LR where the smoothed loss falls fastest per step of log(LR) (None: too few steps ran)."""
    start, end = SKIP_START, len(losses) - SKIP_END
    if end - start < 3:
        return None
    slopes = [losses[i + 1] - losses[i - 1] for i in range(start + 1, end - 1)]  # central differences
    return lrs[start + 1 + min(range(len(slopes)), key=slopes.__getitem__)]


def plot(result: dict, path) -> None:
    """lr_find.png: the smoothed loss against the LR (log scale), the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlcli.runs.paths import replaced_atomically

    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(result["lrs"], result["losses"])
    if result["suggestion"] is not None:
        ax.axvline(result["suggestion"], color="red", linestyle="--", label=f"suggested {result['suggestion']:.3g}")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    fig.tight_layout()
    with replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
