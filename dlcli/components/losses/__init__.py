"""Losses: `loss: {name: cross_entropy, ...}` in YAML. Each builder returns fn(outputs, target, weights)."""

from dlcli.components.losses import gan, standard  # noqa: F401  (registers the builders)
from dlcli.components.losses.registry import LOSSES

__all__ = ["LOSSES"]
