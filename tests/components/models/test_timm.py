"""`model: {name: timm, arch: ...}` (the optional timm extra): builds adapted to the data, loads a
local weights file, and without timm is a config error with the install line."""

import sys

import pytest
import torch

from dlcli.components.models import MODELS
from dlcli.components.models.notes import collected
from dlcli.errors import ConfigError

timm = pytest.importorskip("timm")


def build(input_shape, classes=5, **options):
    return MODELS.build(MODELS.validate({"name": "timm", **options}, "model"), tuple(input_shape), classes)


def test_a_timm_architecture_builds_for_the_data():
    model = build((1, 28, 28), arch="resnet18")
    assert model.conv1.in_channels == 1 and model.fc.out_features == 5
    assert model.train()(torch.zeros(2, 1, 28, 28)).shape == (2, 5)


def test_unknown_architecture_gets_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown timm architecture 'resnet81' \(did you mean 'resnet18'\?\)"):
        build((3, 32, 32), arch="resnet81")


def test_a_size_the_architecture_cannot_take_is_a_config_error():
    with torch.device("meta"), pytest.raises(ConfigError, match=r"timm vit_tiny_patch16_224 .*224"):
        build((3, 32, 32), arch="vit_tiny_patch16_224")


def test_a_local_weights_file_loads_with_a_new_head(tmp_path):
    source = timm.create_model("resnet18", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    with collected() as notes:
        model = build((1, 32, 32), classes=3, arch="resnet18", weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))  # timm's adaptation
    assert any("classifier head fc.weight, fc.bias skipped" in note for note in notes)


def test_without_timm_the_error_gives_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ConfigError, match=r"timm models need the timm package: pip install 'dlcli\[timm\]'"):
        build((3, 32, 32), arch="resnet18")
