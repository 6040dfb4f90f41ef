"""Multi-layer perceptron: Flatten -> [Linear, (BatchNorm), act, (Dropout)]* -> Linear."""

from dlcli.components.models.registry import MODELS
from dlcli.types import Activation, Fraction, Init, NonNegativeFloat, PositiveInt


@MODELS.register("mlp", tags=("checkpointable",))
def mlp(
    input_shape,
    num_classes,
    *,
    hidden: list[PositiveInt] = [128],
    activation: Activation = "relu",
    dropout: Fraction = 0.0,
    batch_norm: bool = False,
    init: Init = "default",
    init_mean: float = 0.0,
    init_std: NonNegativeFloat = 0.1,
    zero_bias: bool = True,
):
    """Fully connected classifier over the flattened input."""
    from torch import nn

    from dlcli.components.models.layers import activation as make_act
    from dlcli.components.models.layers import flat_size, init_weights

    layers: list = [nn.Flatten()]
    width = flat_size(input_shape)
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(make_act(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    model = nn.Sequential(*layers)
    if init != "default":
        init_weights(model, init, init_mean, init_std, zero_bias)
    return model
