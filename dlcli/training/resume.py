"""`dlcli train --resume RUN_DIR|CKPT|auto`: find the checkpoint, check it fits the config, and
put every piece of training state back so the run continues exactly where it stopped."""

from pathlib import Path

import yaml

from dlcli.errors import ConfigError
from dlcli.ranks import is_main

# Keys that may change between the interrupted run and its resumption.
MAY_CHANGE = ("train.epochs", "train.log_interval", "train.checkpoint_every", "train.keep_last",
              "train.on_nan", "train.devices", "train.compile", "train.threads",
              "train.activation_checkpointing", "output.", "logging.")
# Keys added after checkpoints were written, with the value that means what a config without them did
# (forecasters read and predicted levels): resuming such a run asks for that value.
ADDED = {"data.dataset.difference": 0, "data.dataset.seasonal_difference": 0}
# Schedules laid out over train.epochs: a new total would make the learning rate jump.
LENGTH_BOUND_SCHEDULES = ("cosine", "onecycle")


def find_checkpoint(resume: str, config, runs_root: str) -> Path | None:
    """The checkpoint to resume, or None for `auto` when no run of this config has one."""
    if resume == "auto":
        return _newest_matching(config, Path(runs_root) / config.name)
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name != "checkpoints":
        raise ConfigError(f"--resume: {checkpoint} is not inside a run directory's checkpoints/ folder")
    return checkpoint.parent.parent


def config_differences(old: dict, new: dict, written: dict | None = None) -> list[str]:
    """Dotted keys whose values differ, leaving out the keys that may change on resume. `old` is the
    checkpoint's config with today's defaults filled in; `written`, as the checkpoint holds it (a key
    of ADDED it lacks takes the value that meant what the run did)."""
    flat_new, flat_written = _flatten(new), _flatten(written if written is not None else old)
    flat_old = {**_flatten(old), **{k: v for k, v in ADDED.items() if k in flat_new and k not in flat_written}}
    keys = sorted(set(flat_old) | set(flat_new))
    # A key one side lacks and the other leaves unset or empty (train.freeze: [] against a config from
    # before the key existed) is the same setting.
    return [k for k in keys if _setting(flat_old, k) != _setting(flat_new, k) and not k.startswith(MAY_CHANGE)]


def _setting(flat: dict, key: str):
    value = flat.get(key)
    return None if value in ([], {}) else value


def filled_config(saved: dict) -> dict:
    """A checkpoint's config through today's schema and registries, every key added since it was
    written at its default (a new `train.*` switch, a model's new option), so only real changes
    differ; one that no longer validates is compared as written."""
    from dlcli.config import validate
    from dlcli.config.load import embedded

    try:
        return validate(embedded(saved), source="checkpoint").model_dump(mode="json")
    except ConfigError:
        return embedded(saved)


def load_for_resume(found: Path, config, trainer) -> dict:
    """The checkpoint to resume from, checked in full before anything in the run directory changes:
    its digest, the config it was trained with, then every section against the trainer `config`
    built (exit 4 naming the section). Read without mmap: the optimizer keeps the loaded tensors."""
    from dlcli.training import checkpoint
    from dlcli.training.resume_checks import check_resumable

    payload = checkpoint.load(found, mmap=False)
    _check_same_config(payload, config, found)
    check_resumable(payload, trainer, found)
    _check_epochs(payload, config, found)
    return payload


def _check_same_config(payload: dict, config, source: Path) -> None:
    differing = config_differences(filled_config(payload["config"]), config.model_dump(mode="json"), payload["config"])
    if differing:
        raise ConfigError(f"--resume: {source} was trained with a different config; differing keys: "
                          f"{', '.join(differing[:8])}" + (" ..." if len(differing) > 8 else ""),
                          hint="only train.epochs, train.log_interval, train.checkpoint_every, train.keep_last, "
                               "train.on_nan, train.devices, train.compile, train.threads, "
                               "train.activation_checkpointing, output.* and logging.* may change on resume")


def _check_epochs(payload: dict, config, source: Path) -> None:
    """train.epochs may change on resume, but not under a schedule laid out over the old total, and
    not to before an epoch the checkpoint is in the middle of."""
    old, new = payload["config"]["train"]["epochs"], config.train.epochs
    if old == new:
        return
    bound = [name for name in _schedule_names(config.scheduler) if name in LENGTH_BOUND_SCHEDULES]
    if bound:
        raise ConfigError(f"--resume: train.epochs cannot change ({old} -> {new}) with scheduler {bound[0]}: its "
                          f"learning-rate curve is laid out over the {old} epochs of {source}",
                          hint=f"resume with train.epochs={old}, or start a new run")
    interrupted = payload["state"]["epoch"]
    if payload["position"]["batch_in_epoch"] and new < interrupted:
        raise ConfigError(f"--resume: train.epochs={new} is before epoch {interrupted}, which {source} "
                          f"stopped in the middle of", hint=f"resume with train.epochs of at least {interrupted}")


def _schedule_names(section) -> list[str]:
    """The scheduler names in a scheduler section (one schedule, or one per GAN network)."""
    if not isinstance(section, dict):
        return []
    if "name" in section:
        return [section["name"]]
    return [name for part in section.values() for name in _schedule_names(part)]


def restore(trainer, payload: dict):
    """Load all state into a freshly built trainer; returns (resume_at batch, on_resumed callback)."""
    if trainer.ema is not None:  # the trained weights go on; `model` holds their average
        trainer.model.load_state_dict(payload["train_model"])
        trainer.ema.model.load_state_dict(payload["model"])
    else:
        trainer.model.load_state_dict(payload["model"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    keep_kernel_choice(trainer.optimizer)
    if trainer.schedule is not None:
        trainer.schedule.load_state_dict(payload["scheduler"])
    if trainer.swa is not None:  # after the optimizer and the config's schedule: it keeps their LR
        trainer.swa.load_state_dict(payload["swa"], trainer.optimizer)
    trainer.scaler.load_state_dict(payload["scaler"])
    for callback, state in zip(trainer.callbacks, payload["callbacks"]):
        callback.load_state_dict(state)
    trainer.state.load_state_dict(payload)  # counters and position in the epoch
    position, rng, state = payload["position"], payload["rng"], trainer.state
    trainer.task.load_state_dict(position.get("task") or {})  # a GAN's step count; an LM's carried state
    if state.batch_in_epoch:  # mid-epoch: redraw this epoch's shuffle, then skip what was done
        state.epoch -= 1  # the epoch loop re-enters the interrupted epoch
        trainer.generator.set_state(state.epoch_shuffle_state)  # later saves in this epoch keep it too
        state.running = trainer.task.metrics(trainer.device, full=False)
        # The saved sums cover every rank's share: rank 0 takes them up, the others start from zero
        # (in the same layout, so the ranks' metric all-reduces still match).
        state.running.load_state_dict(position["running"] if is_main() else _zeroed(position["running"]))
        return state.batch_in_epoch, lambda: _restore_streams(rng, trainer)
    trainer.generator.set_state(rng["shuffle"])
    _restore_streams(rng, trainer)
    return 0, None


def keep_kernel_choice(optimizer) -> None:
    """Loading an optimizer's state also loads the saved fused/foreach flags; keep the ones this run
    chose for its device instead (a CPU or pre-fused checkpoint resumed on CUDA, and vice versa: a
    fused flag that disagrees with how the optimizer was built breaks GradScaler's fp16 step)."""
    parts = [optimizer.generator, optimizer.discriminator] if hasattr(optimizer, "generator") else [optimizer]
    for part in parts:
        for group in part.param_groups:
            for key in ("fused", "foreach"):
                if key in part.defaults:
                    group[key] = part.defaults[key]


def _restore_streams(rng: dict, trainer) -> None:
    """The saved (rank 0's) RNG states; under DDP the other ranks then draw their own streams."""
    from dlcli.training.checkpoint import restore_rng
    from dlcli.training.distributed import rank_streams

    restore_rng(rng)
    rank_streams(trainer.config.seed, trainer.state.step)


def _zeroed(state):
    """The same nested state with every tensor and count set to zero."""
    import torch

    if isinstance(state, dict):
        return {key: _zeroed(value) for key, value in state.items()}
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    return 0 if isinstance(state, (int, float)) and not isinstance(state, bool) else state


def _newest_matching(config, base: Path) -> Path | None:
    candidates = sorted(base.glob("*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    current = config.model_dump(mode="json")
    for checkpoint in candidates:
        saved = checkpoint.parent.parent / "config.yaml"
        try:
            old = yaml.safe_load(saved.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(old, dict) and not config_differences(filled_config(old), current, old):
            return checkpoint
    return None


def _flatten(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): data}
