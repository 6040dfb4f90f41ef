"""Preprocessing registry over torchvision.transforms.v2, for YAML lists like
`[{random_crop: {size: 32, padding: 4}}, horizontal_flip, {normalize: cifar10}]`.

Every transform takes float images in [0, 1], either one (C,H,W) or a batch (N,C,H,W).
torchvision's random transforms draw one set of parameters per call, so on a batch they are
applied image by image (PerSample); the most common ones, flip, padded crop and random-resized
crop, have batched versions here that draw per-image decisions in one go.
"""

from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field

from dlcli.data.augment import PerSample, ordered
from dlcli.data.registry import TRANSFORMS
from dlcli.data.resized_crop import BatchRandomResizedCrop
from dlcli.types import NonNegativeInt, PositiveFloat, PositiveInt, Probability

Size = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
T = TypeVar("T")
Range = Annotated[tuple[T, T], AfterValidator(ordered)]  # (low, high), low <= high

# The preset names, in NORMALIZE_PRESETS' order (mypy checks every key below is one of them).
NormalizePreset = Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet"]

# Per-dataset mean/std, in [0, 1] pixel units.
NORMALIZE_PRESETS: dict[NormalizePreset, tuple[list[float], list[float]]] = {
    "digits": ([0.3053], [0.3760]),
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def spec_from_yaml(entry: Any) -> dict:
    """`name`, `{name: {kw: v}}` or `{name: value}` -> {'name': name, ...}."""
    if isinstance(entry, str):
        return {"name": entry}
    if isinstance(entry, dict) and len(entry) == 1:
        name, args = next(iter(entry.items()))
        if args is None:
            args = {}
        if not isinstance(args, dict):  # a bare value is the transform's first parameter
            first = next(iter(TRANSFORMS.entry(name).params.model_fields), None)
            args = {first: args} if first else {"value": args}
        return {"name": name, **args}
    if isinstance(entry, dict) and "name" in entry:
        return entry
    raise ValueError("a transform is `name` or a one-key mapping `{name: args}`")


class Normalize:
    """(x - mean) / std over the channel dim; plain tensor math because v2.Normalize's dispatch
    costs ~10x the arithmetic on a batch, which shows up in a fast GPU step."""

    def __init__(self, mean: list[float], std: list[float]):
        import torch

        # x * (1 / std) + (-mean / std): one fused pass over the batch instead of two
        self.scale = 1 / torch.tensor(std).view(-1, 1, 1)
        self.shift = -torch.tensor(mean).view(-1, 1, 1) * self.scale

    def __call__(self, images):
        import torch

        if self.scale.device != images.device:
            self.scale, self.shift = self.scale.to(images.device), self.shift.to(images.device)
        return torch.addcmul(self.shift, images, self.scale)


class Pipeline:
    """Apply transforms in order (a plain loop: v2.Compose adds dispatch cost per batch). A horizontal
    flip right after a random_resized_crop is folded into the crop's resampling (the same random
    draws and result, one pass over the batch fewer)."""

    def __init__(self, transforms: list):
        self.transforms: list = []
        for transform in transforms:
            last = self.transforms[-1] if self.transforms else None
            if isinstance(last, BatchRandomResizedCrop) and last.flip is None and \
                    isinstance(transform, BatchFlip) and transform.dim == -1:
                last.flip = transform
            else:
                self.transforms.append(transform)

    def __call__(self, images):
        for transform in self.transforms:
            images = transform(images)
        return images


class BatchFlip:
    """Flip each image horizontally (dim=-1) or vertically (dim=-2) with probability p."""

    def __init__(self, p: float, dim: int):
        self.p, self.dim = p, dim

    def __call__(self, images):
        import torch

        batch = images if images.dim() == 4 else images.unsqueeze(0)
        flip = torch.rand(batch.shape[0], device=batch.device) < self.p
        out = torch.where(flip[:, None, None, None], batch.flip(self.dim), batch)
        return out if images.dim() == 4 else out[0]


class BatchRandomCrop:
    """Pad, then crop a random size x size window per image (one gather for the batch)."""

    def __init__(self, size: tuple[int, int], padding: int, fill: float):
        self.size, self.padding, self.fill = size, padding, fill

    def __call__(self, images):
        import torch
        import torch.nn.functional as F

        batch = images if images.dim() == 4 else images.unsqueeze(0)
        p = self.padding
        padded = F.pad(batch, (p, p, p, p), value=self.fill) if p else batch
        n, _, h, w = padded.shape
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"random_crop: size {ch}x{cw} is larger than the {h}x{w} image (with padding)")
        top = torch.randint(0, h - ch + 1, (n,), device=batch.device)
        left = torch.randint(0, w - cw + 1, (n,), device=batch.device)
        rows = (top[:, None] + torch.arange(ch, device=batch.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(cw, device=batch.device))[:, None, None, :]
        batch_idx = torch.arange(n, device=batch.device)[:, None, None, None]
        channel_idx = torch.arange(padded.shape[1], device=batch.device)[None, :, None, None]
        out = padded[batch_idx, channel_idx, rows, cols]
        return out if images.dim() == 4 else out[0]


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


@TRANSFORMS.register("resize")
def resize(*, size: Size, antialias: bool = True):
    """Resize to `size` (int: shorter side; [h, w]: exact)."""
    from torchvision.transforms import v2

    return v2.Resize(size, antialias=antialias)


@TRANSFORMS.register("center_crop")
def center_crop(*, size: Size):
    """Crop the centre `size` window."""
    from torchvision.transforms import v2

    return v2.CenterCrop(size)


@TRANSFORMS.register("random_crop")
def random_crop(*, size: Size, padding: NonNegativeInt = 0, fill: float = 0.0):
    """Random `size` window after padding by `padding` pixels of value `fill` (batched)."""
    return BatchRandomCrop(_pair(size), padding, fill)


@TRANSFORMS.register("random_resized_crop")
def random_resized_crop(*, size: Size, scale: Range[Probability] = (0.08, 1.0),
                        ratio: Range[PositiveFloat] = (3 / 4, 4 / 3)):
    """Random area/aspect crop resized to `size` (Inception-style; batched)."""
    return BatchRandomResizedCrop(_pair(size), scale, ratio)


@TRANSFORMS.register("rotation")
def rotation(*, degrees: Annotated[float, Field(ge=0, le=180)]):
    """Random rotation in [-degrees, degrees]."""
    from torchvision.transforms import v2

    return PerSample(v2.RandomRotation(degrees))


@TRANSFORMS.register("horizontal_flip")
def horizontal_flip(*, p: Probability = 0.5):
    """Flip left-right with probability p (batched)."""
    return BatchFlip(p, -1)


@TRANSFORMS.register("vertical_flip")
def vertical_flip(*, p: Probability = 0.5):
    """Flip top-bottom with probability p (batched)."""
    return BatchFlip(p, -2)


@TRANSFORMS.register("color_jitter")
def color_jitter(*, brightness: Probability = 0.0, contrast: Probability = 0.0,
                 saturation: Probability = 0.0, hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0):
    """Random brightness/contrast/saturation/hue changes."""
    from torchvision.transforms import v2

    return PerSample(v2.ColorJitter(brightness, contrast, saturation, hue))


@TRANSFORMS.register("normalize")
def normalize(*, preset: NormalizePreset | None = None,
              mean: list[float] | None = None, std: list[PositiveFloat] | None = None):
    """Subtract mean and divide by std: a preset name (cifar10, mnist, ...) or explicit mean/std."""
    from dlcli.errors import ConfigError

    if preset is not None:
        mean, std = NORMALIZE_PRESETS[preset]
    if mean is None or std is None or len(mean) != len(std):
        raise ConfigError("normalize: give a preset name or mean and std lists of the same length")
    return Normalize(mean, std)


def normalizers(entries: list) -> list[dict]:
    """The normalize entries of a transform list (bad entries are reported by their own check)."""
    from dlcli.errors import ConfigError

    specs = []
    for entry in entries:
        try:
            spec = spec_from_yaml(entry)
            if spec["name"] == "normalize":  # defaults filled: `{normalize: imagenet}` is its resolved form
                specs.append(TRANSFORMS.validate(spec, "normalize"))
        except (ValueError, ConfigError):
            continue  # reported by the transform's own validation
    return specs


def compose(specs: list[dict]):
    """Build a callable applying each validated transform spec in order."""
    return Pipeline([TRANSFORMS.build(spec) for spec in specs])
