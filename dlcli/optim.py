"""Optimizer registry: all torch.optim. Builders get the model and group its parameters."""

from typing import Annotated

from pydantic import Field

from dlcli.registry import Registry
from dlcli.types import Betas, NonNegativeFloat, PositiveFloat, Probability

OPTIMIZERS = Registry("optimizer")
Momentum = Annotated[float, Field(ge=0, lt=1)]


def fused_on_cuda(model) -> dict:
    """On a GPU, torch's fused kernel for SGD, Adam and AdamW: one launch updates every parameter
    (the per-parameter loop is launch-bound for small models). Elsewhere torch's defaults: foreach
    on CUDA, the plain loop on CPU."""
    first = next(model.parameters(), None)
    return {"fused": True} if first is not None and first.is_cuda else {}


def param_groups(model, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Split parameters so biases and norm-layer weights (ndim <= 1) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or not weight_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@OPTIMIZERS.register("sgd")
def sgd(model, *, lr: PositiveFloat = 0.01, momentum: Momentum = 0.0, dampening: Probability = 0.0,
        nesterov: bool = False, weight_decay: NonNegativeFloat = 0.0, decay_norm_and_bias: bool = False):
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""
    import torch

    from dlcli.errors import ConfigError

    if nesterov and (momentum <= 0 or dampening != 0):
        raise ConfigError("optimizer.nesterov: needs momentum > 0 and dampening 0")
    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                           **fused_on_cuda(model))


@OPTIMIZERS.register("nag")
def nag(model, *, lr: PositiveFloat = 0.01, momentum: Annotated[float, Field(gt=0, lt=1)] = 0.9,
        weight_decay: NonNegativeFloat = 0.0, decay_norm_and_bias: bool = False):
    """Nesterov accelerated gradient: SGD with Nesterov momentum."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, **fused_on_cuda(model))


@OPTIMIZERS.register("adam")
def adam(model, *, lr: PositiveFloat = 1e-3, betas: Betas = (0.9, 0.999), eps: PositiveFloat = 1e-8,
         weight_decay: NonNegativeFloat = 0.0, amsgrad: bool = False, decay_norm_and_bias: bool = False):
    """Adam (L2 weight decay added to the gradient)."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, amsgrad=amsgrad, **fused_on_cuda(model))


@OPTIMIZERS.register("adamw")
def adamw(model, *, lr: PositiveFloat = 1e-3, betas: Betas = (0.9, 0.999), eps: PositiveFloat = 1e-8,
          weight_decay: NonNegativeFloat = 0.01, amsgrad: bool = False, decay_norm_and_bias: bool = False):
    """AdamW (decoupled weight decay)."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, amsgrad=amsgrad, **fused_on_cuda(model))


@OPTIMIZERS.register("adamax")
def adamax(model, *, lr: PositiveFloat = 2e-3, betas: Betas = (0.9, 0.999), eps: PositiveFloat = 1e-8,
           weight_decay: NonNegativeFloat = 0.0, decay_norm_and_bias: bool = False):
    """Adamax (Adam with the infinity norm)."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.Adamax(groups, lr=lr, betas=betas, eps=eps)


@OPTIMIZERS.register("adagrad")
def adagrad(model, *, lr: PositiveFloat = 1e-2, lr_decay: NonNegativeFloat = 0.0, eps: PositiveFloat = 1e-10,
            initial_accumulator_value: NonNegativeFloat = 0.0, weight_decay: NonNegativeFloat = 0.0,
            decay_norm_and_bias: bool = False):
    """Adagrad (per-parameter learning rates from accumulated squared gradients)."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.Adagrad(groups, lr=lr, lr_decay=lr_decay, eps=eps,
                               initial_accumulator_value=initial_accumulator_value)


@OPTIMIZERS.register("adadelta")
def adadelta(model, *, lr: PositiveFloat = 1.0, rho: Probability = 0.9, eps: PositiveFloat = 1e-6,
             weight_decay: NonNegativeFloat = 0.0, decay_norm_and_bias: bool = False):
    """Adadelta (adaptive step from running averages; lr is a scale, 1.0 by default)."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.Adadelta(groups, lr=lr, rho=rho, eps=eps)


@OPTIMIZERS.register("rmsprop")
def rmsprop(model, *, lr: PositiveFloat = 1e-2, alpha: Probability = 0.99, eps: PositiveFloat = 1e-8,
            momentum: Momentum = 0.0, centered: bool = False, weight_decay: NonNegativeFloat = 0.0,
            decay_norm_and_bias: bool = False):
    """RMSprop."""
    import torch

    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered)
