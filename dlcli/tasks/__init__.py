"""Tasks, the extension point: each kind of work is one class in its own module (see base.py),
registered by name in registry.py. To add a task: write its module here with a `@register_task`
class; it is imported with the others below. Test it and document it.

This package and the tasks' class attributes import no torch, so `dlcli validate` stays fast."""

import importlib
import pkgutil

from dlcli.tasks.registry import TASKS, known_metrics, register_task, task_class, task_of

# Every module of the package, in name order: the order `task_of` asks each task whether it claims
# a config, and the first task that reads a dataset is that dataset's default (classify first).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "registry")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["TASKS", "known_metrics", "register_task", "task_class", "task_of"]
