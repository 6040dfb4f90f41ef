"""One process per run directory, with real processes (issue 15: two `--resume auto` jobs trained
in one folder; one died, metrics.jsonl held duplicated steps). A run held by a live (here:
SIGSTOPped) process refuses every other way in: --resume RUN_DIR, --resume auto, --run-version;
the holder ends normally with a clean log; a SIGKILLed holder leaves no stale lock, and the
resume that follows clears the temporaries it left. Plus, in process: under DDP only rank 0 locks."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from dlcli.config import validate
from dlcli.runs import lock
from dlcli.training import checkpoint
from tests.conftest import REPO, tiny_digits_config

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
STEPS_PER_EPOCH = 18  # tiny digits: 1,150 training samples in batches of 64


def start(*args, stderr):
    return subprocess.Popen([sys.executable, "-m", "dlcli", "train", *map(str, args)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for(proc, condition, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def steps_logged(run) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["event"] == "step"]


def test_a_busy_run_directory_refuses_other_processes_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 3, "device": "cpu", "log_interval": 1})))
    root = tmp_path / "runs"
    run = (root / "tiny" / "live").resolve()
    with open(tmp_path / "holder.txt", "w") as err:
        holder = start(cfg, "--output-dir", root, "--run-version", "live", "-q", stderr=err)
    wait_for(holder, lambda: (run / "checkpoints" / "last.pt").exists(), "the first checkpoint")
    holder.send_signal(signal.SIGSTOP)  # alive and holding the run, for as long as the others take
    try:
        assert lock.holder(run) == f"pid {holder.pid} on {socket.gethostname()}"
        others = {how: subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(cfg), "--output-dir", str(root),
                                         *how.split(), "-q"], env=ENV, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
                  for how in (f"--resume {run}", "--resume auto", "--run-version live")}  # all at once
        results = {how: (proc.communicate(timeout=300)[1], proc.returncode) for how, proc in others.items()}
    finally:
        holder.send_signal(signal.SIGCONT)
    for how, (stderr, code) in results.items():
        lines = stderr.strip().splitlines()
        assert code == 2, f"{how}: rc {code}\n{stderr}"
        prefix = "--resume auto: " if how == "--resume auto" else ""
        assert lines[-2] == f"error: {prefix}run {run} is in use by pid {holder.pid} on {socket.gethostname()}", \
            f"{how}:\n{stderr}"
        assert lines[-1].startswith("hint: one process per run directory"), f"{how}:\n{stderr}"
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["live"]  # auto started no run beside it

    assert holder.wait(timeout=300) == 0, (tmp_path / "holder.txt").read_text()
    assert steps_logged(run) == list(range(1, 3 * STEPS_PER_EPOCH + 1))  # each step once, none lost
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"

    # a holder SIGKILLed while it trains: its lock goes with it
    with open(tmp_path / "killed.txt", "w") as err:
        killed = start(cfg, "train.epochs=4", "--resume", run, "-q", stderr=err)
    wait_for(killed, lambda: lock.holder(run) == f"pid {killed.pid} on {socket.gethostname()}", "the lock")
    killed.kill()
    assert killed.wait(timeout=60) == -signal.SIGKILL
    planted = [run / "checkpoints" / ".step-000000999.pt.k1ll3d.tmp", run / "checkpoints" / ".last.pt.99999.tmp",
               run / ".summary.json.99999.tmp", run / "curves.tmp.png"]
    for path in planted:  # what saves cut short by the kill leave (the kill may have left some itself)
        path.write_bytes(b"half")
    stale = sorted(p for pattern in (".*.tmp", "*.tmp.png") for p in [*run.glob(pattern), *run.glob(f"*/{pattern}")])
    resumed = subprocess.run([sys.executable, "-m", "dlcli", "train", str(cfg), "train.epochs=4", "--resume",
                              str(run), "-q"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed {len(stale)} temporary file(s) left by a save that was cut short" in resumed.stderr
    assert not any(path.exists() for path in stale)
    assert steps_logged(run) == list(range(1, 4 * STEPS_PER_EPOCH + 1))
    assert checkpoint.load(run / "checkpoints" / "last.pt")["state"]["epoch"] == 4
    assert lock.holder(run) is None


def test_under_ddp_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    from dlcli.runs.rundir import NullRun
    from dlcli.training.build import build_trainer
    from dlcli.training.opening import open_run
    from dlcli.training.session import train
    from tests.training.test_resume import quiet_progress

    config = validate(tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 10}))
    run = tmp_path / "tiny" / "r"
    train(config, str(tmp_path), "r", quiet_progress(1))
    trainer, _ = build_trainer(config)
    held = lock.acquire(run)  # as rank 0 of a DDP job would while its other ranks open the run
    try:
        monkeypatch.setenv("RANK", "1")
        opened, payload = open_run(config, trainer, str(tmp_path), None, str(run))
        assert isinstance(opened, NullRun) and payload["state"]["epoch"] == 1
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(Exception, match=f"run {run} is in use by pid {os.getpid()}"):
            open_run(config, trainer, str(tmp_path), None, str(run))
    finally:
        held.release()


def test_resuming_a_busy_run_that_has_no_checkpoint_yet_says_it_is_busy(tmp_path):
    from typer.testing import CliRunner

    from dlcli.cli import app
    from dlcli.runs.rundir import RunDir

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    run = RunDir.create(str(tmp_path), "tiny", "starting")  # as a run that has not saved yet holds it
    try:
        for target in (run.path, run.path / "checkpoints" / "last.pt"):
            result = CliRunner().invoke(app, ["train", str(cfg), "--resume", str(target), "-q"])
            assert result.exit_code == 2, result.stderr
            assert result.stderr.splitlines()[0] == \
                f"error: run {run.path.resolve()} is in use by pid {os.getpid()} on {socket.gethostname()}"
    finally:
        run.release()
