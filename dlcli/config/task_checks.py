"""Checks that the task, dataset, model, loss and optimizer sections fit together, and the
task-dependent defaults (task from the dataset or model, default loss and optimizer)."""

from dlcli.config.schema import Config
from dlcli.errors import ConfigError
from dlcli.registry import did_you_mean


def resolved_section(config: Config, key: str, registry):
    """A validated optimizer/scheduler spec; for a GAN always split per network (None: no scheduler)."""
    from dlcli.tasks import GAN_NETS

    spec = getattr(config, key)
    if config.task != "gan":
        return registry.validate(spec, key) if spec is not None else None
    if spec is None:
        return None
    if "name" in spec:
        spec = {net: spec for net in GAN_NETS}
    return {net: registry.validate(spec[net], f"{key}.{net}") if spec.get(net) is not None else None
            for net in GAN_NETS}


def _name(spec) -> str | None:
    """A component's name when it is a string (other values are reported by the registry check)."""
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def resolve_task(config: Config) -> None:
    """task: from the dataset when not given; loss: the task's default when not given."""
    from dlcli.tasks import DEFAULT_LOSS, task_for_dataset

    from dlcli.tasks import GAN_OPTIMIZER

    if config.task is None:
        config.task = "gan" if _name(config.model) == "gan" else task_for_dataset(_name(config.data.dataset))
    if config.loss is None:
        config.loss = {"name": DEFAULT_LOSS[config.task]}
    if config.optimizer is None:
        config.optimizer = ({"generator": GAN_OPTIMIZER, "discriminator": GAN_OPTIMIZER} if config.task == "gan"
                            else {"name": "adam"})


def task_problems(config: Config) -> list[str]:
    """The task, dataset, model and loss must fit together."""
    from dlcli.tasks import ALLOWED_LOSSES, RECURRENT_MODELS, TOKEN_DATASETS, task_for_dataset

    problems = []
    dataset, model = _name(config.data.dataset), _name(config.model)
    fits = task_for_dataset(dataset)
    if config.task == "gan" or model == "gan":
        return problems + _gan_problems(config, dataset, model)
    if isinstance(dataset, str) and config.task != fits:
        problems.append(f"task: {config.task!r} does not fit dataset {dataset!r}, which is for {fits}; "
                        f"set task: {fits} (or leave task out)")
    if dataset in TOKEN_DATASETS and isinstance(model, str) and model not in RECURRENT_MODELS:
        problems.append(f"model.name: {model!r} cannot read token ids (dataset {dataset!r}); "
                        f"use one of {', '.join(sorted(RECURRENT_MODELS))}")
    allowed = ALLOWED_LOSSES.get(config.task) or {None}
    loss = _name(config.loss)
    if loss in ALLOWED_LOSSES["gan"]:
        problems.append(f"loss.name: {loss!r} is an adversarial loss, for task gan only")
        allowed = None
    if allowed and None not in allowed and isinstance(loss, str) and loss not in allowed:
        problems.append(f"loss.name: {loss!r} does not fit task {config.task}; use {' or '.join(sorted(allowed))}")
    problems += _recurrent_problems(config)
    if config.train.tbptt and config.task != "language_model":
        problems.append("train.tbptt: carrying hidden state across windows needs task: language_model")
    if config.train.tbptt and isinstance(model, str) and model not in RECURRENT_MODELS:
        problems.append(f"train.tbptt: needs a recurrent model ({', '.join(sorted(RECURRENT_MODELS))})")
    return problems


def _gan_problems(config: Config, dataset, model) -> list[str]:
    from dlcli.tasks import GAN_LOSSES, IMAGE_DATASETS

    problems = []
    if config.task != "gan":
        problems.append("task: model 'gan' trains with task: gan (or leave task out)")
    elif isinstance(model, str) and model != "gan":
        problems.append(f"model.name: task gan needs model: {{name: gan, generator: {{...}}, discriminator: {{...}}}} "
                        f"(got {model!r})")
    if isinstance(dataset, str) and dataset not in IMAGE_DATASETS:
        problems.append(f"data.dataset.name: a GAN generates images; {dataset!r} is not an image dataset "
                        f"(use one of {', '.join(sorted(IMAGE_DATASETS))})")
    loss = _name(config.loss)
    if isinstance(loss, str) and loss not in GAN_LOSSES:
        problems.append(f"loss.name: {loss!r} does not fit task gan; use {' or '.join(sorted(GAN_LOSSES))}")
    if config.train.accumulate != 1:
        problems.append("train.accumulate: gradient accumulation is not supported for GANs; set 1")
    if config.train.l1:
        problems.append("train.l1: the L1 penalty is not supported for GANs; set 0")
    for section in ("train_transforms", "eval_transforms"):
        if any(spec["name"] == "normalize" for spec in normalizers(getattr(config.data, section))):
            problems.append(f"data.{section}: a GAN sees images in [-1, 1] (dlcli maps [0, 1] there itself); "
                            f"remove normalize")
    return problems


def _recurrent_problems(config: Config) -> list[str]:
    from dlcli.tasks import RECURRENT_MODELS

    if _name(config.model) not in RECURRENT_MODELS:
        return []
    try:  # check the model's validated values ("false" is False), not the raw YAML
        model = _models().validate(config.model, "model")
    except ConfigError:
        return []  # the model's own check reports it
    problems = []
    if model.get("bidirectional") and config.task == "language_model":
        problems.append("model.bidirectional: a language model must not see the tokens it predicts; set false")
    if model.get("tie_weights"):
        width = model["hidden_size"] * (2 if model["bidirectional"] else 1)
        if config.task != "language_model":
            problems.append("model.tie_weights: only for language models (task: language_model)")
        elif model["embedding_dim"] != width:
            problems.append(f"model.tie_weights: needs embedding_dim == hidden_size "
                            f"(got {model['embedding_dim']} and {width})")
    stride = config.data.dataset.get("stride")
    if config.train.tbptt and stride is not None and stride != config.data.dataset.get("seq_len", 128):
        problems.append("data.dataset.stride: train.tbptt needs windows that follow each other (stride = seq_len)")
    return problems


def gan_section_problems(data: dict) -> list[str]:
    """A GAN's optimizer (and scheduler) is one spec for both networks, or one per network."""
    from dlcli.tasks import GAN_NETS, task_of

    if task_of(data) != "gan":
        return []
    problems = []
    for key in ("optimizer", "scheduler"):
        spec = data.get(key)
        if not isinstance(spec, dict) or "name" in spec:
            continue
        for extra in sorted(set(spec) - set(GAN_NETS)):
            problems.append(f"{key}.{extra}: unknown key{did_you_mean(extra, GAN_NETS)}; a GAN takes "
                            f"{key}.generator and {key}.discriminator, or one {key} for both")
        if key == "optimizer":
            problems += [f"optimizer.{net}: required key is missing" for net in GAN_NETS if spec.get(net) is None]
    return problems


def _models():
    from dlcli.models import MODELS

    return MODELS


def normalizers(entries: list) -> list[dict]:
    """The normalize entries of a transform list (bad entries are reported by their own check)."""
    from dlcli.data.transforms import spec_from_yaml

    specs = []
    for entry in entries:
        try:
            specs.append(spec_from_yaml(entry))
        except (ValueError, ConfigError):
            continue  # reported by the transform's own validation
    return [spec for spec in specs if spec["name"] == "normalize"]
