"""Composition root: a validated Config -> device, data, model, loss, optimizer, schedule, trainer."""

from dlcli.errors import ConfigError


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(spec: str):
    import re

    import torch

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", spec):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N (got {spec!r})")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {spec!r} requested but CUDA is not available here; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def set_determinism(deterministic: bool, device) -> None:
    """deterministic: bitwise-repeatable kernels (slower); otherwise let cuDNN pick the fastest."""
    import os

    import torch

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def resolve_precision(spec: str, device) -> str:
    """auto = bf16 on CUDA (where supported), fp32 on CPU."""
    import torch

    if spec == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return spec


def build_model(config, meta, device):
    """The registry model for this data; channels_last for conv nets on CUDA."""
    import torch

    from dlcli.models import MODELS
    from dlcli.tasks import RECURRENT_MODELS

    extra = ()
    if config.model["name"] in RECURRENT_MODELS:  # token ids need an embedding; the task picks the head
        extra = (len(meta.vocab) if meta.vocab else None, "per_step" if config.task == "language_model" else "pooled")
    try:
        model = MODELS.build(config.model, tuple(meta.input_shape), meta.num_outputs(config.task), *extra)
    except RuntimeError as err:  # e.g. pooling shrank the image to nothing
        raise ConfigError(f"model: does not fit input shape {meta.input_shape}: {str(err).splitlines()[0]}") from None
    model = model.to(device)
    if device.type == "cuda" and len(meta.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_task(config, meta):
    """The task object that turns a batch into a loss and metrics."""
    from dlcli.losses import LOSSES

    loss_fn = LOSSES.build(config.loss)
    if config.task == "language_model":
        from dlcli.tasks.language_model import LanguageModelTask

        return LanguageModelTask(loss_fn, len(meta.vocab), config.train.tbptt)
    if config.task == "forecasting":
        from dlcli.tasks.forecast import ForecastTask

        return ForecastTask(loss_fn, meta)
    if config.task == "gan":
        from dlcli.tasks.gan import GANTask

        return GANTask(loss_fn, config.model["conditional"])
    from dlcli.tasks.classify import ClassificationTask

    return ClassificationTask(loss_fn, len(meta.class_names))


def build_trainer(config, device=None):
    """Everything `dlcli train` needs, built before any file is written. Under DDP, `device` is this
    rank's, the batches are its shard of every global batch, and the model is wrapped for training."""
    import torch

    from dlcli.callbacks import CALLBACKS
    from dlcli.config.load import monitor_problems
    from dlcli.config.schema import metric_mode
    from dlcli.tasks import known_metrics
    from dlcli.data.pipeline import train_batches
    from dlcli.distributed import rank_streams
    from dlcli.engine import Trainer
    from dlcli.optim import OPTIMIZERS
    from dlcli.schedulers import SCHEDULERS

    _check_devices(config)
    seed_everything(config.seed)  # the same on every rank: identical initial weights
    device = device or resolve_device(config.train.device)
    set_determinism(config.train.deterministic, device)
    precision = resolve_precision(config.train.precision, device)
    generator = torch.Generator().manual_seed(config.seed)
    train_b, val_b, meta = train_batches(config, device, generator)
    metrics = known_metrics(config.task, val_b is not None, len(meta.class_names))
    problems = monitor_problems(config, metrics)
    if problems:
        raise ConfigError(problems)
    model = build_model(config, meta, device)
    rank_streams(config.seed, 0)  # under DDP: identical weights, then each rank its own noise and dropout
    if config.task == "gan":
        optimizer, schedule, scaler = _gan_optimization(config, model, len(train_b), device, precision)
    else:
        optimizer = OPTIMIZERS.build(config.optimizer, model)
        steps_per_epoch = -(-len(train_b) // config.train.accumulate)
        schedule = (SCHEDULERS.build(config.scheduler, optimizer, steps_per_epoch, config.train.epochs)
                    if config.scheduler else None)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    callbacks = [CALLBACKS.build(spec, config.train.monitor) for spec in config.callbacks]
    trainer = Trainer(model, build_task(config, meta), optimizer, schedule, scaler,
                      train_b, val_b, device, precision, config, callbacks, generator,
                      monitor=config.train.monitor, mode=metric_mode(config.train.monitor, config.train.mode))
    trainer.forward_model = _compiled(_distributed_model(model, config, device), config, device)
    return trainer, meta


def _check_devices(config) -> None:
    from dlcli.distributed import world

    size = world()[1]
    if size > 1 and config.data.batch_size % size:
        raise ConfigError(f"data.batch_size: the global batch {config.data.batch_size} does not split evenly "
                          f"over {size} processes")


def _distributed_model(model, config, device):
    """Under DDP, what the training step calls: DistributedDataParallel around the model (around
    each network of a GAN); gradients are averaged across ranks in backward. Else the model itself."""
    from dlcli.distributed import is_distributed

    if not is_distributed():
        return model
    from types import SimpleNamespace

    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    if config.task == "gan":
        return SimpleNamespace(generator=DDP(model.generator, device_ids=ids),
                               discriminator=DDP(model.discriminator, device_ids=ids),
                               latent_dim=model.latent_dim, raw=model)
    return DDP(model, device_ids=ids)


def _compiled(forward, config, device):
    """`train.compile: true`: what the step calls goes through torch.compile (each network of a GAN;
    the DDP wrapper when there is one). The trainer keeps the plain model for evaluation and
    checkpoints, which therefore load without torch.compile."""
    if not config.train.compile:
        return forward
    import os
    import shutil

    import torch

    # inductor builds C++ kernels on CPU ($CXX, else g++) and Triton's launchers on CUDA ($CC, else cc/gcc).
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise ConfigError("train.compile: torch.compile needs a C++ compiler on CPU (g++ or $CXX; none found); "
                          "install one or set train.compile: false")
    if device.type == "cuda" and not any(shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang")):
        raise ConfigError("train.compile: torch.compile needs a C compiler for Triton on CUDA (cc, gcc or $CC; "
                          "none found); install one or set train.compile: false")
    if config.task != "gan":
        return torch.compile(forward)
    from types import SimpleNamespace

    return SimpleNamespace(generator=torch.compile(forward.generator), latent_dim=forward.latent_dim,
                           discriminator=torch.compile(forward.discriminator))


def _gan_optimization(config, model, batches: int, device, precision: str):
    """One optimizer, schedule and GradScaler per network (the generator steps every n_critic batches)."""
    import torch

    from dlcli.optim import OPTIMIZERS
    from dlcli.schedulers import SCHEDULERS
    from dlcli.tasks.gan import Pair

    n_critic = config.loss.get("n_critic", 1)
    parts = {}
    # The generator steps on every n_critic-th batch of the whole run: batches / n_critic per epoch.
    for net, steps in (("generator", batches / n_critic), ("discriminator", batches)):
        optimizer = OPTIMIZERS.build(config.optimizer[net], getattr(model, net))
        spec = (config.scheduler or {}).get(net)
        schedule = SCHEDULERS.build(spec, optimizer, steps, config.train.epochs) if spec else None
        parts[net] = (optimizer, schedule, torch.amp.GradScaler(device.type, enabled=precision == "fp16"))
    g, d = parts["generator"], parts["discriminator"]
    schedule = Pair(g[1], d[1]) if g[1] or d[1] else None
    return Pair(g[0], d[0]), schedule, Pair(g[2], d[2])


def from_checkpoint(payload: dict, overrides: list[str], device_spec: str):
    """(config, meta, model, device, precision) rebuilt from a checkpoint alone."""
    from dlcli.config import validate
    from dlcli.data.pipeline import DataMeta

    config = validate(payload["config"], overrides, source="checkpoint")
    meta = DataMeta(**payload["meta"])
    device = resolve_device(device_spec)
    precision = resolve_precision(config.train.precision, device)
    model = build_model(config, meta, device)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        from dlcli.errors import CheckpointError

        raise CheckpointError(f"checkpoint weights do not fit the model its config builds: "
                              f"{str(err).splitlines()[0][:160]}", hint="did an override change model.*?") from None
    return config, meta, model, device, precision
