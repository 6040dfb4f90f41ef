"""Every torchvision classification architecture as a model of its own: `model: {name: resnet18}`.

One registry entry per architecture (not one `torchvision` entry with an `arch` choice) so that
`dlcli list models` shows each with its options, the JSON Schema completes them, and a typo gets
the registry's did-you-mean. The names are listed here, not read from torchvision, because config
checks import no torch; tests/components/models/test_torchvision.py keeps the list equal to
`torchvision.models.list_models(module=torchvision.models)`.

The builders adapt the architecture to the data (components/models/vision.py): the class count
sizes the head, other channel counts adapt the first convolution, `stem: cifar` suits 32x32
images on ResNets, and an input the architecture cannot take is a config error naming the size.
"""

import inspect
from collections.abc import Callable
from typing import Literal

from dlcli.components.models.registry import MODELS

# family -> architectures, in torchvision's naming
FAMILIES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet",),
    "convnext": ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "efficientnet": tuple(f"efficientnet_b{i}" for i in range(8)) + ("efficientnet_v2_s", "efficientnet_v2_m",
                                                                      "efficientnet_v2_l"),
    "googlenet": ("googlenet",),
    "inception": ("inception_v3",),
    "maxvit": ("maxvit_t",),
    "mnasnet": ("mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"),
    "mobilenet": ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"),
    "regnet": tuple(f"regnet_{kind}_{size}" for kind in "xy"
                    for size in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf"))
    + ("regnet_y_128gf",),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
               "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"),
    "shufflenet": ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"),
    "squeezenet": ("squeezenet1_0", "squeezenet1_1"),
    "swin": ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"),
    "vgg": tuple(f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn")),
    "vit": ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
}
ARCHITECTURES = {arch: family for family, archs in FAMILIES.items() for arch in archs}
Stem = Literal["default", "cifar"]


def _builder(arch: str, family: str) -> Callable:
    def build(input_shape, num_classes, load_weights: bool = True, **options):
        from dlcli.components.models.vision import build_torchvision

        return build_torchvision(arch, family, tuple(input_shape), num_classes, load_weights=load_weights, **options)

    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("input_shape", positional), inspect.Parameter("num_classes", positional),
                  inspect.Parameter("load_weights", positional, default=True),
                  inspect.Parameter("weights", keyword, default=None, annotation=str | None)]
    if family == "resnet":  # the 3x3 stride-1 stem without max-pool for 32x32 images
        parameters.append(inspect.Parameter("stem", keyword, default="default", annotation=Stem))
    build.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # the registry reads it
    build.__name__ = arch
    build.__doc__ = (f"torchvision {arch} ({family}); weights: DEFAULT, a weight name (e.g. IMAGENET1K_V1) "
                     f"or a .pth/.pt/.safetensors file")
    return build


for _arch, _family in ARCHITECTURES.items():
    MODELS.register(_arch, tags=("torchvision", _family, "weights"))(_builder(_arch, _family))
