"""The composition root's opt-ins: `train.compile` runs the training step through torch.compile
(real inductor compilation: about a minute on 2 cores the first time) and trains what eager trains."""

import io
import shutil

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.training.build import build_trainer
from tests.conftest import tiny_digits_config


def run_epochs(config):
    trainer, _ = build_trainer(validate(config))
    epochs = config["train"]["epochs"]
    for _ in range(epochs):
        trainer.train_epoch(Progress(epochs, quiet=True, stream=io.StringIO()))
    return trainer


@pytest.mark.skipif(not shutil.which("g++"), reason="inductor compiles C++ on CPU with g++")
def test_compiled_step_trains_the_same_weights_as_eager():
    config = tiny_digits_config(model={"name": "mlp", "hidden": [16], "dropout": 0.0},
                                train={"epochs": 1, "device": "cpu"})
    eager = run_epochs(config)
    compiled = run_epochs({**config, "train": {**config["train"], "compile": True}})
    assert type(compiled.forward_model).__name__ == "OptimizedModule"
    for key, value in eager.model.state_dict().items():  # the plain model is what trained and is saved
        torch.testing.assert_close(compiled.model.state_dict()[key], value, atol=1e-4, rtol=1e-3)


def test_compile_without_a_cpp_compiler_is_a_config_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    config = tiny_digits_config(train={"epochs": 1, "device": "cpu", "compile": True})
    with pytest.raises(ConfigError, match="train.compile: torch.compile needs a C\\+\\+ compiler"):
        build_trainer(validate(config))
