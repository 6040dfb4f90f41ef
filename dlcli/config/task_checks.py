"""Checks that the task, dataset, model, loss and optimizer sections fit together, and the
task-dependent defaults (the task itself, its default loss and optimizer). Everything here asks
the task class and the registries' tags; no name lists."""

from dlcli.config.schema import Config
from dlcli.errors import ConfigError


def _task(config: Config):
    from dlcli.tasks import task_class

    return task_class(config.task_name)


def resolved_section(config: Config, key: str, registry):
    """A validated optimizer/scheduler spec; for a task with several networks (a GAN) always split
    per network (None: no scheduler)."""
    networks = _task(config).networks
    spec = getattr(config, key)
    if not networks:
        return registry.validate(spec, key) if spec is not None else None
    if spec is None:
        return None
    if "name" in spec:
        spec = {net: spec for net in networks}
    return {net: registry.validate(spec[net], f"{key}.{net}") if spec.get(net) is not None else None
            for net in networks}


def _name(spec) -> str | None:
    """A component's name when it is a string (other values are reported by the registry check)."""
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def resolve_task(config: Config, data: dict) -> None:
    """task: claimed by a task or the dataset's when not given; loss and optimizer: the task's defaults."""
    from dlcli.tasks import task_of

    if config.task is None:
        config.task = task_of(data)
    task = _task(config)
    if config.loss is None:
        config.loss = {"name": task.default_loss}
    if config.optimizer is None:
        config.optimizer = task.default_optimizer()
    if "monitor" not in config.train.model_fields_set:
        config.train.monitor = task.default_monitor(config)


def task_problems(config: Config) -> list[str]:
    """The task, dataset, model and loss must fit together: the task names the data it reads, its
    losses and its own models; the registries' tags say what each dataset and model is."""
    from dlcli.components.losses import LOSSES
    from dlcli.components.models import MODELS
    from dlcli.data.datasets import DATASETS

    task = _task(config)
    problems = []
    dataset, model, loss = _name(config.data.dataset), _name(config.model), _name(config.loss)
    if dataset in DATASETS.names() and not task.reads_dataset(dataset):
        fits = [other.name for other in _tasks() if other.reads_dataset(dataset)]
        problems.append(task.dataset_mismatch(dataset) or
                        f"task: {task.name!r} does not fit dataset {dataset!r}, which is for {' or '.join(fits)}; "
                        f"set task: {fits[0]} (or leave task out)")
    if task.models and model in MODELS.names() and model not in task.models:
        problems.append(f"model.name: task {task.name} needs model: {{name: {task.models[0]}, ...}} (got {model!r})")
    owners = [other.name for other in _tasks() if other is not task and model in other.models]
    if owners:
        problems.append(f"task: model {model!r} trains with task: {owners[0]} (or leave task out)")
    if (DATASETS.has_tag(dataset, "reads_tokens") and model in MODELS.names()
            and not MODELS.has_tag(model, "reads_tokens")):
        problems.append(f"model.name: {model!r} cannot read token ids (dataset {dataset!r}); "
                        f"use one of {', '.join(MODELS.tagged('reads_tokens'))}")
    if loss in LOSSES.names() and loss not in task.losses:
        users = [other.name for other in _tasks() if loss in other.losses]
        only = f" (a loss for task {' or '.join(users)})" if users else ""
        problems.append(f"loss.name: {loss!r} does not fit task {task.name}{only}; use {' or '.join(task.losses)}")
    if config.train.threshold is not None and not task.uses_threshold:
        thresholding = " or ".join(other.name for other in _tasks() if other.uses_threshold)
        problems.append(f"train.threshold: only for tasks that threshold probabilities ({thresholding}); "
                        f"task {task.name} does not")
    if config.gan_eval is not None and "features" not in task.eval_options:
        problems.append(f"gan_eval: only for GANs (task {task.name} generates no images)")
    problems += _mixup_problems(config, task) + _averaging_problems(config, task) + _fold_problems(config)
    if config.data.class_weights is not None and not task.class_weights:
        problems.append(f"data.class_weights: only for classification (task {task.name} has no classes to weigh)")
    return problems + _recurrent_problems(config, task) + _builder_problems(config, task) + task.problems(config)


def _mixup_problems(config: Config, task) -> list[str]:
    from dlcli.data.datasets import DATASETS

    mixup, dataset = config.data.mixup, config.data.dataset.get("name")
    if mixup is None:
        return []
    if not task.mixes:
        mixing = " or ".join(other.name for other in _tasks() if other.mixes)
        return [f"data.mixup: only for {mixing} (task {task.name} does not mix its batches)"]
    if DATASETS.has_tag(dataset, "reads_tokens"):
        return [f"data.mixup: dataset {dataset!r} gives token ids, which cannot be mixed"]
    if mixup.cutmix_alpha > 0 and not DATASETS.has_tag(dataset, "image"):
        return [f"data.mixup.cutmix_alpha: cutmix pastes image boxes; dataset {dataset!r} holds no images"]
    return []


def _fold_problems(config: Config) -> list[str]:
    from dlcli.components.models import MODELS
    from dlcli.data.datasets import DATASETS

    model = config.model.get("name")
    recomputes = model not in MODELS.names() or MODELS.has_tag(model, "checkpointable")
    if config.train.activation_checkpointing and not recomputes:
        return [f"train.activation_checkpointing: model {model!r} has no layers or blocks to recompute; "
                f"{', '.join(MODELS.tagged('checkpointable'))} take it"]

    dataset = config.data.dataset.get("name")
    streams = DATASETS.has_tag(dataset, "token_stream") or DATASETS.has_tag(dataset, "series")
    if config.data.folds is not None and streams:
        return [f"data.folds: dataset {dataset!r} is one stream split by position (its end validates); "
                f"k-fold needs separate samples"]
    return []


def _averaging_problems(config: Config, task) -> list[str]:
    swa, train = config.train.swa, config.train
    if swa is None:
        return []
    if task.own_step:
        return [f"train.swa: task {task.name} trains {len(task.networks)} networks with their own optimizers; "
                f"SWA averages one"]
    if train.ema is not None:
        return ["train.swa: averages the weights too; use train.swa or train.ema, not both"]
    if swa.start_epoch > train.epochs:
        return [f"train.swa.start_epoch: {swa.start_epoch} is after the last epoch (train.epochs: {train.epochs})"]
    return []


def _tasks() -> list:
    from dlcli.tasks import TASKS

    return list(TASKS.values())


def _recurrent_problems(config: Config, task) -> list[str]:
    from dlcli.components.models import MODELS

    model_name = _name(config.model)
    problems = []
    if config.train.tbptt and task.recurrent_head != "per_step":
        problems.append("train.tbptt: carrying hidden state across windows needs task: language_model")
    if config.train.tbptt and model_name in MODELS.names() and not MODELS.has_tag(model_name, "recurrent"):
        problems.append(f"train.tbptt: needs a recurrent model ({', '.join(MODELS.tagged('recurrent'))})")
    if not MODELS.has_tag(model_name, "recurrent"):
        return problems
    try:  # check the model's validated values ("false" is False), not the raw YAML
        model = MODELS.validate(config.model, "model")
    except ConfigError:
        return problems  # the model's own check reports it
    per_step = task.recurrent_head == "per_step"
    if model.get("bidirectional") and per_step:
        problems.append("model.bidirectional: a language model must not see the tokens it predicts; set false")
    if model.get("tie_weights"):
        width = model["hidden_size"] * (2 if model["bidirectional"] else 1)
        if not per_step:
            problems.append("model.tie_weights: only for language models (task: language_model)")
        elif model["embedding_dim"] != width:
            problems.append(f"model.tie_weights: needs embedding_dim == hidden_size "
                            f"(got {model['embedding_dim']} and {width})")
    stride = config.data.dataset.get("stride")
    if config.train.tbptt and stride is not None and stride != config.data.dataset.get("seq_len", 128):
        problems.append("data.dataset.stride: train.tbptt needs windows that follow each other (stride = seq_len)")
    return problems


def _builder_problems(config: Config, task) -> list[str]:
    """Checks across one component's own parameters (its builder's `config_problems`: the
    transformer's d_model divisible by n_heads, a text dataset's vocab_size only for level bpe), on
    the validated values."""
    from dlcli.components.models import MODELS
    from dlcli.data.datasets import DATASETS

    problems = []
    for registry, spec, key in ((MODELS, config.model, "model"), (DATASETS, config.data.dataset, "data.dataset")):
        name = _name(spec)
        check = getattr(registry.entry(name).builder, "config_problems", None) if name in registry.names() else None
        if check is None:
            continue
        try:
            params = registry.validate(spec, key)
        except ConfigError:
            continue  # the component's own check reports it
        problems += check(params, task)
    return problems


def network_section_problems(data: dict) -> list[str]:
    """A task with several networks takes one optimizer (and scheduler) for all, or one per network."""
    from dlcli.tasks import TASKS, task_of

    task = TASKS.get(task_of(data))
    if task is None or not task.networks:
        return []
    problems = []
    for key in ("optimizer", "scheduler"):
        spec = data.get(key)
        if isinstance(spec, dict) and "name" not in spec:
            problems += task.section_problems(key, spec)
    return problems
