"""torchvision architectures adapted to the dataset (imports torch; registered in torchvision_models.py).

- the class count: torchvision builds the head with `num_classes`, so it is never typed by hand;
- pretrained weights are loaded before any adaptation (components/models/pretrained.py), with the
  head skipped and left freshly initialised when the class count differs;
- an input with other than 3 channels: the first convolution takes that many. With pretrained
  weights its kernels are the RGB kernels summed (1 channel: a grey image x gives what (x, x, x)
  gave the RGB network) or, for other counts, their mean repeated and scaled by 3/C;
- `stem: cifar` (ResNets): a 3x3 stride-1 first convolution and no max-pool, so a 32x32 image is
  not shrunk to 8x8 before the first block (the usual CIFAR ResNet);
- the input size is checked with one forward pass on a single blank image: a size the
  architecture cannot take is a ConfigError naming the size it needs.
"""

from dlcli.components.models.notes import note
from dlcli.errors import ConfigError, first_line

# Architectures whose input side must be a multiple of a fixed size (the ViT patch grid; MaxViT's
# 7x7 partitions after a 32x downsampling).
MULTIPLE_OF = {"vit_b_16": 16, "vit_b_32": 32, "vit_l_16": 16, "vit_l_32": 32, "vit_h_14": 14, "maxvit_t": 224}
# Sides tried, smallest first, to name the size an architecture needs when the given one fails.
CANDIDATE_SIDES = (32, 48, 64, 75, 96, 128, 160, 192, 224, 256, 299, 384, 512)


def build_torchvision(arch: str, family: str, input_shape: tuple, num_classes: int, *, load_weights: bool = True,
                      weights: str | None = None, stem: str = "default"):
    """The torchvision model `arch` for images of `input_shape` (C, H, W) and `num_classes` classes;
    `load_weights=False` (eval, infer, export: the checkpoint's weights follow) skips reading `weights`."""
    import warnings

    from torchvision import models

    from dlcli.components.models import pretrained

    if len(input_shape) != 3:
        raise ConfigError(f"model: {arch} takes images (channels x height x width); this data gives "
                          f"inputs of shape {list(input_shape)}")
    kwargs = _size_arguments(arch, family, input_shape, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's notes on its own default init
        model = models.get_model(arch, num_classes=num_classes, **kwargs)
    loaded = weights is not None and load_weights
    if weights is not None and loaded:
        pretrained.load_into(model, pretrained.read(arch, weights), num_classes, f"model.weights {weights}")
    if stem == "cifar":  # a new first convolution, taking the data's channels
        _cifar_stem(model, input_shape[0], loaded)
    elif input_shape[0] != 3:
        _adapt_first_conv(model, input_shape[0], loaded)
    check_input(model, arch, input_shape)
    return model


def _size_arguments(arch: str, family: str, input_shape: tuple, weights: str | None) -> dict:
    """Builder arguments that depend on the image size, after checking the size fits the grid."""
    _, height, width = input_shape
    kwargs: dict = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}
    if family not in ("vit", "maxvit"):
        return kwargs
    from dlcli.components.models import pretrained

    if weights and not pretrained.is_file(weights):  # the weights' position embeddings fix the size
        side = pretrained.weights_enum(arch, weights).meta["min_size"][0]
        if (height, width) != (side, side):
            raise ConfigError(f"model: {arch} with weights {weights} needs {side}x{side} images (got "
                              f"{height}x{width}); resize them in data.train_transforms and data.eval_transforms")
    step = MULTIPLE_OF[arch]
    if height != width or height % step:
        need = max(step, -(-max(height, width) // step) * step)
        raise ConfigError(f"model: {arch} needs square images whose side is a multiple of {step} (got "
                          f"{height}x{width}); e.g. {{resize: [{need}, {need}]}} in data.train_transforms "
                          f"and data.eval_transforms")
    return {"image_size": height} if family == "vit" else {"input_size": (height, width)}


def _cifar_stem(model, channels: int, pretrained_weights: bool) -> None:
    from torch import nn

    model.conv1 = nn.Conv2d(channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    if pretrained_weights:
        note("stem: cifar: conv1 is a new 3x3 stride-1 convolution (freshly initialised, not pretrained)")


def _adapt_first_conv(model, channels: int, pretrained_weights: bool) -> None:
    """Replace the first 3-channel convolution by one taking `channels` channels."""
    import torch
    from torch import nn

    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
                 None)
    if found is None:
        raise ConfigError(f"model: found no 3-channel first convolution to adapt to {channels}-channel images")
    name, conv = found
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,  # type: ignore[arg-type]
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)  # type: ignore[arg-type]
    if pretrained_weights:
        with torch.no_grad():
            kernel = conv.weight.sum(1, keepdim=True)
            new.weight.copy_(kernel if channels == 1 else (kernel / channels).repeat(1, channels, 1, 1))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
        how = "summed" if channels == 1 else f"averaged and repeated for {channels} channels"
        note(f"{name}: adapted to {channels}-channel images (pretrained RGB kernels {how})")
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def check_input(model, arch: str, input_shape: tuple) -> None:
    """One forward pass of a blank image, in eval mode (no running statistic moves, no random draw):
    an input the architecture cannot take is a ConfigError naming a side that works."""

    problem = _forward_problem(model, input_shape)
    if problem is None:
        return
    channels, height, width = input_shape
    need = next((side for side in CANDIDATE_SIDES if side > min(height, width)
                 and _forward_problem(model, (channels, side, side)) is None), None)
    wanted = f"needs images of at least {need}x{need}" if need else "cannot take this input"
    raise ConfigError(f"model: {arch} {wanted} (got {height}x{width}: {problem}); "
                      f"resize them in data.train_transforms and data.eval_transforms")


def _forward_problem(model, input_shape: tuple) -> str | None:
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError, AssertionError) as err:
        return first_line(err)[:160]
    finally:
        model.train(was_training)
    return None
