"""load(path, overrides) -> Config: read YAML, apply key=value overrides, validate everything.

Every problem is collected and reported at once, one line each, as `dotted.key: problem`,
with the file and line where the key was written. No torch import on this path.
"""

from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from dlcli.config.schema import Config
from dlcli.config.task_checks import network_section_problems, resolve_task, resolved_section, task_problems
from dlcli.config.yamlio import parse_yaml
from dlcli.errors import ConfigError
from dlcli.registry import pydantic_problems


def registries() -> dict:
    """Section -> registry. Imported here so `dlcli --help` stays light."""
    from dlcli.components.callbacks import CALLBACKS
    from dlcli.components.losses import LOSSES
    from dlcli.components.models import MODELS
    from dlcli.components.optim.optimizers import OPTIMIZERS
    from dlcli.components.optim.schedulers import SCHEDULERS
    from dlcli.data.datasets import DATASETS
    from dlcli.data.transforms import TRANSFORMS

    return {"models": MODELS, "datasets": DATASETS, "transforms": TRANSFORMS, "losses": LOSSES,
            "optimizers": OPTIMIZERS, "schedulers": SCHEDULERS, "callbacks": CALLBACKS}


def load(path: str, overrides: Sequence[str] = ()) -> Config:
    from dlcli.config.extends import read_config

    data, lines = read_config(path)
    return validate(data, overrides, lines, path)


def validate(data: Any, overrides: Sequence[str] = (), lines: dict | None = None, source: str = "config") -> Config:
    """Validate a parsed config (plus overrides); raise ConfigError with every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (got {type(data).__name__})")
    data = apply_overrides(embedded(data) if source == "checkpoint" else data, overrides)
    if "name" not in data and source not in ("config", "checkpoint"):
        data["name"] = _stem(source)
    problems: list[str] = []
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        problems += pydantic_problems(err, "", lambda loc: _fields_at(Config, loc))
        config = None
    problems += _validate_components(data) + network_section_problems(data)
    task_problem = _task_problem(config) if config is not None else None
    if task_problem:
        problems.append(task_problem)
        config = None
    if config is not None:
        resolve_task(config, data)
        problems += _cross_checks(config) + task_problems(config)
    if problems:
        overridden = [item.partition("=")[0] for item in overrides]
        raise ConfigError([_with_line(p, lines or {}, source, overridden) for p in _one_per_key(problems)])
    if config is None:  # a config that fails validation adds its problems, raised above
        raise ConfigError("the config did not validate")
    _resolve_components(config)
    return config


def embedded(data: dict) -> dict:
    """A config embedded in a checkpoint, with the model keys added since it was written set to the
    values it was built with (a GAN's `stem: linear`), so the checkpoint rebuilds as it was trained."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    return {**data, "model": registries()["models"].legacy(model)}


def _task_problem(config: Config) -> str | None:
    from dlcli.tasks import task_class

    try:
        task_class(config.task) if config.task is not None else None
    except ConfigError as err:
        return err.problems[0]
    return None


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """`a.b=value` (value parsed as YAML) set into a copy of data."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected key.path=value, e.g. optimizer.lr=0.01")
        value, _ = parse_yaml(text, f"override {key}", at=key) if text.strip() else (None, {})
        _set_path(data, key.split("."), value, key)
    return data


def _set_path(node: Any, parts: list[str], value: Any, key: str) -> None:
    part: str | int  # a mapping key, or a list index once checked
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
                raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is not an index of the list")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]


def _components(data: dict):
    """(dotted key, registry kind, spec) for every component section present."""
    from dlcli.tasks import TASKS, task_of

    given = data.get("data")
    data_section = given if isinstance(given, dict) else {}
    if "dataset" in data_section:
        yield "data.dataset", "datasets", data_section["dataset"]
    for key, kind in [("model", "models"), ("loss", "losses")]:
        if data.get(key) is not None:
            yield key, kind, data[key]
    for key, kind in [("optimizer", "optimizers"), ("scheduler", "schedulers")]:
        spec = data.get(key)
        task = TASKS.get(task_of(data))
        if task is not None and task.networks and isinstance(spec, dict) and "name" not in spec:
            for net in task.networks:  # one per network; network_section_problems reports missing or unknown keys
                if spec.get(net) is not None:
                    yield f"{key}.{net}", kind, spec[net]
        elif spec is not None:
            yield key, kind, spec
    if isinstance(data.get("callbacks"), list):
        for i, spec in enumerate(data["callbacks"]):
            yield f"callbacks.{i}", "callbacks", spec
    for section in ("train_transforms", "eval_transforms"):
        if isinstance(data_section.get(section), list):
            for i, spec in enumerate(data_section[section]):
                yield f"data.{section}.{i}", "transforms", spec


def _validate_components(data: dict) -> list[str]:
    from dlcli.data.transforms import spec_from_yaml

    problems = []
    regs = registries()
    for key, kind, spec in _components(data):
        try:
            if kind == "transforms":
                spec = spec_from_yaml(spec)
            regs[kind].validate(spec, key)
        except ConfigError as err:
            problems += err.problems
        except ValueError as err:
            problems.append(f"{key}: {err}")
    return problems


def _resolve_components(config: Config) -> None:
    """Replace each component spec with its validated form, defaults filled in."""
    from dlcli.data.transforms import spec_from_yaml

    regs = registries()
    config.data.dataset = regs["datasets"].validate(config.data.dataset, "data.dataset")
    config.model = regs["models"].validate(config.model, "model")
    config.loss = regs["losses"].validate(config.loss, "loss")  # _resolve_task filled in a default
    config.optimizer = resolved_section(config, "optimizer", regs["optimizers"])
    config.scheduler = resolved_section(config, "scheduler", regs["schedulers"])
    config.callbacks = [regs["callbacks"].validate(c, f"callbacks.{i}") for i, c in enumerate(config.callbacks)]
    for section in ("train_transforms", "eval_transforms"):
        specs = getattr(config.data, section)
        setattr(config.data, section, [regs["transforms"].validate(spec_from_yaml(s), section) for s in specs])


LAST = "last"  # train.monitor: no metric, best.pt is the last epoch (a GAN without a quality measure)


def monitor_problems(config: Config, metrics: list[str]) -> list[str]:
    """Every monitored metric (best checkpoint, callbacks, plateau LR) must be one the run produces."""
    monitors: list[tuple[str, object]] = [("train.monitor", config.train.monitor)]
    monitors += [(f"callbacks.{i}.monitor", c.get("monitor")) for i, c in enumerate(config.callbacks)
                 if isinstance(c, dict)]
    schedules = config.scheduler if isinstance(config.scheduler, dict) else {}
    parts = {"scheduler": schedules} if "name" in schedules else \
        {f"scheduler.{net}": part for net, part in schedules.items() if isinstance(part, dict)}  # per network
    monitors += [(f"{key}.monitor", part.get("monitor", "val/loss")) for key, part in parts.items()
                 if part.get("name") == "reduce_on_plateau"]
    problems = []
    if config.train.monitor == LAST:  # no metric: callbacks must name theirs
        monitors = monitors[1:]
        problems += [f"callbacks.{i}.monitor: required with train.monitor: last (name a metric, e.g. val/loss)"
                     for i, c in enumerate(config.callbacks) if isinstance(c, dict) and c.get("monitor") is None]
    for key, metric in monitors:
        if not isinstance(metric, str):
            continue  # None means the default; other types are reported by the component's own check
        if metric not in metrics:
            hint = " (val/* metrics need data.val_split > 0)" if metric.startswith("val/") and \
                config.data.val_split == 0 else ""
            problems.append(f"{key}: unknown metric {metric!r}{hint}; available: {', '.join(metrics)}")
    return problems


def _cross_checks(config: Config) -> list[str]:
    """Checks that span sections: monitored metric names exist, and so on."""
    from dlcli.tasks import known_metrics

    problems = monitor_problems(config, known_metrics(config.task_name, config.data.val_split > 0, config=config))
    if config.data.batch_size % config.train.devices:
        problems.append(f"data.batch_size: the global batch {config.data.batch_size} does not split evenly "
                        f"over {config.train.devices} processes (train.devices)")
    from dlcli.data.transforms import normalizers

    follows_weights = not config.data.eval_transforms and isinstance(config.model, dict) and \
        config.model.get("weights")  # eval takes the weights' preprocessing (training/transfer.py)
    if not follows_weights and normalizers(config.data.train_transforms) != normalizers(config.data.eval_transforms):
        problems.append("data.eval_transforms: normalize differs from data.train_transforms; "
                        "both lists are complete pipelines, so give both the same normalize")
    return problems + _cache_problems(config)


def _cache_problems(config: Config) -> list[str]:
    """The image cache's settings are for datasets read from image files (tag image_files)."""
    from dlcli.data.datasets import DATASETS

    data, name = config.data, config.data.dataset.get("name")
    settings = (("cache_size", data.cache_size), ("skip_bad_images", data.skip_bad_images),
                ("cache", data.cache not in ("auto", "off")))
    given = [f"data.{key}" for key, value in settings if value]
    if data.cache == "off" and given:
        return [f"{given[0]}: needs the image cache, and data.cache is off (each epoch reads the files)"]
    if not given or not isinstance(name, str) or DATASETS.has_tag(name, "image_files"):
        return []
    return [f"{given[0]}: dataset {name!r} is not read from image files; only image folders are cached "
            f"(datasets: {', '.join(DATASETS.tagged('image_files'))})"]


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Allowed keys of the schema node at `loc`, for did-you-mean on unknown keys."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _unwrap(fields[part].annotation)
    return list(getattr(current, "model_fields", {}))


def _unwrap(annotation):
    """Find a BaseModel class inside Optional[...] / list[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) else ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _one_per_key(problems: list[str]) -> list[str]:
    """The schema and a registry can both object to one key; report it once."""
    seen, kept = set(), []
    for problem in problems:
        key = problem.split(":", 1)[0]
        if key not in seen:
            seen.add(key)
            kept.append(problem)
    return kept


def _with_line(problem: str, lines: dict[str, int], source: str, overridden: list[str]) -> str:
    key = problem.split(":", 1)[0]
    if any(key == o or key.startswith(o + ".") for o in overridden):
        return f"{problem}  [command-line override]"
    while key and key not in lines:
        key = key.rpartition(".")[0]
    return f"{problem}  [{source}:{lines[key]}]" if key in lines else problem


def _stem(path: str) -> str:
    from pathlib import Path

    return Path(path).stem
