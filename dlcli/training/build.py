"""Composition root: a validated Config -> device, data, model, loss, optimizer, schedule, trainer."""

from dlcli.errors import ConfigError, first_line, listed
from dlcli.training.seeding import seed_everything

__all__ = ["build_model", "build_task", "build_trainer", "from_checkpoint", "seed_everything"]


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


def set_threads(threads: int | None) -> None:
    """`train.threads`: torch's CPU thread count for this process (None leaves torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


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


def build_model(config, meta, device, pretrained: bool = False):
    """The registry model for this data; channels_last for conv nets on CUDA. `pretrained`: read
    model.weights (training does; eval, infer and export load the checkpoint's weights instead)."""
    import torch

    from dlcli.components.models import MODELS
    from dlcli.tasks import task_class

    task = task_class(config.task)
    extra: tuple = ()
    options = {"load_weights": pretrained} if MODELS.has_tag(config.model["name"], "weights") else {}
    if MODELS.has_tag(config.model["name"], "reads_tokens"):  # token ids need an embedding; the task picks the head
        extra = (len(meta.vocab) if meta.vocab else None, task.recurrent_head)
    try:
        model = MODELS.build(config.model, tuple(meta.input_shape), task.num_outputs(meta), *extra, **options)
    except RuntimeError as err:  # e.g. pooling shrank the image to nothing
        raise ConfigError(f"model: does not fit input shape {meta.input_shape}: {first_line(err)}") from None
    if config.train.activation_checkpointing:
        from dlcli.components.models.checkpointing import checkpointed

        model = checkpointed(model)
    model = model.to(device)
    if device.type == "cuda" and len(meta.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_task(config, meta):
    """The task object that turns a batch into a loss and metrics."""
    from dlcli.components.losses import LOSSES
    from dlcli.tasks import task_class

    task = task_class(config.task)
    weights = config.loss.get("pos_weight")
    if weights is not None and meta is not None and len(weights) != task.num_outputs(meta):
        raise ConfigError(f"loss.pos_weight: {len(weights)} values for {task.num_outputs(meta)} outputs "
                          f"({listed(meta.class_names)})")
    return task.create(config, meta, LOSSES.build(config.loss))


def build_trainer(config, device=None):
    """Everything `dlcli train` needs, built before any file is written. Under DDP, `device` is this
    rank's, the batches are its shard of every global batch, and the model is wrapped for training."""
    import torch

    from dlcli.components.callbacks import CALLBACKS
    from dlcli.components.models.notes import collected
    from dlcli.config.load import monitor_problems
    from dlcli.data.pipeline import train_batches
    from dlcli.tasks import task_class
    from dlcli.training import transfer
    from dlcli.training.distributed import rank_streams
    from dlcli.training.engine import Trainer

    _check_devices(config)
    set_threads(config.train.threads)
    seed_everything(config.seed)  # the same on every rank: identical initial weights
    device = device or resolve_device(config.train.device)
    set_determinism(config.train.deterministic, device)
    precision = resolve_precision(config.train.precision, device)
    generator = torch.Generator().manual_seed(config.seed)
    with collected() as notes:  # what building did to the model, for the run's log
        transfer.follow_weights_preprocessing(config)
        train_b, val_b, meta = train_batches(config, device, generator, task_class(config.task))
        task = build_task(config, meta)
        if config.gan_eval is not None:  # checked before any file is written
            task.features = feature_classifier(config.gan_eval.features, device, meta, "gan_eval.features")
        problems = monitor_problems(config, task.metric_names(config, val_b is not None, len(meta.class_names)))
        if problems:
            raise ConfigError(problems)
        model = build_model(config, meta, device, pretrained=True)
        if config.init_from:
            transfer.init_from(model, config, task.num_outputs(meta))
        rank_streams(config.seed, 0)  # under DDP: identical weights, then each rank its own noise and dropout
        optimizer, schedule, scaler = task.build_optimization(config, model, len(train_b), device, precision)
        freeze = transfer.Freeze.from_config(config, model)  # after the optimizer, which holds every parameter
    if freeze is not None:
        freeze.apply(model, 1)  # before DDP wraps the model: it syncs the gradients of trainable parameters
    callbacks = [CALLBACKS.build(spec, config.train.monitor, task.metric_mode) for spec in config.callbacks]
    wrap = lambda: _compiled(_distributed_model(model, task.networks, device), task.networks, config, device)
    trainer = Trainer(model, task, optimizer, schedule, scaler, train_b, val_b, device, precision, config,
                      callbacks, generator, forward_model=wrap(), monitor=config.train.monitor,
                      mode=task.metric_mode(config.train.monitor, config.train.mode), freeze=freeze,
                      rewrap=wrap if freeze is not None and _distributed() else None, notes=notes,
                      ema=_ema(config, model), swa=_swa(config, model))
    return trainer, meta


def _distributed() -> bool:
    from dlcli.ranks import is_distributed

    return is_distributed()


def _ema(config, model):
    from dlcli.training.ema import WeightEma

    spec = config.train.ema
    return WeightEma(model, spec.decay, spec.warmup_steps, spec.every_n_steps) if spec is not None else None


def _swa(config, model):
    from dlcli.training.swa import Swa

    spec = config.train.swa
    return Swa(model, spec.start_epoch, spec.lr, spec.anneal_epochs, spec.anneal_strategy) if spec else None


def feature_classifier(path: str, device, gan_meta, key: str) -> tuple:
    """(path, config, meta, model) of the image classifier whose features score a GAN's images;
    errors name `key` (gan_eval.features, --features)."""
    import torch

    from dlcli.errors import CheckpointError, DataError
    from dlcli.tasks.gan.quality import check_features
    from dlcli.training import checkpoint

    try:  # building the classifier draws its (then replaced) initial weights: not from the run's stream
        with torch.random.fork_rng(devices=[]):
            payload, source = checkpoint.load_for_inference(path)
            config, meta, model, _, _ = from_checkpoint(payload, [], str(device), source)
    except ConfigError as err:
        raise ConfigError([f"{key}: {problem}" for problem in err.problems], err.hint) from None
    except (CheckpointError, DataError) as err:
        raise type(err)(f"{key}: {err}", err.hint) from None
    features = (path, config, meta, model)
    check_features(features, gan_meta, key)
    return features


def _check_devices(config) -> None:
    from dlcli.training.distributed import world

    size = world()[1]
    if size > 1 and config.data.batch_size % size:
        raise ConfigError(f"data.batch_size: the global batch {config.data.batch_size} does not split evenly "
                          f"over {size} processes")


def _per_network(model, networks: tuple, wrap):
    """`wrap` applied to the model, or to each of its networks (a GAN's generator and discriminator)."""
    if not networks:
        return wrap(model)
    from types import SimpleNamespace

    return SimpleNamespace(**{net: wrap(getattr(model, net)) for net in networks})


def _distributed_model(model, networks: tuple, device):
    """Under DDP, what the training step calls: DistributedDataParallel around the model (around
    each of its networks); gradients are averaged across ranks in backward. Else the model itself."""
    from dlcli.ranks import is_distributed

    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return _per_network(model, networks, lambda net: DDP(net, device_ids=ids))


def _compiled(forward, networks: tuple, config, device):
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
    if not networks:
        return torch.compile(forward)
    from types import SimpleNamespace

    return SimpleNamespace(**{net: torch.compile(getattr(forward, net)) for net in networks})


def from_checkpoint(payload: dict, overrides: list[str], device_spec: str, path="<checkpoint>"):
    """(config, meta, model, device, precision) rebuilt from a checkpoint alone; every problem names
    the checkpoint `path`: weights that do not fit or are not finite (exit 4), its config's problems."""
    from dlcli.data.pipeline import DataMeta
    from dlcli.errors import CheckpointError
    from dlcli.training.verify import check_weights, checkpoint_config, naming_checkpoint

    config = checkpoint_config(payload, overrides, path)
    try:
        meta = DataMeta.from_dict(payload["meta"])
    except TypeError as err:
        raise CheckpointError(f"{path}: section meta: {first_line(err)}") from None
    device = resolve_device(device_spec)
    set_threads(config.train.threads)
    precision = resolve_precision(config.train.precision, device)
    with naming_checkpoint(path):
        model = build_model(config, meta, device)
    check_weights(payload["model"], model, path, hint="did an override change model.*?" if overrides else None)
    model.load_state_dict(payload["model"])
    return config, meta, model, device, precision


def pattern_report(config) -> list[str]:
    """For `dlcli validate`: how many parameter tensors (and values) each train.freeze and
    optimizer.param_groups pattern matches, on the model the config builds for its data (the data is
    read, as `train` reads it, to size the model; nothing is written). A pattern that matches nothing
    is a ConfigError."""
    import torch

    from dlcli.components.names import match_groups
    from dlcli.data.pipeline import train_batches
    from dlcli.tasks import task_class

    _, _, meta = train_batches(config, torch.device("cpu"), torch.Generator(), task_class(config.task))
    named = list(build_model(config, meta, torch.device("cpu")).named_parameters())
    groups = (config.optimizer or {}).get("param_groups") or []
    lines = []
    for key, patterns in (("train.freeze", list(config.train.freeze)),
                          ("optimizer.param_groups", [group["params"] for group in groups])):
        if not patterns:
            continue
        picked, _ = match_groups(named, patterns, key)
        for i, (pattern, params) in enumerate(zip(patterns, picked)):
            lines.append(f"{key}.{i} {pattern!r}: {len(params)} of {len(named)} parameter tensors "
                         f"({sum(p.numel() for p in params):,} values)")
    return lines
