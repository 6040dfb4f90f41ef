"""Model registry: `model: {name: mlp, ...}` in YAML. Builders get (input_shape, num_outputs); those
tagged `recurrent` also (vocab_size, head)."""

from dlcli.components.models import cnn, gan, mlp, recurrent, sequential  # noqa: F401  (registers the builders)
from dlcli.components.models.registry import MODELS

__all__ = ["MODELS"]
