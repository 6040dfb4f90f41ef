"""Before a resume changes anything in the run directory: every section restore() reads, checked
against the trainer built from the config. Each check takes the payload and the trainer and says
what is wrong, or None; none changes anything (trial loads go into copies, and the global RNG
states are put back after a trial), so a resume that fails here has left the run as it was."""

import copy
from pathlib import Path

from dlcli.errors import CheckpointError, first_line
from dlcli.training.verify import check_finite_weights, kind_problem, trial_load, weights_problem

RESUME_HINT = "the file is not one dlcli wrote for this config, or it changed since; resume from another checkpoint"


def check_resumable(payload: dict, trainer, path: Path | str) -> None:
    """A one-line CheckpointError naming the checkpoint and the first section that does not fit."""
    for section, check in SECTION_CHECKS.items():
        if (section == "train_model" and trainer.ema is None) or (section == "swa" and trainer.swa is None):
            continue  # sections only a run with train.ema (train.swa) keeps
        if section not in payload:
            problem: str | None = "missing"
        else:
            try:
                problem = check(payload, trainer)
            except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as err:
                problem = f"cannot be restored ({type(err).__name__}: {first_line(err, 'no detail')[:160]})"
        if problem:
            raise CheckpointError(f"{path}: cannot resume: section {section}: {problem}", hint=RESUME_HINT)
    check_finite_weights(payload["model"], trainer.model, path)


def model_problem(payload: dict, trainer) -> str | None:
    return weights_problem(payload["model"], trainer.model)


def train_model_problem(payload: dict, trainer) -> str | None:
    return weights_problem(payload["train_model"], trainer.model)


def swa_problem(payload: dict, trainer) -> str | None:
    saved = payload["swa"]
    if not isinstance(saved, dict) or not isinstance(saved.get("average"), dict) or "schedule" not in saved:
        return "is not an SWA state (a mapping with average and schedule)"
    return weights_problem(saved["average"], trainer.swa.average)


def optimizer_problem(payload: dict, trainer) -> str | None:
    saved, optimizer = payload["optimizer"], trainer.optimizer
    if not hasattr(optimizer, "generator"):
        return one_optimizer_problem(saved, optimizer)
    if not isinstance(saved, dict):  # a GAN: one optimizer per network
        return f"is not a mapping of the generator's and the discriminator's (got {type(saved).__name__})"
    for net in ("generator", "discriminator"):
        problem = "missing" if net not in saved else one_optimizer_problem(saved[net], getattr(optimizer, net))
        if problem:
            return f"{net}: {problem}"
    return None


def one_optimizer_problem(saved, optimizer) -> str | None:
    """torch checks the number and sizes of the parameter groups when it loads, but not the state's
    shapes: a moment of the wrong shape fails only at the first step, after the run directory changed."""
    import torch

    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        return "is not an optimizer state (a mapping with state and param_groups)"
    groups = optimizer.param_groups
    if len(saved["param_groups"]) != len(groups):
        return f"holds {len(saved['param_groups'])} parameter groups, the optimizer has {len(groups)}"
    params: dict = {}
    for i, (old, new) in enumerate(zip(saved["param_groups"], groups)):
        if not isinstance(old, dict) or not isinstance(old.get("params"), list):
            return f"param_groups.{i} is not a parameter group"
        if len(old["params"]) != len(new["params"]):
            return f"param_groups.{i} holds {len(old['params'])} parameters, the optimizer's {len(new['params'])}"
        if not _is_number(old.get("lr")):
            return f"param_groups.{i}.lr is not a number (got {old.get('lr')!r})"[:200]
        params.update(zip(old["params"], new["params"]))
    for key, entry in saved["state"].items():
        if key not in params:
            return f"state.{key} belongs to no parameter"
        if not isinstance(entry, dict):
            return f"state.{key} is not a mapping (got {type(entry).__name__})"
        for name, value in entry.items():  # moments have the parameter's shape; step counts are scalars
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[key].shape:
                return (f"state.{key}.{name} has shape {list(value.shape)}, its parameter "
                        f"{list(params[key].shape)}")
    return None


def scheduler_problem(payload: dict, trainer) -> str | None:
    schedule, saved = trainer.schedule, payload["scheduler"]
    if schedule is None:
        return None  # the config has none (and it is the run's config)
    if not isinstance(saved, dict):
        return f"is not a mapping (got {type(saved).__name__})"
    return kind_problem(trial_load(schedule, saved, keep=_shared(trainer)).state_dict(), schedule.state_dict())


def scaler_problem(payload: dict, trainer) -> str | None:
    saved = payload["scaler"]
    if not isinstance(saved, dict):
        return f"is not a mapping (got {type(saved).__name__})"
    return kind_problem(trial_load(trainer.scaler, saved).state_dict(), trainer.scaler.state_dict())


def callbacks_problem(payload: dict, trainer) -> str | None:
    saved, callbacks = payload["callbacks"], trainer.callbacks
    if not isinstance(saved, list) or len(saved) != len(callbacks):
        return f"is not a list of {len(callbacks)} callback state(s) (the config's callbacks)"
    for i, (callback, state) in enumerate(zip(callbacks, saved)):
        problem = kind_problem(trial_load(callback, state, keep=_shared(trainer)).state_dict(),
                               callback.state_dict(), str(i))
        if problem:
            return problem
    return None


def state_problem(payload: dict, trainer) -> str | None:
    """The counters TrainState.load_state_dict reads (skipped_batches and seconds are newer: optional)."""
    state = payload["state"]
    for key in ("epoch", "step", "best_epoch", "skipped_batches"):
        if key not in state:
            if key != "skipped_batches":
                return f"{key} is missing"
        elif not _is_count(state[key]):
            return f"{key} is not a count (got {state[key]!r})"[:200]
    if "best" not in state:
        return "best is missing"
    for key in ("best", "seconds"):
        if state.get(key) is not None and not _is_number(state[key]):
            return f"{key} is not a number (got {state[key]!r})"[:200]
    return None


def position_problem(payload: dict, trainer) -> str | None:
    """Where in its epoch the run stopped; mid-epoch, the epoch's shuffle and running metrics too."""
    position = payload["position"]
    if not isinstance(position, dict):
        return f"is not a mapping (got {type(position).__name__})"
    batch = position.get("batch_in_epoch")
    if not _is_count(batch):
        return f"batch_in_epoch is not a count (got {batch!r})"[:200]
    task = copy.copy(trainer.task)  # its own state: plain attributes, set on the copy
    task.load_state_dict(position.get("task") or {})
    problem = kind_problem(task.state_dict(), trainer.task.state_dict(), "task")
    if problem or not batch:
        return problem
    problem = generator_state_problem(position.get("epoch_shuffle_state"), "epoch_shuffle_state")
    if problem:
        return problem
    running = trainer.task.metrics(trainer.device, full=False)  # a fresh accumulator, thrown away
    problem = kind_problem(position.get("running"), running.state_dict(), "running", shapes=False)
    if problem:
        return problem
    running.load_state_dict(position["running"])  # fixed-size sums must fit (copy_)
    return None


def rng_problem(payload: dict, trainer) -> str | None:
    """Each generator state is set once (as restore will), then the current ones are put back."""
    from dlcli.training.checkpoint import restore_rng, rng_states

    rng = payload["rng"]
    if not isinstance(rng, dict):
        return f"is not a mapping (got {type(rng).__name__})"
    missing = [key for key in ("python", "numpy", "torch", "shuffle") if key not in rng]
    if missing:
        return f"{', '.join(missing)} missing"
    problem = generator_state_problem(rng["shuffle"], "shuffle")
    if problem:
        return problem
    current = rng_states()
    try:
        restore_rng(rng)
    finally:
        restore_rng(current)
    return None


def generator_state_problem(state, label: str) -> str | None:
    import torch

    try:
        torch.Generator().set_state(state)
    except (TypeError, RuntimeError, ValueError) as err:
        return f"{label} is not a random generator's state ({str(err).strip()[:120]})"
    return None


def _shared(trainer) -> tuple:
    """What a copy of a schedule or callback refers to but must not copy: the model and optimizers."""
    optimizer = trainer.optimizer
    parts = (optimizer.generator, optimizer.discriminator) if hasattr(optimizer, "generator") else ()
    return (trainer.model, optimizer, *parts)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value) -> bool:
    import torch

    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and value.is_floating_point()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


SECTION_CHECKS = {"model": model_problem, "train_model": train_model_problem, "optimizer": optimizer_problem,
                  "scheduler": scheduler_problem, "scaler": scaler_problem, "callbacks": callbacks_problem,
                  "state": state_problem, "position": position_problem, "rng": rng_problem, "swa": swa_problem}
