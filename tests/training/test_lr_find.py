"""The learning-rate range test: it restores weights and optimizer state bitwise, ramps the LR
geometrically, suggests the LR of steepest descent, and `dlcli lr-find` leaves only its plot."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.training.build import build_trainer
from dlcli.training.lr_find import lr_range_test, suggest
from tests.conftest import tiny_digits_config


def test_the_range_test_restores_weights_and_optimizer_state_bitwise():
    trainer, _ = build_trainer(validate(tiny_digits_config(optimizer={"name": "adam", "lr": 0.01})))
    for _, batch in trainer.train_batches.iterate(0, None):  # an optimizer with moments to restore
        loss, _ = trainer.task.loss(trainer.model, batch)
        trainer.backward(loss, trainer.scaler)
        trainer.apply_step(trainer.optimizer, trainer.scaler, None, trainer.model.parameters())
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items()}

    result = lr_range_test(trainer, 1e-5, 1.0, 30)

    assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in trainer.optimizer.state_dict()["state"][0].items())
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01
    lrs = result["lrs"]
    assert lrs[0] == pytest.approx(1e-5) and result["steps"] == len(lrs) == len(result["losses"])
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # geometric: one factor per step
    assert result["suggestion"] in lrs


def test_the_suggestion_is_where_the_loss_falls_fastest():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    losses = [2.0 - 1.5 / (1 + math.exp(-(i - 35) / 2)) for i in range(60)]  # steepest fall at step 35
    assert suggest(lrs, losses) == lrs[35]
    assert suggest(lrs[:12], losses[:12]) is None  # too few steps past the ignored start


def test_a_task_with_its_own_optimizers_is_refused():
    gan = SimpleNamespace(task=SimpleNamespace(own_step=True, name="gan", networks=("generator", "discriminator")))
    with pytest.raises(ConfigError, match="lr-find: task gan trains 2 networks"):
        lr_range_test(gan, 1e-6, 1.0, 20)


def test_lr_find_writes_only_its_plot_and_prints_the_override(tmp_path, write_config):
    cfg = write_config(tiny_digits_config())
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["lr-find", str(cfg), "--output-dir", str(runs), "--steps", "40", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["plot"] == str(runs / "tiny" / "lr_find.png") and found["suggestion"] > 0
    assert [p.relative_to(runs).as_posix() for p in runs.rglob("*")] == ["tiny", "tiny/lr_find.png"]
    plain = CliRunner().invoke(app, ["lr-find", str(cfg), "--output", str(tmp_path / "f.png"), "--steps", "40"])
    assert plain.exit_code == 0 and "use: optimizer.lr=" in plain.stdout


@pytest.mark.parametrize("args, words", [
    (["--min", "1", "--max", "0.1"], "--min/--max: need 0 < min < max"),
    (["--steps", "3"], "--steps"),
    (["optimizer.lr=-1"], "optimizer.lr"),
])
def test_bad_options_are_exit_2_and_write_nothing(args, words, tmp_path, write_config):
    cfg = write_config(tiny_digits_config())
    result = CliRunner().invoke(app, ["lr-find", str(cfg), "--output-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2 and words in result.output
    assert not (tmp_path / "runs").exists()
