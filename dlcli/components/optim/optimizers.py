"""Optimizer registry: all torch.optim, one table row each. A row's options become the builder's
keyword-only parameters, so they are the YAML schema, as for every registry; every builder groups the
model's parameters the same way (no weight decay on biases and norms unless asked)."""

import inspect
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from dlcli.registry import Registry
from dlcli.types import Betas, NonNegativeFloat, ParamGroup, PositiveFloat, Probability

OPTIMIZERS = Registry("optimizer")
Momentum = Annotated[float, Field(ge=0, lt=1)]


def fused_on_cuda(model) -> dict:
    """On a GPU, torch's fused kernel for SGD, Adam and AdamW: one launch updates every parameter
    (the per-parameter loop is launch-bound for small models). Elsewhere torch's defaults: foreach
    on CUDA, the plain loop on CPU."""
    first = next(model.parameters(), None)
    return {"fused": True} if first is not None and first.is_cuda else {}


def param_groups(model, weight_decay: float, decay_norm_and_bias: bool, groups: list | tuple = ()) -> list[dict]:
    """The optimizer's parameter groups: those `groups` (optimizer.param_groups) pick by name, each
    with its own lr and weight decay, after the rest with the optimizer's. Within each, biases and
    norm-layer weights (ndim <= 1) get no weight decay unless `decay_norm_and_bias`."""
    from dlcli.components.names import match_groups

    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    picked, rest = match_groups(named, [group.params for group in groups], "optimizer.param_groups")
    result = _decay_split(rest, weight_decay, decay_norm_and_bias, {}) if rest or not groups else []
    for group, params in zip(groups, picked):
        extra = {"lr": group.lr} if group.lr is not None else {}
        decay = weight_decay if group.weight_decay is None else group.weight_decay
        result += [part for part in _decay_split(params, decay, decay_norm_and_bias, extra) if part["params"]]
    return result


def _decay_split(params: list, weight_decay: float, decay_norm_and_bias: bool, extra: dict) -> list[dict]:
    if decay_norm_and_bias or not weight_decay:
        return [{"params": params, "weight_decay": weight_decay, **extra}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay, **extra},
            {"params": no_decay, "weight_decay": 0.0, **extra}]


Options = dict[str, tuple[Any, Any]]  # option -> (type, default)


def _lr(default: float) -> Options:
    return {"lr": (PositiveFloat, default)}


def _adam_like(lr: float, weight_decay: float) -> Options:
    return {**_lr(lr), "betas": (Betas, (0.9, 0.999)), "eps": (PositiveFloat, 1e-8),
            "weight_decay": (NonNegativeFloat, weight_decay), "amsgrad": (bool, False)}


def _check_nesterov(options: dict) -> None:
    from dlcli.errors import ConfigError

    if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
        raise ConfigError("optimizer.nesterov: needs momentum > 0 and dampening 0")


# name: (torch.optim class, summary, options, fixed arguments, fused kernel on CUDA, check)
TABLE: dict[str, tuple[str, str, Options, dict, bool, Callable[[dict], None] | None]] = {
    "sgd": ("SGD", "Stochastic gradient descent, optionally with (Nesterov) momentum.",
            {**_lr(0.01), "momentum": (Momentum, 0.0), "dampening": (Probability, 0.0), "nesterov": (bool, False),
             "weight_decay": (NonNegativeFloat, 0.0)}, {}, True, _check_nesterov),
    "nag": ("SGD", "Nesterov accelerated gradient: SGD with Nesterov momentum.",
            {**_lr(0.01), "momentum": (Annotated[float, Field(gt=0, lt=1)], 0.9),
             "weight_decay": (NonNegativeFloat, 0.0)}, {"nesterov": True}, True, None),
    "adam": ("Adam", "Adam (L2 weight decay added to the gradient).", _adam_like(1e-3, 0.0), {}, True, None),
    "adamw": ("AdamW", "AdamW (decoupled weight decay).", _adam_like(1e-3, 0.01), {}, True, None),
    "adamax": ("Adamax", "Adamax (Adam with the infinity norm).",
               {**_lr(2e-3), "betas": (Betas, (0.9, 0.999)), "eps": (PositiveFloat, 1e-8),
                "weight_decay": (NonNegativeFloat, 0.0)}, {}, False, None),
    "adagrad": ("Adagrad", "Adagrad (per-parameter learning rates from accumulated squared gradients).",
                {**_lr(1e-2), "lr_decay": (NonNegativeFloat, 0.0), "eps": (PositiveFloat, 1e-10),
                 "initial_accumulator_value": (NonNegativeFloat, 0.0), "weight_decay": (NonNegativeFloat, 0.0)},
                {}, False, None),
    "adadelta": ("Adadelta", "Adadelta (adaptive step from running averages; lr is a scale, 1.0 by default).",
                 {**_lr(1.0), "rho": (Probability, 0.9), "eps": (PositiveFloat, 1e-6),
                  "weight_decay": (NonNegativeFloat, 0.0)}, {}, False, None),
    "rmsprop": ("RMSprop", "RMSprop.",
                {**_lr(1e-2), "alpha": (Probability, 0.99), "eps": (PositiveFloat, 1e-8), "momentum": (Momentum, 0.0),
                 "centered": (bool, False), "weight_decay": (NonNegativeFloat, 0.0)}, {}, False, None),
}


def _builder(name: str, row) -> Callable:
    torch_name, summary, options, fixed, fused, check = row

    def build(model, **given):
        import torch

        if check:
            check(given)
        groups = param_groups(model, given.pop("weight_decay"), given.pop("decay_norm_and_bias"),
                              given.pop("param_groups"))
        optimizer_class = getattr(torch.optim, torch_name)
        return optimizer_class(groups, **given, **fixed, **(fused_on_cuda(model) if fused else {}))

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(option, keyword, default=default, annotation=kind)
                   for option, (kind, default) in {**options, "decay_norm_and_bias": (bool, False),
                                                    "param_groups": (list[ParamGroup], [])}.items()]
    build.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # the registry reads it
    build.__doc__, build.__name__ = summary, name
    return build


for _name, _row in TABLE.items():
    OPTIMIZERS.register(_name)(_builder(_name, _row))
