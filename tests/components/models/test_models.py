"""Model builders: mlp, cnn and sequential, built through the MODELS registry."""

from typing import get_args

import pytest
import torch
from torch import nn

from dlcli.components.models import MODELS
from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.types import Activation, Init
from tests.conftest import tiny_digits_config


def build(spec: dict, input_shape=(8,), num_classes=3):
    """Validate the spec like a config would, then build it."""
    return MODELS.build(MODELS.validate(spec, "model"), tuple(input_shape), num_classes)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def fit_steps(model, x, y, steps=30, lr=0.01):
    """Adam on one fixed batch; returns (first loss, last loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    return x, y


# ---------------------------------------------------------------- mlp


def test_mlp_structure():
    model = build({"name": "mlp", "hidden": [16, 8], "batch_norm": True, "dropout": 0.2}, (2, 4), 5)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 8), (8, 5)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model) == 2
    assert sum(isinstance(m, nn.Dropout) for m in model) == 2
    assert model(torch.zeros(4, 2, 4)).shape == (4, 5)


def test_mlp_without_hidden_layers_is_linear():
    model = build({"name": "mlp", "hidden": []}, (8,), 3)
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear]


@pytest.mark.parametrize("init", get_args(Init))
@pytest.mark.parametrize("activation", get_args(Activation))
def test_mlp_every_activation_and_init_trains(activation, init, batch):
    torch.manual_seed(0)
    model = build({"name": "mlp", "hidden": [16], "activation": activation, "init": init})
    x, y = batch
    first, last = fit_steps(model, x, y)
    # every combination learns; a softmax *hidden* activation learns slowest (about -8% in 30 steps)
    assert last < first * 0.95, (activation, init, first, last)


def test_normal_init_std_and_zero_bias():
    torch.manual_seed(0)
    model = build({"name": "mlp", "hidden": [256, 256], "init": "normal", "init_std": 0.1}, (64,), 10)
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        assert layer.weight.std().item() == pytest.approx(0.1, rel=0.05)
        assert layer.weight.mean().item() == pytest.approx(0.0, abs=0.01)
        assert torch.all(layer.bias == 0)


def test_normal_init_mean_and_kept_bias():
    torch.manual_seed(0)
    model = build({"name": "mlp", "hidden": [256], "init": "normal", "init_mean": 0.5, "init_std": 0.01,
                   "zero_bias": False}, (64,), 10)
    first = model[1]
    assert first.weight.mean().item() == pytest.approx(0.5, abs=0.01)
    assert first.bias.abs().sum() > 0  # zero_bias: false keeps torch's bias init


def test_uniform_init_bounds():
    torch.manual_seed(0)
    model = build({"name": "mlp", "hidden": [128], "init": "uniform", "init_std": 0.05}, (64,), 10)
    w = model[1].weight
    assert w.abs().max() <= 0.05
    assert w.abs().max() > 0.04


def test_default_init_is_torch_init():
    torch.manual_seed(0)
    a = build({"name": "mlp", "hidden": [16]})
    torch.manual_seed(0)
    b = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------- cnn

IMG = (1, 8, 8)


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_cnn_defaults_shape_and_layers():
    model = build({"name": "cnn", "channels": [4, 8]}, IMG, 10)
    assert count(model, nn.Conv2d) == 2
    assert count(model, nn.BatchNorm2d) == 2
    assert count(model, nn.MaxPool2d) == 2
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))  # BN: no conv bias
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linear) == 1 and linear[0].in_features == 8 * 2 * 2  # 8x8 -> 4x4 -> 2x2
    assert model(torch.zeros(3, *IMG)).shape == (3, 10)


@pytest.mark.parametrize("pooling,cls,width", [("max", nn.MaxPool2d, 8 * 2 * 2), ("avg", nn.AvgPool2d, 8 * 2 * 2),
                                               ("none", None, 8 * 8 * 8)])
def test_cnn_pooling(pooling, cls, width):
    model = build({"name": "cnn", "channels": [4, 8], "pooling": pooling}, IMG, 10)
    assert count(model, nn.MaxPool2d) == (2 if pooling == "max" else 0)
    assert count(model, nn.AvgPool2d) == (2 if pooling == "avg" else 0)
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == width
    assert model(torch.randn(2, *IMG)).shape == (2, 10)


def test_cnn_without_batch_norm_has_conv_bias():
    model = build({"name": "cnn", "channels": [4], "batch_norm": False}, IMG, 3)
    assert count(model, nn.BatchNorm2d) == 0
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.bias is not None


def test_cnn_global_pool_and_head():
    model = build({"name": "cnn", "channels": [4, 8], "global_pool": True, "head": [16, 12],
                   "head_dropout": 0.3, "dropout": 0.1, "convs_per_block": 2}, IMG, 10)
    assert count(model, nn.AdaptiveAvgPool2d) == 1
    assert count(model, nn.Conv2d) == 4
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 12), (12, 10)]
    assert count(model, nn.Dropout) == 2 + 2  # one per block, one per head layer
    assert model(torch.randn(2, *IMG)).shape == (2, 10)


def test_cnn_stride_2_halves_resolution():
    model = build({"name": "cnn", "channels": [4, 8], "stride": 2, "pooling": "none"}, IMG, 10)
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == 8 * 2 * 2
    assert model(torch.randn(2, *IMG)).shape == (2, 10)


def test_cnn_whose_features_shrink_to_one_pixel_builds_and_leaves_batch_norm_untouched():
    """Sizing the head runs one image through the blocks: batch norm must not see it as training data
    (a 1x1 map of one image has no variance to take)."""
    model = build({"name": "cnn", "channels": [4, 8, 16], "batch_norm": True}, IMG, 10)  # 8 -> 4 -> 2 -> 1
    assert model.training
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert norm.num_batches_tracked == 0 and torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    assert model(torch.randn(4, *IMG)).shape == (4, 10)


def test_cnn_rgb_and_non_square_input():
    model = build({"name": "cnn", "channels": [4], "kernel_size": 5}, (3, 12, 6), 4)
    assert model(torch.randn(2, 3, 12, 6)).shape == (2, 4)


def test_cnn_init_normal():
    torch.manual_seed(0)
    model = build({"name": "cnn", "channels": [32, 64], "batch_norm": False, "init": "normal", "init_std": 0.1},
                  IMG, 10)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.numel() > 1000:
            assert m.weight.std().item() == pytest.approx(0.1, rel=0.1)
            assert torch.all(m.bias == 0)


def test_cnn_trains(batch):
    torch.manual_seed(0)
    model = build({"name": "cnn", "channels": [4, 8], "head": [16]}, IMG, 3)
    x = torch.randn(32, *IMG, generator=torch.Generator().manual_seed(1))
    first, last = fit_steps(model, x, batch[1])
    assert last < first * 0.9


# ---------------------------------------------------------------- sequential

MNIST_LAYERS = [
    {"conv2d": {"out_channels": 32, "kernel_size": 3}}, "relu",
    {"conv2d": {"out_channels": 64, "kernel_size": 3}}, "relu",
    {"maxpool2d": 2}, {"dropout": 0.25}, "flatten",
    {"linear": 128}, "relu", {"dropout": 0.5}, {"linear": "num_classes"},
]


def pytorch_mnist_example_net():
    """The net of pytorch/examples mnist/main.py, written by hand."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )


def test_sequential_expresses_the_pytorch_mnist_example():
    model = build({"name": "sequential", "layers": MNIST_LAYERS}, (1, 28, 28), 10)
    reference = pytorch_mnist_example_net()
    assert n_params(reference) == 1_199_882
    assert n_params(model) == 1_199_882
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [tuple(p.shape) for p in reference.parameters()]
    assert [type(m) for m in model] == [type(m) for m in reference]  # lazy layers materialised
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_sequential_mnist_net_validates_as_a_config():
    config = validate(tiny_digits_config(model={"name": "sequential", "layers": MNIST_LAYERS}))
    assert config.model["layers"][0] == {"conv2d": {"out_channels": 32, "kernel_size": 3}}
    assert config.model["layers"][1] == {"relu": {}}


def test_sequential_final_linear_defaults_to_num_classes():
    model = build({"name": "sequential", "layers": ["flatten", {"linear": 16}, "relu", "linear"]}, (8,), 7)
    assert model(torch.zeros(2, 8)).shape == (2, 7)


def test_sequential_unknown_layer_fails_validation_with_did_you_mean():
    bad = tiny_digits_config(model={"name": "sequential", "layers": ["flaten", {"lineer": 10}]})
    with pytest.raises(ConfigError) as info:
        validate(bad)
    problems = info.value.problems
    assert any(p.startswith("model.layers.0:") and "did you mean 'flatten'" in p for p in problems), problems
    assert any(p.startswith("model.layers.1:") and "did you mean 'linear'" in p for p in problems), problems


@pytest.mark.parametrize("layers", [[["linear"]], [{"linear": 3, "relu": None}], [{"relu": 3}]])
def test_sequential_malformed_layer_entries_fail_validation(layers):
    with pytest.raises(ConfigError, match=r"model\.layers\.0"):
        validate(tiny_digits_config(model={"name": "sequential", "layers": layers}))


@pytest.mark.parametrize("layers", [
    ["flatten", {"linear": 5}, "relu"],  # output [5]: the final layer is relu, so no automatic size
    [{"conv2d": {"out_channels": 4, "kernel_size": 3}}],  # output is an image, not a vector
    ["flatten", {"linear": 4}, {"linear": 6}],  # explicit size wins over num_classes, so [6]
])
def test_sequential_output_must_be_num_classes(layers):
    with pytest.raises(ConfigError, match=r"must be \[3\]"):
        MODELS.build({"name": "sequential", "layers": layers}, (1, 8, 8), 3)


def test_sequential_layers_that_do_not_fit_the_input_are_config_errors():
    with pytest.raises(ConfigError, match="do not fit input shape"):
        MODELS.build({"name": "sequential", "layers": [{"maxpool2d": 16}, "flatten", "linear"]}, (1, 8, 8), 3)


def test_sequential_bad_layer_argument_is_config_error_at_validation():
    from dlcli.config import validate
    from tests.conftest import tiny_digits_config

    config = tiny_digits_config(model={"name": "sequential", "layers": [{"conv2d": {"out_chanels": 3}}]})
    with pytest.raises(ConfigError, match=r"model\.layers\.0: .*unknown argument 'out_chanels' "
                                          r"\(did you mean 'out_channels'\?\)"):
        validate(config)


def test_sequential_bad_layer_argument_value_is_config_error_at_build():
    with pytest.raises(ConfigError, match=r"model\.layers: .*input shape \[8\]"):
        MODELS.build({"name": "sequential", "layers": [{"linear": {"out_features": "many"}}]}, (8,), 3)
