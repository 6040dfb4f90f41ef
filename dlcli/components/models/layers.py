"""Activation and weight-init helpers shared by the model builders."""

from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
    # softmax as a hidden activation is rare but allowed; as the output it is applied at inference.
    "softmax": lambda: nn.Softmax(dim=1),
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def init_weights(model: nn.Module, scheme: str, mean: float, std: float, zero_bias: bool) -> None:
    """Re-initialise Linear/Conv weights in place; 'default' keeps torch's own init."""
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        with torch.no_grad():
            init_tensor(module.weight, scheme, mean, std)
            if module.bias is not None and zero_bias:
                module.bias.zero_()


def init_tensor(weight, scheme: str, mean: float, std: float) -> None:
    """One weight tensor drawn by `scheme` (normal, uniform +-std, xavier, kaiming), in place."""
    if scheme == "normal":
        nn.init.normal_(weight, mean=mean, std=std)
    elif scheme == "uniform":
        nn.init.uniform_(weight, -std, std)
    elif scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(weight, nonlinearity="relu")


def flat_size(input_shape) -> int:
    size = 1
    for dim in input_shape:
        size *= dim
    return size
