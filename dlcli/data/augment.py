"""Augmentation policies and random distortions from torchvision.transforms.v2 (RandAugment,
TrivialAugment, AutoAugment, AugMix, random erasing, blur, affine, perspective) and a batched
grayscale, registered as transforms. Each policy draws its operations and strengths per image, so on
a batch it runs image by image (PerSample): a Python loop on whichever device holds the batch, whose
cost `benchmarks/augment_cost.py` measures."""

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from dlcli.data.registry import TRANSFORMS
from dlcli.types import PositiveFloat, Probability


class PerSample:
    """Apply a random v2 transform to each image of a batch independently."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, images):
        import torch

        if images.dim() == 3:
            return self.transform(images)
        return torch.stack([self.transform(image) for image in images])


class BatchGrayscale:
    """Turn each image gray with probability p, keeping its channels (a 3-channel model still gets 3)."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, images):
        import torch

        batch = images if images.dim() == 4 else images.unsqueeze(0)
        if batch.shape[1] != 3:
            return images  # already one channel
        weights = torch.tensor([0.2989, 0.587, 0.114], device=batch.device).view(1, 3, 1, 1)  # ITU-R 601-2 luma
        gray = (batch * weights).sum(1, keepdim=True).expand_as(batch)
        pick = torch.rand(batch.shape[0], device=batch.device) < self.p
        out = torch.where(pick[:, None, None, None], gray, batch)
        return out if images.dim() == 4 else out[0]


Magnitude = Annotated[int, Field(ge=0, le=30)]
Bins = Annotated[int, Field(ge=2, le=256)]


@TRANSFORMS.register("rand_augment")
def rand_augment(*, num_ops: Annotated[int, Field(ge=1, le=16)] = 2, magnitude: Magnitude = 9,
                 num_magnitude_bins: Bins = 31):
    """RandAugment (Cubuk et al. 2020): `num_ops` random operations of strength `magnitude` per image."""
    from torchvision.transforms import v2

    return PerSample(v2.RandAugment(num_ops, magnitude, num_magnitude_bins))


@TRANSFORMS.register("trivial_augment")
def trivial_augment(*, num_magnitude_bins: Bins = 31):
    """TrivialAugment (Müller and Hutter 2021): one random operation of random strength per image."""
    from torchvision.transforms import v2

    return PerSample(v2.TrivialAugmentWide(num_magnitude_bins))


@TRANSFORMS.register("auto_augment")
def auto_augment(*, policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet"):
    """AutoAugment (Cubuk et al. 2019) with the policy learned on ImageNet, CIFAR-10 or SVHN."""
    from torchvision.transforms import v2

    return PerSample(v2.AutoAugment(v2.AutoAugmentPolicy(policy)))


@TRANSFORMS.register("aug_mix")
def aug_mix(*, severity: Annotated[int, Field(ge=1, le=10)] = 3, mixture_width: Annotated[int, Field(ge=1, le=16)] = 3,
            chain_depth: Annotated[int, Field(ge=-1, le=16)] = -1, alpha: PositiveFloat = 1.0):
    """AugMix (Hendrycks et al. 2020): a mix of `mixture_width` augmentation chains (depth -1: 1 to 3 ops)."""
    from torchvision.transforms import v2

    return PerSample(v2.AugMix(severity, mixture_width, chain_depth, alpha))


@TRANSFORMS.register("random_erasing")
def random_erasing(*, p: Probability = 0.5, scale: tuple[Probability, Probability] = (0.02, 0.33),
                   ratio: tuple[PositiveFloat, PositiveFloat] = (0.3, 3.3), value: float = 0.0):
    """Erase a random rectangle (area fraction in `scale`) with `value`, with probability p (Zhong et al. 2020)."""
    from torchvision.transforms import v2

    return PerSample(v2.RandomErasing(p, scale, ratio, value))


def _odd(size: int) -> int:
    if size % 2 == 0:
        raise ValueError("kernel_size must be odd")
    return size


def ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    if bounds[0] > bounds[1]:
        raise ValueError("a range low <= high")
    return bounds


@TRANSFORMS.register("gaussian_blur")
def gaussian_blur(*, kernel_size: Annotated[int, Field(ge=1, le=255), AfterValidator(_odd)] = 3,
                  sigma: Annotated[tuple[PositiveFloat, PositiveFloat], AfterValidator(ordered)] = (0.1, 2.0)):
    """Blur with a Gaussian of a random sigma in `sigma` (an odd kernel_size)."""
    from torchvision.transforms import v2

    return PerSample(v2.GaussianBlur(kernel_size, sigma))


@TRANSFORMS.register("random_affine")
def random_affine(*, degrees: Annotated[float, Field(ge=0, le=180)] = 0.0,
                  translate: tuple[Probability, Probability] | None = None,
                  scale: tuple[PositiveFloat, PositiveFloat] | None = None,
                  shear: Annotated[float, Field(ge=0, le=90)] | None = None):
    """Random rotation (+-degrees), translation (fractions of width, height), scale range and shear."""
    from torchvision.transforms import v2

    return PerSample(v2.RandomAffine(degrees, translate, scale, shear))


@TRANSFORMS.register("random_perspective")
def random_perspective(*, distortion_scale: Probability = 0.5, p: Probability = 0.5):
    """A random perspective distortion of strength `distortion_scale`, with probability p."""
    from torchvision.transforms import v2

    return PerSample(v2.RandomPerspective(distortion_scale, p))


@TRANSFORMS.register("grayscale")
def grayscale(*, p: Probability = 1.0):
    """Gray with probability p (1: always), keeping the channel count (batched)."""
    return BatchGrayscale(p)
