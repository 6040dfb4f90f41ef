"""DDP through torchrun on CPU (gloo), with real processes: 2 processes with global batch B train
the same weights as 1 process with batch B; their checkpoint evaluates in one process with the
accuracy the run reported; SIGTERM to the launcher leaves a resumable checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, tiny_digits_config

MODELS = {"mlp": {"name": "mlp", "hidden": [32], "dropout": 0.0},
          "cnn": {"name": "cnn", "channels": [8, 16], "batch_norm": False, "head": [16]}}


def dlcli(args, cwd, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, **kwargs)


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_two_processes_match_one_process_with_the_same_global_batch(model, tmp_path, write_config):
    # 1,150 training images in batches of 64: every batch, the last included, splits evenly over 2 ranks.
    config = write_config(tiny_digits_config(model=MODELS[model], optimizer={"name": "sgd", "lr": 0.1},
                                             train={"epochs": 2, "device": "cpu"}))
    one = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "one", "-q", "--json"], tmp_path)
    two = dlcli(["train", config, "--output-dir", tmp_path, "--run-version", "two", "-q", "--json",
                 "--devices", "2"], tmp_path)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "tiny" / "one"), weights(tmp_path / "tiny" / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # The DDP run's reported validation accuracy is what one process measures on its checkpoint.
    summary = json.loads((tmp_path / "tiny" / "two" / "summary.json").read_text())
    ev = dlcli(["eval", tmp_path / "tiny" / "two" / "checkpoints" / "last.pt", "--split", "val", "--json",
                "--device", "cpu"], tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["metrics"]["acc"] == pytest.approx(summary["final"]["val/acc"], abs=1e-9)


def test_sigterm_to_the_launcher_leaves_a_resumable_checkpoint(tmp_path, write_config):
    config = write_config(tiny_digits_config(train={"epochs": 400, "device": "cpu"}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(config), "--output-dir", str(tmp_path),
                                 "--run-version", "r", "-q", "--devices", "2"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "tiny" / "r"
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.5)  # the first epoch's checkpoint: training is under way on both ranks
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["epochs"] < 400
    resumed = dlcli(["train", config, "--output-dir", tmp_path, "-q", "--resume", run, "--devices", "2",
                     f"train.epochs={summary['epochs'] + 1}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {summary['steps']}:" in resumed.stderr  # continues from the saved step (mid-epoch or not)
    final = json.loads((run / "summary.json").read_text())
    assert final["status"] == "finished" and final["epochs"] == summary["epochs"] + 1


def test_batch_that_does_not_split_over_the_processes_is_a_config_error(tmp_path, write_config):
    config = write_config(tiny_digits_config(data={"dataset": {"name": "digits"}, "batch_size": 63}))
    result = dlcli(["train", config, "--output-dir", tmp_path, "--devices", "2"], tmp_path)
    assert result.returncode == 1  # the launcher reports the failed ranks
    assert "data.batch_size: the global batch 63 does not split evenly over 2 processes" in result.stderr


@pytest.mark.parametrize("args", [["--devices", "0"], ["train.devices=0"], ["train.devices=-3"]])
def test_bad_device_counts_are_usage_errors_and_launch_nothing(args, tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app

    config = write_config(tiny_digits_config())
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2, result.output
    assert "devices" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing written, no worker launched
