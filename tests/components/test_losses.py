"""Every registered loss: trains, respects sample weights; plus the relations between losses."""

import pytest
import torch
import torch.nn.functional as F

from dlcli.components.losses import LOSSES
from dlcli.tasks import task_class


def build(name: str, **params):
    return LOSSES.build(LOSSES.validate({"name": name, **params}, "loss"))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = torch.randint(0, 4, (48,), generator=g)
    return x, y


# The adversarial losses (gan_bce, gan_hinge, wgan_gp) score a discriminator, not classes: tests/components/models/test_gan.py.
CLASSIFIER_LOSSES = list(task_class("classification").losses)


@pytest.mark.parametrize("name", CLASSIFIER_LOSSES)
def test_every_loss_trains_and_goes_down(name, batch):
    torch.manual_seed(0)
    x, y = batch
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    loss_fn = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, (name, losses[0], losses[-1])
    # and the model actually fits the labels better
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.5, (name, acc)


@pytest.mark.parametrize("name", CLASSIFIER_LOSSES)
def test_zero_weighted_samples_contribute_nothing(name):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 4, generator=g, requires_grad=True)
    y = torch.randint(0, 4, (10,), generator=g)
    weights = torch.ones(10)
    weights[6:] = 0
    loss_fn = build(name)
    weighted = loss_fn(logits, y, weights)
    subset = loss_fn(logits[:6], y[:6])
    assert weighted.item() == pytest.approx(subset.item(), rel=1e-5, abs=1e-6)
    weighted.backward()
    assert torch.all(logits.grad[6:] == 0)
    assert logits.grad[:6].abs().sum() > 0


@pytest.mark.parametrize("name", CLASSIFIER_LOSSES)
def test_uniform_weights_equal_no_weights(name):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(12, 5, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    loss_fn = build(name)
    assert loss_fn(logits, y, torch.full((12,), 3.0)).item() == pytest.approx(loss_fn(logits, y).item(), rel=1e-5)


def test_cross_entropy_matches_torch_and_nll():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(20, 7, generator=g)
    y = torch.randint(0, 7, (20,), generator=g)
    expected = F.cross_entropy(logits, y).item()
    assert build("cross_entropy")(logits, y).item() == pytest.approx(expected, rel=1e-6)
    assert build("nll")(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_mean_is_normalised_by_weight_sum():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0])
    per = F.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([3.0, 1.0])
    expected = ((per * w).sum() / w.sum()).item()
    assert build("cross_entropy")(logits, y, w).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["cross_entropy", "bce_with_logits"])
def test_label_smoothing_changes_the_loss(name):
    logits = torch.tensor([[6.0, -3.0, -3.0], [-3.0, 6.0, -3.0]])
    y = torch.tensor([0, 1])
    plain = build(name)(logits, y).item()
    smooth = build(name, label_smoothing=0.2)(logits, y).item()
    assert smooth > plain  # confident, correct predictions are penalised by smoothing


def test_cross_entropy_label_smoothing_matches_torch():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(16, 5, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    expected = F.cross_entropy(logits, y, label_smoothing=0.1).item()
    assert build("cross_entropy", label_smoothing=0.1)(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_bce_with_logits_matches_bce_on_moderate_logits():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(16, 3, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    assert build("bce")(logits, y).item() == pytest.approx(build("bce_with_logits")(logits, y).item(), rel=1e-4)


@pytest.mark.parametrize("name", CLASSIFIER_LOSSES)
def test_extreme_logits_give_finite_loss_and_gradients(name):
    logits = torch.tensor([[200.0, -200.0, 0.0], [-200.0, 200.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 0])  # confidently wrong
    loss = build(name)(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(torch.isfinite(logits.grad))


def test_perfect_predictions_give_near_zero_regression_losses():
    logits = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    y = torch.tensor([0, 1, 2])
    for name in ("mse", "l1", "huber", "soft_f1"):
        assert build(name)(logits, y).item() == pytest.approx(0.0, abs=1e-5), name


def test_soft_f1_is_one_minus_macro_f1_on_hard_predictions():
    # with saturated (one-hot) probabilities the soft F1 equals the ordinary macro-F1
    from sklearn.metrics import f1_score

    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 0])
    logits = F.one_hot(pred, 3).float() * 100
    expected = 1 - f1_score(y.numpy(), pred.numpy(), average="macro")
    assert build("soft_f1")(logits, y).item() == pytest.approx(expected, abs=1e-5)
