"""The task registry: name -> Task subclass, and how a config's task is found. Task modules register
themselves here with `@register_task`; tasks/__init__.py imports every module of the package."""

from dlcli.errors import ConfigError
from dlcli.registry import did_you_mean

TASKS: dict = {}  # name -> Task subclass


def register_task(cls):
    TASKS[cls.name] = cls
    return cls


def task_class(name: str):
    """The Task subclass registered as `name`; a ConfigError naming the choices otherwise."""
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}{did_you_mean(name, TASKS)}; available: {', '.join(TASKS)}")
    return TASKS[name]


def _name(spec):
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def task_of(data: dict) -> str:
    """The task of a raw (not yet validated) config: given; else the one that claims it (a gan model,
    a csv with `targets`); else the first task (in registration order) that reads its dataset; else
    classification."""
    from dlcli.data.datasets import DATASETS

    task = data.get("task")
    if isinstance(task, str):
        return task
    for cls in TASKS.values():
        if cls.claims(data):
            return cls.name
    given = data.get("data")
    section = given if isinstance(given, dict) else {}
    dataset = _name(section.get("dataset"))
    if dataset in DATASETS.names():
        return next((cls.name for cls in TASKS.values() if cls.reads_dataset(dataset)), "classification")
    return "classification"


def known_metrics(task: str, has_val: bool, num_classes: int | None = None, config=None) -> list[str]:
    """Metric names a run of `task` produces (val/top5 only with more than 5 classes, unknown until
    the data is read)."""
    return task_class(task).metric_names(config, has_val, num_classes)
