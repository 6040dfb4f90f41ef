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


POLICIES = [{"rand_augment": {}}, {"trivial_augment": {}}, {"auto_augment": "cifar10"}, {"aug_mix": {}},
            {"random_erasing": {"p": 1.0}}, {"gaussian_blur": {"kernel_size": 3}},
            {"random_affine": {"degrees": 15, "translate": [0.1, 0.1]}}, {"random_perspective": {"p": 1.0}}]


@pytest.mark.parametrize("entry", POLICIES, ids=[next(iter(e)) for e in POLICIES])
@pytest.mark.parametrize("channels", [1, 3])
def test_policies_draw_per_image_and_keep_shape_and_range(entry, channels):
    torch.manual_seed(0)
    image = torch.rand(channels, 12, 12)
    batch = image.expand(16, -1, -1, -1).contiguous()  # one image, sixteen times
    out = build(entry)(batch)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert len({o.numpy().tobytes() for o in out}) > 1  # the copies came out differently: draws per image
    assert build(entry)(image).shape == image.shape


def test_grayscale_keeps_the_channels_and_decides_per_image():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 4, 4)
    always = build("grayscale")(images)
    gray = (images * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert always.shape == images.shape and torch.allclose(always, gray.expand_as(images))
    half = build({"grayscale": {"p": 0.5}})(images)
    turned = sum(torch.allclose(h, g.expand(3, -1, -1)) for h, g in zip(half, gray))
    assert 10 < turned < 54
    one_channel = torch.rand(2, 1, 4, 4)
    assert torch.equal(build("grayscale")(one_channel), one_channel)


@pytest.mark.parametrize("entry, key", [({"rand_augment": {"magnitude": 31}}, "magnitude"),
                                        ({"gaussian_blur": {"kernel_size": 4}}, "kernel_size must be odd"),
                                        ({"auto_augment": "mnist"}, "policy"),
                                        ({"random_erasing": {"p": 1.5}}, "p")])
def test_bad_policy_values_are_config_errors_naming_the_key(entry, key, write_config):
    from dlcli.config import load
    from dlcli.errors import ConfigError
    from tests.conftest import tiny_digits_config

    config = tiny_digits_config()
    config["data"]["train_transforms"] = [entry, {"normalize": "digits"}]
    with pytest.raises(ConfigError) as err:
        load(str(write_config(config)))
    assert any(p.startswith("data.train_transforms.0") and key in p for p in err.value.problems), err.value.problems


def test_random_resized_crop_of_the_whole_image_is_a_bilinear_resize():
    import torch.nn.functional as F

    images = torch.rand(4, 3, 20, 20)
    whole = TRANSFORMS.build({"name": "random_resized_crop", "size": 16, "scale": [1.0, 1.0], "ratio": [1.0, 1.0]})
    expected = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(whole(images), expected, atol=1e-5, rtol=0)


def test_random_resized_crop_draws_a_box_per_image_and_resamples_it_as_torchvision_would():
    from torchvision.transforms.v2.functional import resized_crop

    images = torch.rand(32, 3, 24, 26)  # at most 1.5x the output: the batched path
    crop = TRANSFORMS.build({"name": "random_resized_crop", "size": [20, 18], "scale": [0.3, 0.9]})
    torch.manual_seed(5)
    out = crop(images)
    torch.manual_seed(5)
    top, left, h, w = crop.boxes(32, 24, 26, images.device)
    area = h * w / (24 * 26)
    assert out.shape == (32, 3, 20, 18) and len(set(area.tolist())) > 16  # one draw per image
    assert bool(((area > 0.3 - 0.05) & (area < 0.9 + 0.05)).all())  # the drawn area, up to rounding
    for i in range(32):
        box = [int(top[i]), int(left[i]), int(h[i]), int(w[i])]
        expected = resized_crop(images[i], *box, [20, 18], antialias=False)
        # inside; at the crop's edges grid_sample blends in the pixels just outside it, where
        # torchvision repeats the crop's last row and column
        torch.testing.assert_close(out[i, :, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-4, rtol=0)


def test_random_resized_crop_falls_back_to_the_centre_and_antialiases_large_images():
    from torchvision.transforms.v2.functional import resized_crop

    impossible = TRANSFORMS.build({"name": "random_resized_crop", "size": 8, "scale": [1.0, 1.0], "ratio": [2.0, 3.0]})
    top, left, h, w = impossible.boxes(3, 10, 10, "cpu")  # no 10x10 crop has aspect 2 to 3: the centre, 10 x 5
    assert w.tolist() == [10.0] * 3 and h.tolist() == [5.0] * 3 and top.tolist() == [2.0] * 3
    large = torch.rand(2, 3, 64, 64)  # 8x the output: cropped and resized one by one, antialiased
    crop = TRANSFORMS.build({"name": "random_resized_crop", "size": 8})
    torch.manual_seed(1)
    out = crop(large)
    torch.manual_seed(1)
    boxes = torch.stack(crop.boxes(2, 64, 64, "cpu"), 1).long().tolist()
    for image, box, got in zip(large, boxes, out):
        torch.testing.assert_close(got, resized_crop(image, *box, [8, 8], antialias=True))


def test_a_flip_after_random_resized_crop_is_folded_in_with_the_same_draws_and_result():
    images = torch.rand(16, 3, 20, 20)
    specs = [{"name": "random_resized_crop", "size": 16}, {"name": "horizontal_flip", "p": 0.5}]
    fused = compose(specs)
    assert len(fused.transforms) == 1 and fused.transforms[0].flip is not None
    torch.manual_seed(3)
    together = fused(images)
    torch.manual_seed(3)
    apart = TRANSFORMS.build(specs[1])(TRANSFORMS.build(specs[0])(images))
    torch.testing.assert_close(together, apart, atol=1e-6, rtol=0)
    assert not torch.allclose(together, TRANSFORMS.build(specs[0])(images))  # some images were mirrored


def test_normalize_compares_equal_written_short_or_resolved():
    # `eval CKPT data.eval_transforms=[...]`: the checkpoint's train list is resolved, the override is not
    from dlcli.data.transforms import normalizers

    resolved = [{"name": "normalize", "preset": "imagenet", "mean": None, "std": None}]
    assert normalizers([{"resize": 8}, {"normalize": "imagenet"}]) == normalizers(resolved)
    assert normalizers([{"normalize": "cifar10"}]) != normalizers(resolved)
