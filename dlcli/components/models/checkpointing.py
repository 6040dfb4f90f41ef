"""Activation checkpointing (`train.activation_checkpointing`) for models that are a sequence of
layers (mlp, cnn, sequential; the transformer recomputes each of its blocks itself): in training,
the layers run in about sqrt(n) segments whose inner activations are not kept but recomputed during
backward (torch.utils.checkpoint), trading one more forward pass for memory. Weights, state_dict
keys, evaluation and export are unchanged.

Batch norm would update its running statistics twice (once more when a segment is recomputed): they
are put back after each recomputation. Dropout draws the same masks again (the RNG state is replayed).
Imported at run time only (by training.build): it imports torch."""

import contextlib
import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint


class Checkpointed(nn.Sequential):
    def forward(self, x):
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        layers = list(self)
        size = math.ceil(len(layers) / max(2, round(math.sqrt(len(layers)))))
        segments = [nn.Sequential(*layers[i:i + size]) for i in range(0, len(layers), size)]
        for segment in segments[:-1]:  # the last one's activations are needed by backward at once anyway
            x = checkpoint(segment, x, use_reentrant=False,
                           context_fn=lambda seg=segment: (contextlib.nullcontext(), statistics_frozen(seg)))
        return segments[-1](x)


def checkpointed(model):
    """The same layers in a Sequential that checkpoints in training; a model with blocks of its own
    (the transformer) recomputes each block. A ConfigError for other models."""
    from dlcli.errors import ConfigError

    if hasattr(model, "checkpoint_blocks"):
        model.checkpoint_blocks = True
        return model
    if type(model) is not nn.Sequential:
        raise ConfigError(f"train.activation_checkpointing: model {type(model).__name__} is not a sequence of "
                          f"layers (mlp, cnn, sequential)")
    return Checkpointed(*model)


@contextlib.contextmanager
def statistics_frozen(model):
    """While a segment is recomputed: batch norm's running statistics are put back afterwards, so
    they move once per step, as without checkpointing (the recomputation itself runs as the first pass)."""
    buffers = [b for m in model.modules() if isinstance(m, _BatchNorm) for b in m.buffers()]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved):
                buffer.copy_(value)
