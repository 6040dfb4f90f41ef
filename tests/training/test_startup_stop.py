"""A stop signal during start-up (building, opening the run directory, before the first step) is
handled like any other: exit 128 + N and a summary.json that says what was saved, never the default
handler's silent death. In process (the signal sent at a chosen moment) and with real processes
(SIGTERM the moment "run directory:" appears on stderr)."""

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.runs.rundir import RunDir
from dlcli.training import checkpoint
from tests.conftest import REPO, tiny_digits_config


def invoke(*args):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def guarded():
    """SIGTERM reaches a recorder instead of killing pytest when dlcli's handler is not installed;
    yields the list of SIGTERMs that reached it."""
    reached = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: reached.append(s))
    try:
        yield reached
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 5})))
    return path


def sigterm_when_config_is_written(monkeypatch):
    """SIGTERM to this process as the run directory gets its config.yaml (fresh run and resume)."""
    real_write = RunDir.write_text

    def write_then_signal(self, name, text):
        real_write(self, name, text)
        if name == "config.yaml":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunDir, "write_text", write_then_signal)


def test_sigterm_while_the_run_directory_is_set_up_exits_143_with_a_summary_and_no_checkpoint(
        tmp_path, monkeypatch, guarded, cfg):
    sigterm_when_config_is_written(monkeypatch)
    result = invoke("train", cfg, "--output-dir", tmp_path / "runs", "-q")

    run = (tmp_path / "runs" / "tiny" / "v1").resolve()
    assert guarded == [], "the SIGTERM reached the previous handler instead of dlcli's"
    assert result.exit_code == 143, result.stderr
    lines = result.stderr.strip().splitlines()
    message = "stopped by SIGTERM before the first step; no checkpoint was written yet"
    assert lines[-2] == f"error: {message}", lines
    assert lines[-1] == f"hint: nothing to resume; start it again: dlcli train {cfg}", lines
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["error"] == message
    assert summary["steps"] == 0 and summary["checkpoints"] == {"last": None, "best": None, "final": None}
    assert not any((run / "checkpoints").iterdir())


def test_sigterm_while_a_resume_is_set_up_exits_143_and_leaves_last_pt_as_it_was(
        tmp_path, monkeypatch, guarded, cfg):
    assert invoke("train", cfg, "--output-dir", tmp_path / "runs", "--run-version", "r", "-q").exit_code == 0
    run = (tmp_path / "runs" / "tiny" / "r").resolve()
    before = (run / "checkpoints" / "last.pt").read_bytes()
    sigterm_when_config_is_written(monkeypatch)
    result = invoke("train", cfg, "train.epochs=3", "--resume", run, "-q")

    assert guarded == [] and result.exit_code == 143, result.stderr
    message = f"stopped by SIGTERM before the first step; {run / 'checkpoints' / 'last.pt'} is unchanged"
    assert result.stderr.strip().splitlines()[-2] == f"error: {message}", result.stderr
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["error"] == message and summary["epochs"] == 2


def test_sigterm_while_building_exits_143_and_writes_nothing(tmp_path, monkeypatch, guarded, cfg):
    from dlcli.training import build

    real_build = build.build_trainer

    def build_then_signal(*args, **kwargs):
        built = real_build(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return built

    monkeypatch.setattr(build, "build_trainer", build_then_signal)
    result = invoke("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert guarded == [] and result.exit_code == 143, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: stopped by SIGTERM before training started; nothing was written", result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_real_sigterm_as_soon_as_the_run_directory_is_printed_always_exits_143_with_a_summary(tmp_path):
    """Issue 15: about one such SIGTERM in seven used to kill the process (rc -15, no summary.json)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 30, "device": "cpu", "log_interval": 5})))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "dlcli", "train", str(cfg), "--output-dir", str(tmp_path),
                                 "--run-version", f"a{attempt}", "-q"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = []
        for line in proc.stderr:  # read the stream: signal the moment the line appears
            seen.append(line)
            if line.startswith("run directory:"):
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.stderr.read()
        code = proc.wait(timeout=120)
        stderr = "".join(seen) + rest
        assert code == 143, f"attempt {attempt}: rc {code}\n{stderr}"
        run = tmp_path / "tiny" / f"a{attempt}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "interrupted", summary
        if summary["steps"] == 0:  # stopped before the first step
            assert summary["error"] == "stopped by SIGTERM before the first step; no checkpoint was written yet"
            assert not any((run / "checkpoints").iterdir())
        else:  # the signal came after the check before the first step: stopped after that step, saved
            assert summary["error"].startswith("stopped by SIGTERM at epoch 1, batch "), summary
            assert checkpoint.load(run / "checkpoints" / "last.pt")["state"]["step"] == summary["steps"]
