"""A layer list over an allow-list of torch.nn layers, so any feed-forward net fits in YAML.

Each entry is `layer_name` or `{layer_name: args}` where args is a mapping of keyword
arguments or a single value for the first argument (`dropout: 0.25`, `linear: 128`).
Input sizes are inferred (lazy layers); `num_classes` as a size means the dataset's class count,
and a final `linear` with no size gets it too.
"""

from typing import Annotated, Any

from pydantic import AfterValidator

from dlcli.components.models.registry import MODELS
from dlcli.registry import did_you_mean

_CONV = ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode")
_NORM = ("eps", "momentum", "affine", "track_running_stats")
_POOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

# name -> (torch.nn class name, its keyword arguments, the first one taking a bare value first)
LAYERS = {
    "linear": ("LazyLinear", ("out_features", "bias")),
    "conv1d": ("LazyConv1d", _CONV),
    "conv2d": ("LazyConv2d", _CONV),
    "batchnorm1d": ("LazyBatchNorm1d", _NORM),
    "batchnorm2d": ("LazyBatchNorm2d", _NORM),
    "maxpool1d": ("MaxPool1d", _POOL),
    "maxpool2d": ("MaxPool2d", _POOL),
    "avgpool2d": ("AvgPool2d", ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    "adaptiveavgpool2d": ("AdaptiveAvgPool2d", ("output_size",)),
    "dropout": ("Dropout", ("p",)),
    "dropout2d": ("Dropout2d", ("p",)),
    "flatten": ("Flatten", ("start_dim", "end_dim")),
    "relu": ("ReLU", ()),
    "leaky_relu": ("LeakyReLU", ("negative_slope",)),
    "gelu": ("GELU", ("approximate",)),
    "sigmoid": ("Sigmoid", ()),
    "tanh": ("Tanh", ()),
    "softmax": ("Softmax", ("dim",)),
    "identity": ("Identity", ()),
}


def _check_layer(spec: Any) -> dict:
    """Normalise one entry to {name: kwargs}; reject names outside the allow-list."""
    args: Any  # YAML: None, a bare value or a mapping of kwargs
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, dict) and len(spec) == 1:
        name, args = next(iter(spec.items()))
    else:
        raise ValueError("each layer is a name or a one-key mapping {name: args}")
    if name not in LAYERS:
        raise ValueError(f"unknown layer {name!r}{did_you_mean(name, LAYERS)}; allowed: {', '.join(LAYERS)}")
    if args is None:
        args = {}
    allowed = LAYERS[name][1]
    if not isinstance(args, dict):
        if not allowed:
            raise ValueError(f"layer {name!r} takes no arguments")
        args = {allowed[0]: args}
    for key in args:
        if key not in allowed:
            raise ValueError(f"{name}: unknown argument {key!r}{did_you_mean(key, allowed)}; "
                             f"allowed: {', '.join(allowed) or 'none'}")
    return {name: args}


Layer = Annotated[Any, AfterValidator(_check_layer)]


@MODELS.register("sequential", tags=("checkpointable",))
def sequential(input_shape, num_classes, *, layers: list[Layer]):
    """Layers from an allow-list of torch.nn, in order; input sizes are inferred."""
    import torch
    from torch import nn

    from dlcli.errors import ConfigError, first_line

    built = []
    for i, layer in enumerate(layers):
        name, args = next(iter(layer.items()))
        args = {k: (num_classes if v == "num_classes" else v) for k, v in args.items()}
        if name == "linear" and i == len(layers) - 1:
            args.setdefault("out_features", num_classes)
        try:
            built.append(getattr(nn, LAYERS[name][0])(**args))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.layers.{i}: {name}: {err}") from None
    model = nn.Sequential(*built)
    try:
        with torch.no_grad():  # materialise lazy layers from the dataset's input shape (in eval mode: no
            model.eval()       # batch-norm statistics or dropout draws from the zeros)
            out = model(torch.zeros(2, *input_shape))
            model.train()
    except (RuntimeError, TypeError, ValueError) as err:
        first = first_line(err)
        raise ConfigError(f"model.layers: do not fit input shape {list(input_shape)}: {first}") from None
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise ConfigError(
            f"model.layers: output shape {list(out.shape[1:])} must be [{num_classes}] (the class count); "
            "end with `flatten` and `linear: num_classes`"
        )
    return model
