"""Model registry: `model: {name: mlp, ...}` in YAML. Builders get (input_shape, num_outputs); those
tagged `recurrent` also (vocab_size, head)."""

from dlcli.registry import Registry

MODELS = Registry("model")

from dlcli.models import cnn, gan, mlp, recurrent, sequential  # noqa: E402,F401  (registers the builders)
