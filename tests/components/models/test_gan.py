"""The `gan` model (issue #5) built through the MODELS registry: generator and discriminator as MLP or
DCGAN nets for 8x8, 28x28 and 32x32 images with 1 or 3 channels, conditional or not; clean errors
when a DCGAN's resolution steps do not fit the image; the fixed sample noise saved with the weights.
And the adversarial losses by hand: BCE with one-sided label smoothing, hinge, Wasserstein, and
the WGAN-GP gradient penalty."""

import math

import pytest
import torch
from torch import nn

from dlcli.components.losses import LOSSES
from dlcli.components.losses.gan import AdversarialLoss
from dlcli.components.models import MODELS
from dlcli.errors import ConfigError

LATENT = 8


def build(input_shape, num_classes: int = 10, **params):
    """Validate the spec as a config would, then build it as build.build_model does."""
    spec = {"name": "gan", "latent_dim": LATENT, "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]},
            **params}
    return MODELS.build(MODELS.validate(spec, "model"), tuple(input_shape), num_classes)


def dcgan(channels) -> dict:
    return {"type": "dcgan", "channels": channels}


# ---------------------------------------------------------------- shapes and ranges

SHAPES = {  # input shape -> dcgan channels that fit it (one halving per entry)
    (1, 8, 8): [16, 8],  # 8 -> 4 -> 2
    (1, 28, 28): [16, 8],  # 28 -> 14 -> 7
    (1, 32, 32): [16, 8, 8],  # 32 -> 16 -> 8 -> 4
    (3, 32, 32): [16, 8, 8],
}


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("net", ["mlp", "dcgan"])
@pytest.mark.parametrize("shape", list(SHAPES), ids=lambda s: "x".join(map(str, s)))
def test_generator_and_discriminator_shapes_and_output_range(shape, net, conditional):
    torch.manual_seed(0)
    spec = dcgan(SHAPES[shape]) if net == "dcgan" else {"type": "mlp", "hidden": [32, 16]}
    model = build(shape, 10, conditional=conditional, generator=spec, discriminator=spec)
    assert model.image_shape == shape and model.latent_dim == LATENT
    assert model.num_classes == (10 if conditional else 0)

    n = 6
    labels = torch.arange(n) % 10 if conditional else None
    z = torch.randn(n, LATENT)
    model.train()  # batch norm in training mode; then in eval mode with its running statistics
    images = model(z, labels)
    assert images.shape == (n, *shape)
    model.eval()
    # pushed far into tanh's saturation: still in range (DCGAN's N(0, 0.02) weights shrink every layer's
    # output, so it takes a million times the noise to get there)
    huge = model(z * 1e6, labels)
    for out in (images, huge):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.min() >= -1 and out.max() <= 1
    assert huge.abs().max() > 0.99  # the range is tanh's, reached, not a narrower one
    assert images.std() > 0  # not a constant image

    scores = model.discriminator(images, labels)
    assert scores.shape == (n,) and torch.isfinite(scores).all()  # one raw score per image
    scores.sum().backward()  # both nets are differentiable end to end
    assert all(p.grad is not None for p in model.discriminator.parameters() if p.requires_grad)


def test_the_forward_pass_is_the_generator():
    torch.manual_seed(0)
    model = build((1, 8, 8)).eval()
    z = torch.randn(3, LATENT)
    assert torch.equal(model(z), model.generator(z))


def test_conditional_nets_depend_on_the_label_and_plain_ones_have_no_embedding():
    torch.manual_seed(0)
    model = build((1, 8, 8), 10, conditional=True).eval()
    z = torch.randn(1, LATENT).repeat(10, 1)  # one noise vector, every class
    images = model(z, torch.arange(10))
    assert not torch.allclose(images[0], images[1])  # the label changes the image
    x = images[:1].repeat(10, 1, 1, 1)
    scores = model.discriminator(x, torch.arange(10))
    assert scores.unique().numel() == 10  # projection discriminator: the label changes the score
    assert isinstance(model.generator.embed, nn.Embedding) and model.generator.embed.num_embeddings == 10

    plain = build((1, 8, 8), 10, conditional=False)
    assert plain.generator.embed is None and plain.discriminator.head.embed is None


def test_batch_norm_defaults_on_in_the_generator_and_off_in_the_discriminator():
    def batch_norms(net):
        return [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]

    for spec in ({"hidden": [16, 16]}, dcgan([16, 8])):
        model = build((1, 8, 8), generator=spec, discriminator=spec)
        assert batch_norms(model.generator) and not batch_norms(model.discriminator), spec
        off = build((1, 8, 8), generator={**spec, "batch_norm": False}, discriminator={**spec, "batch_norm": True})
        assert not batch_norms(off.generator), spec
    # a dcgan discriminator with batch_norm: true normalises every conv but the first
    on = build((1, 32, 32), discriminator={**dcgan([16, 8, 8]), "batch_norm": True})
    assert len(batch_norms(on.discriminator)) == 2


def test_mlp_discriminator_dropout_is_applied_in_training_only():
    torch.manual_seed(0)
    model = build((1, 8, 8), discriminator={"hidden": [64], "dropout": 0.5})
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.discriminator.modules())
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    assert torch.equal(model.discriminator(x), model.discriminator(x))
    model.train()
    assert not torch.equal(model.discriminator(x), model.discriminator(x))


# ---------------------------------------------------------------- sizes that do not fit


@pytest.mark.parametrize("role", ["generator", "discriminator"])
@pytest.mark.parametrize("shape, channels", [
    ((1, 28, 28), [16, 8, 8]),  # 28 does not divide by 8
    ((1, 8, 8), [8, 8, 8, 8]),  # 8 does not divide by 16
    ((3, 32, 24), [16, 8]),  # not square
])
def test_dcgan_size_mismatch_is_a_config_error_naming_the_key(shape, channels, role):
    other = "discriminator" if role == "generator" else "generator"
    with pytest.raises(ConfigError) as err:
        build(shape, **{role: dcgan(channels), other: {"type": "mlp"}})
    message = str(err.value)
    assert message.startswith(f"model.{role}.channels: {len(channels)} resolution steps")
    assert f"{shape[1]}x{shape[2]}" in message and str(2 ** len(channels)) in message
    assert err.value.exit_code == 2 and "fewer channels" in err.value.hint


def test_an_mlp_fits_any_image_size():
    model = build((3, 28, 20), generator={"type": "mlp"}, discriminator={"type": "mlp"}).eval()
    assert model(torch.randn(2, LATENT)).shape == (2, 3, 28, 20)


# ---------------------------------------------------------------- the fixed sample noise


def test_fixed_noise_is_saved_with_the_weights_and_independent_of_the_global_seed():
    torch.manual_seed(0)
    a = build((1, 8, 8), 10, conditional=True, samples=20)
    torch.manual_seed(1)
    b = build((1, 8, 8), 10, conditional=True, samples=20)
    state = a.state_dict()
    assert state["fixed_noise"].shape == (20, LATENT) and torch.equal(state["fixed_noise"], b.state_dict()["fixed_noise"])
    assert state["fixed_labels"].tolist() == [i % 10 for i in range(20)]  # every class in turn
    assert {k.split(".")[0] for k in state} == {"generator", "discriminator", "fixed_noise", "fixed_labels"}
    assert "fixed_noise" not in dict(a.named_parameters())  # a buffer: not trained
    # different weights (another global seed), the same sample noise; loading restores it exactly
    assert not torch.equal(state["generator.net.0.weight"], b.state_dict()["generator.net.0.weight"])
    b.fixed_noise.zero_()
    b.load_state_dict(state)
    assert torch.equal(b.fixed_noise, a.fixed_noise)
    assert build((1, 8, 8)).fixed_labels.eq(0).all()  # not conditional: one class


# ---------------------------------------------------------------- losses by hand


def bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


REAL = torch.tensor([2.0, -0.5])
FAKE = torch.tensor([-1.0, 0.5])


def test_bce_with_one_sided_label_smoothing_by_hand():
    loss = LOSSES.build({"name": "gan_bce", "label_smoothing": 0.1})
    assert isinstance(loss, AdversarialLoss) and loss.n_critic == 1 and loss.gp_weight == 0
    real = (bce(2.0, 0.9) + bce(-0.5, 0.9)) / 2  # real targets 0.9
    fake = (bce(-1.0, 0.0) + bce(0.5, 0.0)) / 2  # fake targets stay 0: smoothing is one-sided
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(real + fake, rel=1e-6)
    # non-saturating generator loss: -log D(G(z)), never smoothed
    assert float(loss.generator(FAKE)) == pytest.approx((bce(-1.0, 1.0) + bce(0.5, 1.0)) / 2, rel=1e-6)
    assert loss.probability(REAL).tolist() == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(0.5))])
    unsmoothed = LOSSES.build({"name": "gan_bce"})
    assert float(unsmoothed.discriminator(REAL, FAKE)) == pytest.approx(
        (bce(2.0, 1.0) + bce(-0.5, 1.0)) / 2 + fake, rel=1e-6)


def test_hinge_by_hand():
    loss = LOSSES.build({"name": "gan_hinge"})
    # relu(1 - real): [0, 1.5]; relu(1 + fake): [0, 1.5]
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(0.75 + 0.75)
    assert float(loss.discriminator(torch.tensor([3.0, 1.0]), torch.tensor([-2.0, -1.0]))) == 0  # margins met
    assert float(loss.generator(FAKE)) == pytest.approx(-(-1.0 + 0.5) / 2)
    assert torch.equal(loss.probability(REAL), REAL)  # raw scores are logged


def test_wasserstein_by_hand_and_defaults():
    loss = LOSSES.build({"name": "wgan_gp"})
    assert loss.n_critic == 5 and loss.gp_weight == 10.0  # the WGAN-GP paper's defaults
    assert float(loss.discriminator(REAL, FAKE)) == pytest.approx(FAKE.mean() - REAL.mean())  # -0.5
    assert float(loss.generator(FAKE)) == pytest.approx(0.25)
    assert torch.equal(loss.probability(FAKE), FAKE)


class LinearCritic(nn.Module):
    """score = <w, x> + b over the flattened image: its gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.flatten())
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, labels=None):
        return x.flatten(1) @ self.w + self.b


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(16, 1, 4, 4, generator=g), torch.rand(16, 1, 4, 4, generator=g)
    w = torch.randn(16, generator=g)
    unit = w / w.norm()
    loss = LOSSES.build({"name": "wgan_gp", "gp_weight": 10.0})

    assert loss.gradient_penalty(LinearCritic(unit), real, fake, None).item() == pytest.approx(0.0, abs=1e-10)
    # |grad| = 3 everywhere: 10 x (3 - 1)^2
    assert loss.gradient_penalty(LinearCritic(3 * unit), real, fake, None).item() == pytest.approx(40.0, rel=1e-5)
    assert loss.gradient_penalty(LinearCritic(0.5 * unit), real, fake, None).item() == pytest.approx(2.5, rel=1e-5)

    # a non-linear critic: positive, and differentiable w.r.t. the critic's weights (create_graph)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    penalty = loss.gradient_penalty(lambda x, labels: critic(x), real, fake, None)
    assert penalty.item() > 0
    penalty.backward()
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0
    # the fake images get no gradient from the penalty (it is a loss of the critic only)
    fake_leaf = fake.clone().requires_grad_(True)
    loss.gradient_penalty(LinearCritic(3 * unit), real, fake_leaf, None).backward()
    assert fake_leaf.grad is None

    # no weight, no penalty (and the other losses have none)
    assert LOSSES.build({"name": "wgan_gp", "gp_weight": 0.0}).gradient_penalty(
        LinearCritic(3 * unit), real, fake, None).item() == 0
    assert LOSSES.build({"name": "gan_bce"}).gradient_penalty(LinearCritic(3 * unit), real, fake, None).item() == 0


def test_gradient_penalty_matches_a_direct_computation_on_the_interpolates():
    # a quadratic critic: grad at x is 2x, so the penalty depends on where the interpolates fall
    real = torch.full((4, 1, 2, 2), 1.0)
    fake = torch.zeros(4, 1, 2, 2)
    loss = LOSSES.build({"name": "wgan_gp", "gp_weight": 1.0})
    torch.manual_seed(7)
    got = loss.gradient_penalty(lambda x, labels: x.square().flatten(1).sum(1), real, fake, None).item()
    torch.manual_seed(7)
    alpha = torch.rand(4)
    expected = ((2 * alpha * 2 - 1) ** 2).mean()  # |2 * alpha * ones(4)| = 4 alpha
    assert got == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("spec, key", [
    ({"name": "wgan_gp", "n_critic": 0}, "loss.n_critic"),
    ({"name": "gan_bce", "label_smoothing": 1.5}, "loss.label_smoothing"),
    ({"name": "wgan_gp", "gp_weight": -1}, "loss.gp_weight"),
    ({"name": "gan_hinge", "label_smoothing": 0.1}, "loss.label_smoothing"),
])
def test_bad_loss_parameters_are_config_errors_naming_the_key(spec, key):
    with pytest.raises(ConfigError) as err:
        LOSSES.validate(spec, "loss")
    assert any(p.startswith(key) for p in err.value.problems), err.value.problems


def test_losses_give_the_discriminator_and_generator_opposite_pulls():
    # the generator's loss falls as D scores fakes higher; D's loss falls as it scores them lower
    for name in ("gan_bce", "gan_hinge", "wgan_gp"):
        loss = LOSSES.build({"name": name})
        fake = torch.tensor([-0.5, 0.0], requires_grad=True)
        loss.generator(fake).backward()
        assert (fake.grad < 0).all(), name
        fake = torch.tensor([-0.5, 0.0], requires_grad=True)
        loss.discriminator(torch.tensor([0.5, 0.0]), fake).backward()
        assert (fake.grad > 0).all(), name
