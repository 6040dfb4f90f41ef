"""torchvision architectures through the MODELS registry: every one builds for a 3x64x64 and a 1x28x28
input, or is refused with a config error naming the size it needs; the list stays torchvision's."""

import re

import pytest
import torch

from dlcli.components.models import MODELS
from dlcli.components.models.notes import collected
from dlcli.components.models.torchvision_models import ARCHITECTURES
from dlcli.errors import ConfigError

# Built for real, with a training-mode forward pass: a few small ones (googlenet: no auxiliary outputs). The others
# are built on the meta device (shapes only: no memory, no initialisation, no arithmetic), which runs
# the same adaptation and input-size code in milliseconds; building all 80 for real takes minutes.
REAL = {"resnet18", "mobilenet_v3_small", "squeezenet1_1", "googlenet"}
SIZE_PROBLEM = re.compile(r"needs (images of at least \d+x\d+|square images whose side is a multiple of \d+)")


def widths_on_cpu(monkeypatch) -> None:
    """RegNets compute their block widths with tensors, which the meta device cannot read back."""
    from torchvision.models.regnet import BlockParams

    compute = BlockParams.from_init_params.__func__  # type: ignore[attr-defined]

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return compute(cls, *args, **kwargs)

    monkeypatch.setattr(BlockParams, "from_init_params", classmethod(on_cpu))


def build(name: str, input_shape, classes: int = 5, **options):
    return MODELS.build(MODELS.validate({"name": name, **options}, "model"), tuple(input_shape), classes)


def test_the_registry_lists_every_torchvision_classifier():
    from torchvision import models

    assert sorted(ARCHITECTURES) == sorted(models.list_models(module=models))
    assert set(ARCHITECTURES) <= set(MODELS.tagged("torchvision"))


@pytest.mark.parametrize("input_shape", [(3, 64, 64), (1, 28, 28)], ids=["3x64x64", "1x28x28"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_or_names_the_size_it_needs(name, input_shape, monkeypatch):
    widths_on_cpu(monkeypatch)
    with torch.device("cpu" if name in REAL else "meta"):
        try:
            model = build(name, input_shape)
        except ConfigError as err:
            assert SIZE_PROBLEM.search(str(err)), str(err)
            assert f"got {input_shape[1]}x{input_shape[2]}" in str(err)
            return
        out = model.train()(torch.zeros(2, *input_shape))  # the training path (no auxiliary outputs)
    assert out.shape == (2, 5)


@pytest.mark.parametrize("name, input_shape, needs", [
    ("alexnet", (1, 28, 28), "at least 64x64"), ("vit_b_16", (1, 28, 28), "multiple of 16"),
    ("maxvit_t", (3, 64, 64), "multiple of 224"), ("inception_v3", (3, 64, 64), "at least 75x75"),
])
def test_sizes_an_architecture_cannot_take_are_config_errors(name, input_shape, needs):
    with torch.device("meta"), pytest.raises(ConfigError, match=needs):
        build(name, input_shape)


def test_small_images_and_one_channel_build_the_expected_layers():
    model = build("resnet18", (1, 28, 28), classes=7)
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7) and model.fc.out_features == 7
    cifar = build("resnet18", (1, 32, 32), classes=10, stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1) and cifar.conv1.in_channels == 1
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    with pytest.raises(ConfigError, match=r"model\.stem: unknown key"):
        MODELS.validate({"name": "vgg11", "stem": "cifar"}, "model")  # the stem option is the ResNets'


def test_a_typo_gets_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet81' \(did you mean 'resnet18'\?\)"):
        MODELS.validate({"name": "resnet81"}, "model")


def test_pretrained_file_loads_and_the_head_is_reinitialised_for_other_class_counts(tmp_path):
    from torchvision.models import resnet18

    source = resnet18()
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    with collected() as notes:
        model = build("resnet18", (3, 32, 32), classes=10, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.weight.shape == (10, 512)
    assert any("classifier head fc.weight, fc.bias skipped (1000 classes in the weights, 10 here)" in n for n in notes)


def test_one_channel_from_pretrained_weights_sums_the_rgb_kernels(tmp_path):
    from torchvision.models import resnet18

    source = resnet18()
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    with collected() as notes:
        model = build("resnet18", (1, 40, 40), classes=1000, weights=str(tmp_path / "r18.pt"))
    assert torch.equal(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.fc.weight, source.fc.weight)  # same class count: the head is kept
    grey = torch.rand(2, 1, 40, 40)
    source.eval(), model.eval()
    torch.testing.assert_close(model(grey), source(grey.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)
    assert any("summed" in n for n in notes)


def test_safetensors_weights_load(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import mobilenet_v3_small

    source = mobilenet_v3_small()
    save_file(source.state_dict(), str(tmp_path / "m.safetensors"))
    model = build("mobilenet_v3_small", (3, 32, 32), classes=3, weights=str(tmp_path / "m.safetensors"))
    assert torch.equal(model.features[0][0].weight, source.features[0][0].weight)
