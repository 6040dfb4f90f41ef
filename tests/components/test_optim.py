"""Every registered optimizer: builds from its defaults, trains, and groups weight decay."""

import pytest
import torch
from torch import nn

from dlcli.components.optim.optimizers import OPTIMIZERS, param_groups
from dlcli.errors import ConfigError


def build(model, name: str, **params):
    return OPTIMIZERS.build(OPTIMIZERS.validate({"name": name, **params}, "optimizer"), model)


def small_model():
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_with_defaults_lowers_the_loss(name, batch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = build(model, name)
    x, y = batch
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert losses[-1] < losses[0], (name, losses[0], losses[-1])


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_with_a_useful_lr_trains_well(name, batch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    lr = {"adadelta": 1.0, "sgd": 0.5, "nag": 0.1}.get(name, 0.02)
    opt = build(model, name, lr=lr)
    x, y = batch
    first = nn.functional.cross_entropy(model(x), y).item()
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    last = nn.functional.cross_entropy(model(x), y).item()
    assert last < first * 0.85, (name, first, last)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_defaults_and_lr_reach_torch(name):
    model = small_model()
    opt = build(model, name, lr=0.123)
    assert isinstance(opt, torch.optim.Optimizer)
    assert all(g["lr"] == pytest.approx(0.123) for g in opt.param_groups)
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_biases_and_norm_weights_get_no_weight_decay_by_default(name):
    model = small_model()
    opt = build(model, name, weight_decay=0.05)
    matrices = {id(p) for p in model.parameters() if p.ndim > 1}
    vectors = {id(p) for p in model.parameters() if p.ndim <= 1}
    assert len(vectors) == 4  # two biases, BN weight and bias
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert set(decay_of) == matrices | vectors
    assert all(decay_of[i] == 0.05 for i in matrices)
    assert all(decay_of[i] == 0.0 for i in vectors)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_decay_norm_and_bias_decays_everything(name):
    model = small_model()
    opt = build(model, name, weight_decay=0.05, decay_norm_and_bias=True)
    decays = [g["weight_decay"] for g in opt.param_groups for _ in g["params"]]
    assert len(decays) == len(list(model.parameters()))
    assert all(d == 0.05 for d in decays)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS.names() if n != "adamw"])
def test_no_weight_decay_by_default(name):
    opt = build(small_model(), name)
    assert all(g["weight_decay"] == 0 for g in opt.param_groups)


def test_adamw_decays_by_default_but_not_biases():
    model = small_model()
    opt = build(model, "adamw")
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay_of[id(model[0].weight)] == 0.01
    assert decay_of[id(model[0].bias)] == 0.0
    assert decay_of[id(model[1].weight)] == 0.0


def test_weight_decay_is_applied_only_where_grouped():
    # zero gradients: plain SGD moves only by weight decay, and only the matrices move
    model = small_model()
    opt = build(model, "sgd", lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim > 1:
            assert torch.allclose(p, before[n] * (1 - 0.1 * 0.5)), n
        else:
            assert torch.equal(p, before[n]), n


def test_param_groups_skips_frozen_parameters():
    model = small_model()
    model[0].weight.requires_grad_(False)
    groups = param_groups(model, 0.1, False)
    ids = {id(p) for g in groups for p in g["params"]}
    assert id(model[0].weight) not in ids
    assert len(ids) == len(list(model.parameters())) - 1


def test_param_groups_single_group_without_decay():
    groups = param_groups(small_model(), 0.0, False)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match="nesterov"):
        build(small_model(), "sgd", nesterov=True)
    opt = build(small_model(), "sgd", nesterov=True, momentum=0.9)
    assert opt.param_groups[0]["nesterov"] is True


def test_nag_is_nesterov_sgd():
    opt = build(small_model(), "nag")
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["nesterov"] is True and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("params,key", [
    ({"lr": 0}, "optimizer.lr"),
    ({"lr": -1}, "optimizer.lr"),
    ({"momentum": 1.0}, "optimizer.momentum"),
    ({"weight_decay": -0.1}, "optimizer.weight_decay"),
    ({"lr": "fast"}, "optimizer.lr"),
])
def test_invalid_hyperparameters_are_config_errors(params, key):
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS.validate({"name": "sgd", **params}, "optimizer")
    assert info.value.problems[0].startswith(f"{key}:")


def test_adam_betas_are_validated():
    with pytest.raises(ConfigError, match=r"optimizer\.betas"):
        OPTIMIZERS.validate({"name": "adam", "betas": [0.9, 1.5]}, "optimizer")
    assert OPTIMIZERS.validate({"name": "adam", "betas": [0.8, 0.9]}, "optimizer")["betas"] == [0.8, 0.9]


@pytest.mark.parametrize("name", ["sgd", "nag", "adam", "adamw"])
def test_fused_kernels_only_for_models_on_a_gpu(name):
    opt = build(small_model(), name)
    assert not opt.defaults.get("fused")  # CPU: torch's plain loop, as before
    if torch.cuda.is_available():
        assert build(small_model().cuda(), name).defaults["fused"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fused optimizers run on CUDA")
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_gpu_step_matches_the_default_step(name):
    torch.manual_seed(0)
    cpu = small_model()
    gpu = small_model().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(32, 6)
    for model, data in ((cpu, x), (gpu, x.cuda())):
        opt = build(model, name, lr=0.1)
        model(data).square().mean().backward()
        opt.step()
    for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values()):
        torch.testing.assert_close(a, b.cpu(), atol=1e-5, rtol=1e-4)
