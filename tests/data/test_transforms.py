"""Batched transforms: same results as torchvision per image, per-image random decisions."""

import pytest
import torch
from torchvision.transforms import v2

from dlcli.data.transforms import TRANSFORMS, compose, spec_from_yaml


def build(entry):
    return compose([TRANSFORMS.validate(spec_from_yaml(entry), "t")])


def test_normalize_matches_torchvision():
    images = torch.rand(5, 3, 6, 6)
    ours = build({"normalize": "cifar10"})(images)
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    assert torch.allclose(ours, v2.Normalize(mean, std)(images), atol=1e-6)
    assert torch.allclose(build({"normalize": "cifar10"})(images[0]), ours[0], atol=1e-6)


def test_flip_decides_per_image():
    torch.manual_seed(0)
    images = torch.arange(64 * 4, dtype=torch.float32).view(64, 1, 2, 2)
    out = build({"horizontal_flip": 0.5})(images)
    flipped = [(o == i.flip(-1)).all().item() and not (o == i).all().item() for o, i in zip(out, images)]
    assert 10 < sum(flipped) < 54  # some flipped, some not: one decision per image


def test_random_crop_keeps_size_and_takes_windows_of_the_padded_image():
    torch.manual_seed(0)
    images = torch.rand(32, 3, 8, 8)
    out = build({"random_crop": {"size": 8, "padding": 2}})(images)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    offsets = set()
    for o, p in zip(out, padded):
        match = [(t, l) for t in range(5) for l in range(5) if torch.equal(p[:, t:t + 8, l:l + 8], o)]
        assert match, "each crop is a window of its own padded image"
        offsets.add(match[0])
    assert len(offsets) > 3  # offsets drawn per image


@pytest.mark.parametrize("entry", [{"rotation": 10}, {"random_resized_crop": {"size": 6}},
                                   {"color_jitter": {"brightness": 0.5}}, {"resize": 4}, {"center_crop": 4}])
def test_other_transforms_work_on_single_images_and_batches(entry):
    transform = build(entry)
    batch = transform(torch.rand(3, 3, 8, 8))
    single = transform(torch.rand(3, 8, 8))
    assert batch.shape[0] == 3 and batch.shape[1:] == single.shape
