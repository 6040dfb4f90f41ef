"""Weight EMA: the average follows the closed form, warm-up and every_n_steps, validation and the
checkpoints' weights are the average (the trained weights kept beside them), exact mid-epoch resume,
and bad values (exit 2, key named)."""

import io

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import ConfigError
from dlcli.training.build import build_trainer
from dlcli.training.ema import WeightEma
from dlcli.training.engine import EpochHooks
from tests.conftest import tiny_digits_config, train_then_resume


def quiet():
    return Progress(1, quiet=True, stream=io.StringIO())


def test_the_average_is_the_closed_form_exponential_average_of_the_steps():
    config = validate(tiny_digits_config(train={"epochs": 1, "device": "cpu", "ema": {"decay": 0.9}}))
    trainer, _ = build_trainer(config)
    snapshot = lambda: {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    weights = [snapshot()]  # step 0: the average starts as the initial weights
    trainer.train_epoch(quiet(), hooks=EpochHooks(after_step=lambda: weights.append(snapshot())))
    weights.append(snapshot())  # after the last step (no hook there)
    assert len(weights) == trainer.state.step + 1 > 5
    for name, averaged in trainer.ema.model.state_dict().items():
        if not averaged.is_floating_point():
            continue
        expected = weights[0][name].clone()
        for step_weights in weights[1:]:
            expected = 0.9 * expected + 0.1 * step_weights[name]
        assert torch.allclose(averaged, expected, atol=1e-6), name


def test_warmup_follows_the_weights_and_every_n_steps_skips_the_others():
    model = torch.nn.Linear(2, 1)
    ema = WeightEma(model, decay=0.5, warmup_steps=2, every_n_steps=2)
    torch.nn.init.constant_(model.weight, 4.0)
    ema.update(model, 1)  # not a multiple of 2: nothing
    assert not torch.equal(ema.model.weight, model.weight)
    ema.update(model, 2)  # inside the warm-up: a copy
    assert torch.equal(ema.model.weight, model.weight)
    torch.nn.init.constant_(model.weight, 8.0)
    ema.update(model, 4)  # averaging: 0.5 * 4 + 0.5 * 8
    assert torch.allclose(ema.model.weight, torch.full_like(model.weight, 6.0))


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    from dlcli.training.session import train

    folder = tmp_path_factory.mktemp("ema")
    config = validate(tiny_digits_config(train={"epochs": 3, "device": "cpu", "ema": {"decay": 0.95}}))
    return train(config, str(folder / "runs"), None, Progress(3, quiet=True, stream=io.StringIO()))


def test_validation_and_checkpoints_use_the_average_and_keep_the_trained_weights(ema_run):
    from dlcli.inference.evaluate import evaluate_checkpoint
    from dlcli.training import checkpoint

    assert ema_run["ema"] == {"decay": 0.95, "warmup_steps": 0, "every_n_steps": 1}
    payload = checkpoint.load(ema_run["checkpoints"]["last"])
    averaged, trained = payload["model"], payload["train_model"]
    assert set(averaged) == set(trained) and any(not torch.equal(averaged[k], trained[k]) for k in averaged)
    result = evaluate_checkpoint(ema_run["checkpoints"]["last"], "val", [], "cpu")
    assert result["metrics"]["acc"] == pytest.approx(ema_run["final"]["val/acc"])  # val/acc is the average's


def test_a_run_with_ema_resumes_mid_epoch_bitwise(tmp_path, write_config, run_cli):
    config = tiny_digits_config(train={"epochs": 2, "device": "cpu", "checkpoint_every": {"steps": 5},
                                       "keep_last": 100, "log_interval": 100, "ema": {"decay": 0.9}})
    a, b = train_then_resume(run_cli, write_config(config), tmp_path, "tiny", 5)
    for section in ("model", "train_model"):
        assert all(torch.equal(a[section][k], b[section][k]) for k in a[section]), section


def test_resuming_a_run_without_ema_with_ema_on_is_refused_before_anything_changes(tmp_path, write_config,
                                                                                     run_cli):
    cfg = write_config(tiny_digits_config(train={"epochs": 1, "device": "cpu"}))
    assert run_cli("train", cfg, "--output-dir", tmp_path, "-q").returncode == 0
    resumed = run_cli("train", cfg, "-q", "--resume", tmp_path / "tiny" / "v1", "train.epochs=2", "train.ema.decay=0.9")
    assert resumed.returncode == 2 and "train.ema" in resumed.stderr


@pytest.mark.parametrize("ema, key", [({"decay": 1.0}, "train.ema.decay"), ({"every_n_steps": 0}, "train.ema.every_n_steps"),
                                      ({"warmup": 5}, "train.ema.warmup")])
def test_bad_ema_settings_are_config_errors_naming_the_key(ema, key):
    with pytest.raises(ConfigError) as err:
        validate(tiny_digits_config(train={"ema": ema}))
    assert any(p.startswith(key) for p in err.value.problems), err.value.problems
