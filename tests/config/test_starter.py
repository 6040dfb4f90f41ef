"""dlcli init: every offered model x dataset starting config validates; bad choices are exit 2."""

import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import load
from dlcli.config.starter import DATASET_LINES, MODEL_LINES

PAIRS = [(m, d) for m in MODEL_LINES for d in DATASET_LINES if d != "csv" or m == "mlp"]


@pytest.mark.parametrize("model, dataset", PAIRS)
def test_starting_configs_validate(tmp_path, model, dataset):
    result = CliRunner().invoke(app, ["init", "--model", model, "--dataset", dataset])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# ") and "Run: dlcli train" in result.stdout
    path = tmp_path / "my.yaml"
    path.write_text(result.stdout)
    config = load(str(path))
    assert config.model["name"] == model and config.data.dataset["name"] == dataset


@pytest.mark.parametrize("args, message", [
    (["--model", "cnnn"], "did you mean 'cnn'"),
    (["--dataset", "cifar"], "available:"),
    (["--model", "cnn", "--dataset", "csv"], "mlp"),
])
def test_bad_choices(args, message):
    result = CliRunner().invoke(app, ["init", *args])
    assert result.exit_code == 2 and message in result.output
