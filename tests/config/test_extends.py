"""extends: base configs, later keys and overrides win, cycles and missing files are errors."""

import pytest
import yaml

from dlcli.config import load
from dlcli.errors import ConfigError

BASE = {
    "name": "base",
    "data": {"dataset": {"name": "digits"}, "batch_size": 32, "val_split": 0.2},
    "model": {"name": "mlp", "hidden": [64], "dropout": 0.1},
    "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.8, 0.9]},
    "train": {"epochs": 5, "device": "cpu"},
}


def write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_child_inherits_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", {
        "extends": "base.yaml",
        "data": {"batch_size": 128},                 # merged into the base's data section
        "model": {"dropout": 0.3},                   # no name: merged, hidden kept
        "optimizer": {"name": "sgd", "lr": 0.1},     # a new name: replaces the component whole
    })
    config = load(str(child), ["train.epochs=2"])
    assert config.name == "child"  # the base's name is not inherited
    assert config.data.batch_size == 128 and config.data.val_split == 0.2
    assert config.model["hidden"] == [64] and config.model["dropout"] == 0.3
    assert config.optimizer["name"] == "sgd" and config.optimizer["lr"] == 0.1 and "betas" not in config.optimizer
    assert config.train.epochs == 2 and config.train.device == "cpu"


def test_chains_resolve_relative_to_each_file(tmp_path):
    (tmp_path / "bases").mkdir()
    write(tmp_path / "bases" / "root.yaml", BASE)
    write(tmp_path / "bases" / "mid.yaml", {"extends": "root.yaml", "train": {"epochs": 9}})
    leaf = write(tmp_path / "leaf.yaml", {"extends": "bases/mid.yaml", "seed": 4})
    config = load(str(leaf))
    assert config.train.epochs == 9 and config.seed == 4 and config.model["name"] == "mlp"


@pytest.mark.parametrize("layout, message", [
    ({"a.yaml": {"extends": "b.yaml"}, "b.yaml": {"extends": "a.yaml"}}, "circular"),
    ({"a.yaml": {"extends": "missing.yaml"}}, "file not found"),
    ({"a.yaml": {"extends": 3}}, "expected a file path"),
    ({"a.yaml": {"extends": "b.yaml"}, "b.yaml": ["not", "a", "mapping"]}, "top level must be a mapping"),
])
def test_bad_extends_are_config_errors(tmp_path, layout, message):
    for name, data in layout.items():
        write(tmp_path / name, data)
    with pytest.raises(ConfigError, match=message):
        load(str(tmp_path / "a.yaml"))


def test_errors_in_the_merged_config_are_reported(tmp_path):
    write(tmp_path / "base.yaml", BASE)
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "optimizer": {"lr": -1}})
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        load(str(child))
