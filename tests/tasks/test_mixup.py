"""Mixup and CutMix: the mixed images and their targets (weights summing to one, the cut box's area
matching lam), the loss against soft targets, training end to end with exact mid-epoch resume, and
bad values (exit 2, key named)."""

import pytest
import torch
import torch.nn.functional as F

from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.tasks.mixup import Mixup, mixed_loss
from tests.conftest import tiny_digits_config, train_then_resume


def test_mixup_mixes_each_image_with_its_partner_by_lam_and_its_own_labels_dominate():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    for _ in range(20):
        mixed = Mixup(alpha=0.4, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5)(x)
        assert 0.5 <= mixed.lam <= 1 and sorted(mixed.partner.tolist()) == list(range(16))
        assert torch.allclose(mixed.x, mixed.lam * x + (1 - mixed.lam) * x[mixed.partner])


def test_cutmix_pastes_a_box_whose_area_is_one_minus_lam():
    torch.manual_seed(1)
    x = torch.zeros(8, 1, 32, 32)
    x[:] = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)  # image i is all i: pasted pixels show
    for _ in range(20):
        mixed = Mixup(alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)(x)
        for i in range(8):
            partner = int(mixed.partner[i])
            if partner == i:
                continue
            from_partner = (mixed.x[i] == partner).float().mean().item()
            assert from_partner == pytest.approx(1 - mixed.lam) and mixed.lam >= 0.5


def test_the_mixed_loss_is_cross_entropy_against_soft_targets_that_sum_to_one():
    torch.manual_seed(2)
    logits, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    mixed = Mixup(alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5)(torch.rand(6, 5))
    soft = mixed.lam * F.one_hot(y, 4).float() + (1 - mixed.lam) * F.one_hot(y[mixed.partner], 4).float()
    assert torch.allclose(soft.sum(1), torch.ones(6))
    loss = mixed_loss(lambda out, target, w: F.cross_entropy(out, target), logits, y, None, mixed)
    assert torch.allclose(loss, F.cross_entropy(logits, soft))


def test_prob_leaves_the_other_batches_as_they_are():
    torch.manual_seed(3)
    mixup = Mixup(alpha=1.0, cutmix_alpha=0.0, prob=0.3, switch_prob=0.5)
    mixed = sum(mixup(torch.rand(4, 2)) is not None for _ in range(400))
    assert 80 < mixed < 160


def test_a_mixup_run_trains_and_resumes_mid_epoch_bitwise(tmp_path, write_config, run_cli):
    config = tiny_digits_config(train={"epochs": 2, "device": "cpu", "checkpoint_every": {"steps": 5},
                                       "keep_last": 100, "log_interval": 100})
    config["data"]["mixup"] = {"alpha": 0.4, "cutmix_alpha": 1.0, "switch_prob": 0.5}
    full, resumed = train_then_resume(run_cli, write_config(config), tmp_path, "tiny", 5)
    a, b = full["model"], resumed["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mixup, extra, words", [
    ({"alpha": 0}, {}, "data.mixup: set alpha (mixup), cutmix_alpha (cutmix) or both above 0"),
    ({"alpha": -1}, {}, "data.mixup.alpha"),
    ({"prob": 1.5}, {}, "data.mixup.prob"),
    ({"cutmix_alpha": 1.0}, {"data": {"dataset": {"name": "digits_rows"}}}, "data.mixup.cutmix_alpha: cutmix pastes"),
    ({}, {"data": {"dataset": {"name": "text", "path": "t.txt"}}, "model": {"name": "lstm"}}, "data.mixup: only for"),
], ids=["no-kind", "negative", "prob", "cutmix-not-images", "language-model"])
def test_bad_mixup_settings_are_config_errors_naming_the_key(mixup, extra, words):
    config = tiny_digits_config(**{k: v for k, v in extra.items() if k != "data"})
    config["data"] = {**config["data"], **extra.get("data", {}), "mixup": mixup}
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert any(words in p for p in err.value.problems), err.value.problems
