"""Model registry: `model: {name: mlp, ...}` in YAML. Builders get (input_shape, num_outputs); those
tagged `reads_tokens` (recurrent nets, the transformer) also (vocab_size, head)."""

from dlcli.components.models import (  # noqa: F401  (registers the builders)
    cnn,
    gan,
    mlp,
    recurrent,
    sequential,
    timm_models,
    torchvision_models,
    transformer,
)
from dlcli.components.models.registry import MODELS

__all__ = ["MODELS"]
