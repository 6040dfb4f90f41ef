"""Stochastic weight averaging: swa.pt holds the equal average of the epoch-end weights from
start_epoch on with batch-norm statistics recomputed over the training data, SWALR sets the LR from
then on, an exact mid-epoch resume inside the SWA phase, and bad settings (exit 2, key named)."""

import io
import shutil
from pathlib import Path

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import ConfigError
from tests.conftest import tiny_digits_config

SWA = {"start_epoch": 2, "lr": 0.005, "anneal_epochs": 1}


def swa_config(**train):
    config = tiny_digits_config(model={"name": "mlp", "hidden": [16], "batch_norm": True},
                                train={"epochs": 3, "device": "cpu", "swa": SWA, "keep_last": 100,
                                       "monitor": "train/loss", **train})
    config["data"].update(val_split=0, batch_size=2000)  # one batch an epoch: BN statistics in closed form
    return config


@pytest.fixture(scope="module")
def swa_run(tmp_path_factory):
    from dlcli.training.session import train

    folder = tmp_path_factory.mktemp("swa")
    return train(validate(swa_config()), str(folder / "runs"), None, Progress(3, quiet=True, stream=io.StringIO()))


def test_swa_pt_is_the_equal_average_of_the_epoch_end_weights_from_start_epoch(swa_run):
    from dlcli.training import checkpoint

    folder = Path(swa_run["checkpoints"]["last"]).parent
    ends = [checkpoint.load(path)["model"] for path in sorted(folder.glob("step-*.pt"))]
    assert len(ends) == 3  # one step an epoch: the epoch-end checkpoints of epochs 1, 2, 3
    averaged = checkpoint.load(swa_run["checkpoints"]["swa"])["model"]
    for name in ("1.weight", "1.bias", "4.weight", "4.bias"):
        assert torch.allclose(averaged[name], (ends[1][name] + ends[2][name]) / 2, atol=1e-7), name
    assert swa_run["swa"]["averaged_epochs"] == 2 and swa_run["swa"]["checkpoint"] == swa_run["checkpoints"]["swa"]


def test_the_average_gets_batch_norm_statistics_of_its_own_weights(swa_run):
    from dlcli.data.pipeline import train_batches
    from dlcli.tasks import task_class
    from dlcli.training import checkpoint

    config = validate(swa_config())
    batches, _, _ = train_batches(config, torch.device("cpu"), torch.Generator(), task_class("classification"))
    x = torch.cat([batch.x for _, batch in batches.iterate(0, None)]).flatten(1)
    averaged = checkpoint.load(swa_run["checkpoints"]["swa"])["model"]
    hidden = x @ averaged["1.weight"].T + averaged["1.bias"]  # what the BN layer sees, one batch of all rows
    assert torch.allclose(averaged["2.running_mean"], hidden.mean(0), atol=1e-5)
    assert torch.allclose(averaged["2.running_var"], hidden.var(0), atol=1e-4)


def test_swalr_sets_the_learning_rate_from_start_epoch(swa_run, tmp_path):
    import json

    epochs = [json.loads(line) for line in (Path(swa_run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    lrs = [record["lr"] for record in epochs if record.get("event") == "epoch"]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.005) and lrs[2] == pytest.approx(0.005)


def test_a_mid_epoch_resume_inside_the_swa_phase_is_bitwise_exact(tmp_path, write_config, run_cli):
    config = tiny_digits_config(train={"epochs": 3, "device": "cpu", "checkpoint_every": {"steps": 4},
                                       "keep_last": 100, "log_interval": 100, "swa": SWA})
    cfg = write_config(config)
    assert run_cli("train", cfg, "--output-dir", tmp_path / "full", "-q").returncode == 0
    shutil.copytree(tmp_path / "full" / "tiny" / "v1", tmp_path / "part")
    resumed = run_cli("train", cfg, "-q", "--resume", tmp_path / "part" / "checkpoints" / "step-000000040.pt")
    assert resumed.returncode == 0 and "resuming at epoch 3, step 40" in resumed.stderr, resumed.stderr
    for name in ("last.pt", "swa.pt"):
        a = torch.load(tmp_path / "full" / "tiny" / "v1" / "checkpoints" / name, weights_only=True)
        b = torch.load(tmp_path / "part" / "checkpoints" / name, weights_only=True)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
        assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


@pytest.mark.parametrize("train, words", [
    ({"epochs": 2, "swa": {"start_epoch": 3, "lr": 0.01}}, "train.swa.start_epoch: 3 is after the last epoch"),
    ({"swa": {"start_epoch": 1}}, "train.swa.lr: required key is missing"),
    ({"swa": {"start_epoch": 1, "lr": 0.01}, "ema": {}}, "train.swa: averages the weights too"),
    ({"swa": {"start_epoch": 1, "lr": 0.01, "anneal_strategy": "step"}}, "train.swa.anneal_strategy"),
])
def test_bad_swa_settings_are_config_errors_naming_the_key(train, words):
    with pytest.raises(ConfigError) as err:
        validate(tiny_digits_config(train=train))
    assert any(words in p for p in err.value.problems), err.value.problems
