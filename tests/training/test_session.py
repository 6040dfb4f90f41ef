"""Training-time faults and guarantees: non-finite losses (on_nan: stop / skip_batch), bitwise
determinism on CPU, and the free-disk-space check. All in-process (no torch import per test)."""

import io
import json
import math
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import DlcliError, TrainingError
from dlcli.tasks.classify import ClassificationTask
from dlcli.training import checkpoint
from dlcli.training.session import train
from tests.conftest import tiny_digits_config

STEPS_PER_EPOCH = 18  # tiny digits: 1,150 training samples in batches of 64


def run_training(config: dict, root: Path, version: str | None = None) -> dict:
    cfg = validate(config)
    return train(cfg, str(root), version, Progress(cfg.train.epochs, quiet=True, stream=io.StringIO()))


def poison_training_losses(monkeypatch, bad_calls: set[int]) -> list[int]:
    """Make the loss of the n-th training forward pass (1-based) NaN for n in bad_calls.

    The NaN flows into backward, so a step taken on it makes the weights NaN."""
    real_loss, calls = ClassificationTask.loss, []

    def loss(self, model, batch):
        value, logits = real_loss(self, model, batch)
        if model.training:
            calls.append(len(calls) + 1)
            if calls[-1] in bad_calls:
                value = value * float("nan")
        return value, logits

    monkeypatch.setattr(ClassificationTask, "loss", loss)
    return calls


def all_finite(state: dict) -> bool:
    import torch

    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- on_nan: stop


def test_huge_learning_rate_stops_with_exit_1_naming_epoch_step_and_causes(tmp_path):
    from dlcli.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(optimizer={"name": "sgd", "lr": 1e30},
                                                     train={"epochs": 2, "device": "cpu", "log_interval": 1})))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, result.stderr
    assert "loss became nan at epoch 1, step " in errors[0] or "loss became inf at epoch 1, step " in errors[0], errors
    assert "likely causes" in hints[0] and "learning rate too high" in hints[0], hints
    run = tmp_path / "runs" / "tiny" / "v1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == errors[0][len("error: "):]
    assert summary["epochs"] == 1 and 0 < summary["steps"] < STEPS_PER_EPOCH
    assert not (run / "checkpoints" / "best.pt").exists() and not (run / "checkpoints" / "last.pt").exists()
    as_json = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "-q", "--json"])
    assert as_json.exit_code == 1  # a script reading stdout still gets the summary, with status and error
    printed = json.loads(as_json.stdout)
    assert printed["status"] == "failed" and printed["error"].startswith("loss became")
    assert printed == json.loads((tmp_path / "runs" / "tiny" / "v2" / "summary.json").read_text())


@pytest.mark.parametrize("train_cfg", [
    {"log_interval": 1},
    {"log_interval": 50},
    {"log_interval": 1, "checkpoint_every": {"steps": 1}},
    {"log_interval": 50, "checkpoint_every": {"steps": 1}},
], ids=["log-every-step", "log-every-50", "log-every-step+save-every-step", "log-every-50+save-every-step"])
def test_nan_in_epoch_2_stops_and_never_saves_non_finite_weights(tmp_path, monkeypatch, train_cfg):
    """A NaN loss at batch 5 of epoch 2: TrainingError naming epoch 2; last.pt and best.pt stay finite."""
    bad_step = STEPS_PER_EPOCH + 5
    poison_training_losses(monkeypatch, {bad_step})
    config = tiny_digits_config(train={"epochs": 3, "device": "cpu", "keep_last": 100, **train_cfg})
    root = tmp_path / "runs"
    with pytest.raises(TrainingError) as caught:
        run_training(config, root)
    message = str(caught.value)
    assert message.startswith("loss became nan at epoch 2, step "), message
    stopped_at = int(message.rsplit(" ", 1)[1])
    assert bad_step <= stopped_at <= 2 * STEPS_PER_EPOCH
    assert caught.value.hint and "likely causes" in caught.value.hint

    run = root / "tiny" / "v1"
    folder = run / "checkpoints"
    best = checkpoint.load(folder / "best.pt")
    assert best["state"]["step"] == STEPS_PER_EPOCH and all_finite(best["model"])
    last = checkpoint.load(folder / "last.pt")
    assert all_finite(last["model"]), f"last.pt (step {last['state']['step']}) holds non-finite weights"
    assert last["state"]["step"] < bad_step
    for numbered in sorted(folder.glob("step-*.pt")):  # no checkpoint at all holds the broken state
        assert all_finite(checkpoint.load(numbered)["model"]), numbered.name
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------- on_nan: skip_batch


@pytest.mark.parametrize("bad", [
    {3, 7, STEPS_PER_EPOCH + 6, 2 * STEPS_PER_EPOCH},
    {1, STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH + 2},
], ids=["mid-epoch-and-last-batch", "first-batches-of-epochs"])
def test_skip_batch_skips_and_counts_non_finite_batches_and_finishes(tmp_path, monkeypatch, bad):
    """Logged every step: a skipped first batch leaves nothing to average yet, which is not a NaN loss."""
    calls = poison_training_losses(monkeypatch, bad)
    config = tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 1, "on_nan": "skip_batch"})
    summary = run_training(config, tmp_path / "runs")

    assert len(calls) == 2 * STEPS_PER_EPOCH
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["steps"] == 2 * STEPS_PER_EPOCH
    assert summary["skipped_batches"] == len(bad)
    run = Path(summary["run_dir"])
    assert json.loads((run / "summary.json").read_text())["skipped_batches"] == len(bad)
    logged = records(run)
    assert all(isinstance(r["train/loss"], float) and math.isfinite(r["train/loss"]) for r in logged)
    assert all(math.isfinite(r["val/loss"]) for r in logged if r["event"] == "epoch")
    last = checkpoint.load(run / "checkpoints" / "last.pt")
    assert all_finite(last["model"]) and last["state"]["skipped_batches"] == len(bad)


def test_skip_batch_leaves_training_unchanged_when_nothing_is_skipped(tmp_path):
    """on_nan may change on resume, so it must not change the arithmetic: same weights either way."""
    import torch

    base = tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 5})
    skip = tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 5, "on_nan": "skip_batch"})
    a = run_training(base, tmp_path / "a")
    b = run_training(skip, tmp_path / "b")
    wa = checkpoint.load(Path(a["run_dir"]) / "checkpoints" / "last.pt")["model"]
    wb = checkpoint.load(Path(b["run_dir"]) / "checkpoints" / "last.pt")["model"]
    assert b["skipped_batches"] == 0
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- determinism


def test_deterministic_runs_with_the_same_seed_are_bitwise_identical(tmp_path):
    import torch

    config = tiny_digits_config(
        model={"name": "cnn", "channels": [8], "dropout": 0.1, "head": [32], "head_dropout": 0.2},
        data={"dataset": {"name": "digits"}, "val_split": 0.2, "batch_size": 64,
              "train_transforms": [{"random_crop": {"size": 8, "padding": 1}}, {"normalize": "digits"}],
              "eval_transforms": [{"normalize": "digits"}]},
        train={"epochs": 1, "device": "cpu", "log_interval": 5, "deterministic": True},
        seed=11)
    first = run_training(config, tmp_path / "runs", "one")
    assert torch.are_deterministic_algorithms_enabled()
    second = run_training(config, tmp_path / "runs", "two")
    a = checkpoint.load(Path(first["run_dir"]) / "checkpoints" / "last.pt")
    b = checkpoint.load(Path(second["run_dir"]) / "checkpoints" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(records(Path(first["run_dir"]))) == strip(records(Path(second["run_dir"])))

    other = run_training({**config, "seed": 12}, tmp_path / "runs", "three")  # the seed does matter
    c = checkpoint.load(Path(other["run_dir"]) / "checkpoints" / "last.pt")
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


# ---------------------------------------------------------------- free disk space


def test_no_free_disk_space_fails_before_training(tmp_path, monkeypatch):
    import dlcli.training.session as training

    Usage = namedtuple("Usage", "total used free")
    seen = []

    def full_disk(path):
        seen.append(Path(path))
        return Usage(10**12, 10**12 - 4096, 4096)

    monkeypatch.setattr(training.shutil, "disk_usage", full_disk)
    real_loss = ClassificationTask.loss
    forward_passes = []
    monkeypatch.setattr(ClassificationTask, "loss",
                        lambda self, model, batch: (forward_passes.append(1), real_loss(self, model, batch))[1])

    with pytest.raises(DlcliError) as caught:
        run_training(tiny_digits_config(), tmp_path / "runs")
    assert "not enough free disk space" in str(caught.value) and caught.value.exit_code == 1

    from dlcli.cli import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "not enough free disk space" in errors[0] and "0 MiB free" in errors[0], errors
    assert "Traceback" not in result.stderr

    assert forward_passes == []  # nothing trained
    assert seen and all(p.is_relative_to(tmp_path / "runs") for p in seen)  # the run's own file system
    for run in (tmp_path / "runs" / "tiny").iterdir():
        assert not (run / "metrics.jsonl").exists()
        assert not any((run / "checkpoints").iterdir())


def test_enough_free_disk_space_trains(tmp_path, monkeypatch):
    import dlcli.training.session as training

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(training.shutil, "disk_usage", lambda path: Usage(10**12, 0, 50 * 2**20))
    summary = run_training(tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 10}),
                           tmp_path / "runs")
    assert summary["status"] == "finished"


def test_output_dir_that_cannot_be_created_fails_before_training(tmp_path):
    """An output path under a regular file can't hold a run directory: exit-1 error, nothing trained."""
    from dlcli.errors import DlcliError
    from dlcli.runs.rundir import RunDir

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(DlcliError, match="cannot create the run directory"):
        RunDir.create(str(blocker / "runs"), "n", None)


def test_runs_root_precedence(monkeypatch):
    from types import SimpleNamespace

    from dlcli.training.session import runs_root

    config = SimpleNamespace(output=SimpleNamespace(dir="from_config"))
    monkeypatch.delenv("DLCLI_RUNS_DIR", raising=False)
    assert runs_root(None, config) == "from_config"
    monkeypatch.setenv("DLCLI_RUNS_DIR", "/scratch/runs")
    assert runs_root(None, config) == "/scratch/runs"
    assert runs_root("cli_dir", config) == "cli_dir"


def test_tensorboard_event_files_hold_the_metrics(tmp_path):
    import io

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.training.session import train
    from tests.conftest import tiny_digits_config

    config = validate({**tiny_digits_config(), "logging": {"tensorboard": True}})
    summary = train(config, str(tmp_path), None, Progress(2, quiet=True, stream=io.StringIO()))
    events = EventAccumulator(str(tmp_path / "tiny" / "v1" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/acc", "lr"} <= tags
    val_acc = [e.value for e in events.Scalars("val/acc")]
    assert len(val_acc) == 2 and abs(val_acc[-1] - summary["final"]["val/acc"]) < 1e-6
