"""Convolutional classifier: conv blocks, global or flattened features, then an MLP head."""

from typing import Literal

from dlcli.components.models.registry import MODELS
from dlcli.types import Activation, Fraction, Init, NonNegativeFloat, NonNegativeInt, Pooling, PositiveInt


@MODELS.register("cnn", tags=("checkpointable",))
def cnn(
    input_shape,
    num_classes,
    *,
    channels: list[PositiveInt] = [32, 64],
    kernel_size: PositiveInt = 3,
    stride: PositiveInt = 1,
    padding: NonNegativeInt | Literal["same"] = "same",
    convs_per_block: PositiveInt = 1,
    pooling: Pooling = "max",
    pool_size: PositiveInt = 2,
    batch_norm: bool = True,
    activation: Activation = "relu",
    dropout: Fraction = 0.0,
    global_pool: bool = False,
    head: list[PositiveInt] = [],
    head_dropout: Fraction = 0.0,
    init: Init = "default",
    init_mean: float = 0.0,
    init_std: NonNegativeFloat = 0.1,
    zero_bias: bool = True,
):
    """Blocks of conv(-BN)-act (x convs_per_block), pooling and dropout; then a head."""
    import torch
    from torch import nn

    from dlcli.components.models.layers import init_weights

    if padding == "same" and stride != 1:
        padding = kernel_size // 2  # torch rejects padding='same' with stride > 1
    conv = dict(kernel_size=kernel_size, stride=stride, padding=padding, batch_norm=batch_norm,
                activation=activation, convs_per_block=convs_per_block)
    features = _conv_blocks(input_shape[0], channels, conv, pooling, pool_size, dropout, global_pool)
    with torch.no_grad():  # infer the flattened width from the dataset's input shape; in eval mode, so
        features.eval()    # batch norm takes a 1x1 map and no running statistic or random draw moves
        width = features(torch.zeros(1, *input_shape)).shape[1]
        features.train()
    model = nn.Sequential(*features, *_head(width, head, num_classes, activation, head_dropout))
    if init != "default":
        init_weights(model, init, init_mean, init_std, zero_bias)
    return model


def _conv_blocks(in_ch: int, channels, conv: dict, pooling: str, pool_size: int, dropout: float, global_pool: bool):
    from torch import nn

    from dlcli.components.models.layers import activation as make_act

    layers: list = []
    for out_ch in channels:
        for _ in range(conv["convs_per_block"]):
            layers.append(nn.Conv2d(in_ch, out_ch, conv["kernel_size"], conv["stride"], conv["padding"],
                                    bias=not conv["batch_norm"]))
            if conv["batch_norm"]:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(make_act(conv["activation"]))
            in_ch = out_ch
        if pooling != "none":
            pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
            layers.append(pool(pool_size, ceil_mode=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
    if global_pool:
        layers.append(nn.AdaptiveAvgPool2d(1))
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


def _head(width: int, sizes, num_classes: int, activation: str, dropout: float) -> list:
    from torch import nn

    from dlcli.components.models.layers import activation as make_act

    layers: list = []
    for size in sizes:
        layers += [nn.Linear(width, size), make_act(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    return layers + [nn.Linear(width, num_classes)]
