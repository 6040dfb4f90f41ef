"""dlcli schema: a valid JSON Schema that accepts every shipped config and rejects bad ones."""

import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from tests.conftest import REPO, tiny_digits_config


@pytest.fixture(scope="module")
def validator():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(validator, path):
    assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []


@pytest.mark.parametrize("change", [
    {"trian": {"epochs": 3}},                                  # unknown section
    {"optimizer": {"name": "adamm", "lr": 0.1}},               # unknown optimizer
    {"optimizer": {"name": "adam", "lr": -1}},                 # negative lr
    {"optimizer": {"name": "adam", "momentum": 0.9}},          # a parameter adam doesn't take
    {"model": {"name": "mlp", "hidden": "wide"}},              # wrong type
    {"train": {"precision": "fp8"}},                           # not an allowed value
])
def test_bad_configs_are_rejected(validator, change):
    config = {**tiny_digits_config(), **change}
    assert list(validator.iter_errors(config))


def test_transform_forms(validator):
    good = tiny_digits_config()
    good["data"]["train_transforms"] = ["horizontal_flip", {"random_crop": {"size": 8, "padding": 1}},
                                        {"resize": 8}, {"normalize": "digits"}]
    assert list(validator.iter_errors(good)) == []
    bad = tiny_digits_config()
    bad["data"]["train_transforms"] = [{"random_cropp": {"size": 8}}]
    assert list(validator.iter_errors(bad))


def test_name_may_be_left_out_as_dlcli_allows(validator):
    config = tiny_digits_config()
    del config["name"]  # dlcli names the run after the file
    assert list(validator.iter_errors(config)) == []


def test_a_file_that_extends_another_may_hold_partial_sections(validator):
    assert list(validator.iter_errors({"extends": "base.yaml", "data": {"batch_size": 32},
                                       "optimizer": {"lr": 0.01}})) == []
    assert list(validator.iter_errors({"extends": "base.yaml", "trian": {"epochs": 3}}))  # still no unknown keys
