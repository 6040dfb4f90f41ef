"""Tasks, the extension point: each kind of work is one class in its own module (see base.py),
registered by name in registry.py. To add a task: write its module, register it with
`@register_task`, add it to the import list below, test it and document it.

This package and the tasks' class attributes import no torch, so `dlcli validate` stays fast."""

# Registration order is the order `task_of` asks each task whether it claims a config.
from dlcli.tasks import classify, forecast, gan, language_model, multilabel, regression  # noqa: F401
from dlcli.tasks.registry import TASKS, known_metrics, register_task, task_class, task_of

__all__ = ["TASKS", "known_metrics", "register_task", "task_class", "task_of"]
