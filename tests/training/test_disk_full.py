"""A full disk in the middle of a run: the checkpoint store names the file, the free space and the
checkpoint it keeps, whether torch.save fails with an OSError or with its C++ writer's RuntimeError;
and what else fails on the full disk afterwards (the curves, summary.json) never replaces that error.
No tmpfs here: the writes are made to fail by patching (as a full disk makes them fail)."""

import errno
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.errors import TrainingError
from dlcli.runs.rundir import RunDir
from dlcli.training import checkpoint
from dlcli.training import summary as summaries
from dlcli.training.checkpoint import CheckpointStore
from tests.conftest import tiny_digits_config

STEPS_PER_EPOCH = 18  # tiny digits: 1,150 training samples in batches of 64
# What torch.save raised on a full disk (issue 15; also what it raises writing to /dev/full).
TORCH_ENOSPC = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
SECTIONS = {"config": {}, "meta": {"class_names": [], "input_shape": [], "kind": "image"}, "model": {},
            "state": {"epoch": 0, "step": 0}}


def payload(i: int) -> dict:
    import torch

    return {**SECTIONS, "i": i, "w": torch.full((1000,), float(i))}


def torch_runtime_error(obj, handle, *args, **kwargs):
    handle.write(b"PK\x03\x04 half a checkpoint")
    raise RuntimeError(TORCH_ENOSPC)


def torch_os_error(obj, handle, *args, **kwargs):
    handle.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


FAILURES = {"RuntimeError": (torch_runtime_error, "the write stopped short, most likely a full disk ("),
            "OSError": (torch_os_error, "disk full (")}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_a_failed_checkpoint_write_names_file_free_space_and_the_kept_checkpoint(tmp_path, monkeypatch, kind):
    import torch

    fails, reason = FAILURES[kind]
    folder = tmp_path / "checkpoints"
    store = CheckpointStore(folder, keep_last=3)
    store.save(payload(1), step=10, is_best=True)
    monkeypatch.setattr(torch, "save", fails)
    with pytest.raises(TrainingError) as caught:
        store.save(payload(2), step=20, is_best=True)
    monkeypatch.undo()

    message = str(caught.value)
    assert message.startswith(f"could not save checkpoint {folder / 'step-000000020.pt'}: {reason}"), message
    assert message.endswith(f" MiB free); the previous checkpoint {folder / 'last.pt'} is kept"), message
    assert caught.value.exit_code == 1 and "free disk space" in caught.value.hint
    for name in ("last.pt", "best.pt", "step-000000010.pt"):
        assert checkpoint.load(folder / name)["i"] == 1, name
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt", "step-000000010.pt"]  # no temp left


def test_a_first_checkpoint_that_cannot_be_written_says_none_is_kept(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "save", torch_runtime_error)
    with pytest.raises(TrainingError, match=r"MiB free\); no earlier checkpoint exists$"):
        CheckpointStore(tmp_path, keep_last=1).save(payload(1), step=1, is_best=False)


def test_a_runtime_error_that_is_no_failed_write_passes_unchanged(tmp_path, monkeypatch):
    import torch

    def bug(obj, handle, *args, **kwargs):
        raise RuntimeError("a bug in a state_dict")

    monkeypatch.setattr(torch, "save", bug)
    with pytest.raises(RuntimeError, match="^a bug in a state_dict$"):
        CheckpointStore(tmp_path, keep_last=1).save(payload(1), step=1, is_best=False)


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_disk_full_mid_run_is_exit_1_with_the_save_error_even_when_the_plot_fails_too(tmp_path, monkeypatch, kind):
    """The second checkpoint cannot be written; then the curves cannot be either (the disk is still
    full): the save's error is the one printed and the one summary.json records."""
    import torch

    from dlcli.cli import app

    fails, reason = FAILURES[kind]
    real_save, calls = torch.save, []

    def second_save_fails(obj, handle, *args, **kwargs):
        calls.append(1)
        return fails(obj, handle) if len(calls) == 2 else real_save(obj, handle, *args, **kwargs)

    def plot_on_full_disk(metrics_path, out_path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", second_save_fails)
    monkeypatch.setattr(summaries, "plot_curves", plot_on_full_disk)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 3, "device": "cpu", "log_interval": 10})))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "-q"])
    monkeypatch.undo()

    run = tmp_path / "runs" / "tiny" / "v1"
    last = run / "checkpoints" / "last.pt"
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: could not save checkpoint {run / 'checkpoints' / 'step-000000036.pt'}: "
                                f"{reason}"), errors
    assert errors[0].endswith(f" MiB free); the previous checkpoint {last} is kept"), errors
    assert "warning: could not write curves.png: No space left on device" in result.stderr.splitlines()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == errors[0].removeprefix("error: ")
    assert checkpoint.load(last)["state"]["step"] == STEPS_PER_EPOCH
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*.tmp.png"))


class Run:
    """What write_up needs of a run directory: each step can be made to fail."""

    def __init__(self, tmp_path: Path, failing: set[str]):
        self.path, self.failing, self.done = tmp_path, failing, []

    def _step(self, name: str) -> None:
        if name in self.failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        self.done.append(name)

    def close(self):
        self._step("close")

    def write_summary(self, summary):
        self._step("summary")


class Messages:
    def __init__(self):
        self.lines = []

    def message(self, text):
        self.lines.append(text)


def test_after_a_failure_every_step_of_the_write_up_is_tried_and_each_failure_is_a_warning(tmp_path):
    run, progress, failure = Run(tmp_path, {"close", "summary"}), Messages(), TrainingError("first")
    summaries.write_up(run, {"status": "failed"}, failure, progress)
    assert progress.lines == ["warning: could not write metrics.jsonl: close: No space left on device",
                              "warning: could not write summary.json: summary: No space left on device"]
    assert failure.summary == {"status": "failed"}


def test_after_a_success_the_first_failed_write_up_step_is_raised_once_the_rest_were_tried(tmp_path):
    run, progress = Run(tmp_path, {"close"}), Messages()
    with pytest.raises(OSError, match="No space left on device"):
        summaries.write_up(run, {"status": "finished"}, None, progress)
    assert run.done == ["summary"] and progress.lines == []


def test_a_summary_write_cut_short_keeps_the_previous_summary(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.write_summary({"status": "interrupted"})
    real_write = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        real_write(self, text[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError):
        run.write_summary({"status": "failed"})
    monkeypatch.undo()
    assert json.loads((tmp_path / "summary.json").read_text()) == {"status": "interrupted"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
