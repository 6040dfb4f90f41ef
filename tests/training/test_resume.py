"""Stop signals and `--resume`: a run interrupted mid-epoch and at an epoch boundary by real
signals to real `python -m dlcli train` processes, then resumed, ends bitwise identical to an
uninterrupted run. Plus the second Ctrl-C, exit codes per signal, and what --resume accepts.

The signal tests use a small CNN on synthetic images (a few ms per step, a large validation split
so the epoch end takes a while) and poll metrics.jsonl every few milliseconds.
"""

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import load
from dlcli.training import checkpoint
from dlcli.training.session import train
from tests.conftest import REPO, tiny_digits_config

SIGNAL_CONFIG = {
    "name": "rs",
    "seed": 3,
    "data": {
        "dataset": {"name": "synthetic", "samples": 4000, "shape": [3, 16, 16], "classes": 5},
        "val_split": 0.8,  # 800 training samples (25 steps), 3,200 to validate at each epoch end
        "batch_size": 32,
        "train_transforms": [{"random_crop": {"size": 16, "padding": 2}}, "horizontal_flip",
                             {"normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}],
        "eval_transforms": [{"normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}],
    },
    "model": {"name": "cnn", "channels": [32, 64], "dropout": 0.2, "head": [64], "head_dropout": 0.3},
    "optimizer": {"name": "adam", "lr": 0.001},
    "scheduler": {"name": "step", "step_size": 1, "gamma": 0.8, "warmup_epochs": 0.5},
    "train": {"epochs": 3, "device": "cpu", "log_interval": 1, "monitor": "val/acc"},
    "callbacks": [{"name": "early_stopping", "patience": 5}],
}
TINY_STEPS_PER_EPOCH = 18  # tiny digits: 1,150 training samples in batches of 64


# ---------------------------------------------------------------- helpers


def start_cli(*args, stderr_path: Path, cwd: Path, python_code: str | None = None) -> subprocess.Popen:
    """`python -m dlcli ARGS` (or `python -c CODE ARGS`) in the background, stderr to a file."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", python_code] if python_code else [sys.executable, "-m", "dlcli"]
    with open(stderr_path, "w") as err:
        return subprocess.Popen([*command, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)


def read_records(path: Path) -> list[dict]:
    """metrics.jsonl records; a line being written (or a file being rewritten) is skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def wait_until(proc: subprocess.Popen, stderr_path: Path, condition, what: str, timeout: float = 120.0):
    """Poll `condition()` every 2 ms until it returns something truthy; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{stderr_path.read_text()[-3000:]}")
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    pytest.fail(f"timed out waiting for {what}:\n{stderr_path.read_text()[-3000:]}")


def wait_for_record(proc, stderr_path: Path, log: Path, predicate, what: str) -> dict:
    def condition():
        for record in reversed(read_records(log)):
            if predicate(record):
                return record
        return None

    return wait_until(proc, stderr_path, condition, what)


def finish(proc: subprocess.Popen, stderr_path: Path, timeout: float = 60.0) -> tuple[int, list[str]]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"process did not exit within {timeout}s:\n{stderr_path.read_text()[-3000:]}")
    return proc.returncode, stderr_path.read_text().splitlines()


def strip_seconds(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def deep_equal(a, b) -> bool:
    """Equality of nested checkpoint data, tensors compared bitwise."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b))
    return a == b


def invoke(*args):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def quiet_progress(epochs: int) -> Progress:
    return Progress(epochs, quiet=True, stream=io.StringIO())


# ---------------------------------------------------------------- exact resume through real signals


def test_sigterm_mid_epoch_and_at_epoch_end_then_resume_is_bitwise_identical(tmp_path):
    import torch

    cfg = tmp_path / "rs.yaml"
    cfg.write_text(yaml.safe_dump(SIGNAL_CONFIG, sort_keys=False))
    root = tmp_path / "runs"

    # the reference: one uninterrupted run (in this process)
    reference = train(load(str(cfg)), str(tmp_path / "reference"), "full", quiet_progress(3))
    full_dir = Path(reference["run_dir"])
    full_records = read_records(full_dir / "metrics.jsonl")
    epoch_ends = [r["step"] for r in full_records if r["event"] == "epoch"]
    steps_per_epoch = epoch_ends[0]
    assert epoch_ends == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch] and steps_per_epoch == 25

    run = root / "rs" / "part"
    log = run / "metrics.jsonl"
    hint = f"hint: resume with: dlcli train {cfg} --resume {run.resolve()}"

    # 1. SIGTERM in the middle of epoch 2
    err1 = tmp_path / "stderr1.txt"
    proc = start_cli("train", cfg, "--output-dir", root, "--run-version", "part", "-q", stderr_path=err1, cwd=tmp_path)
    wait_for_record(proc, err1, log, lambda r: r["event"] == "step" and r["epoch"] == 2, "a step of epoch 2")
    proc.send_signal(signal.SIGTERM)
    code, lines = finish(proc, err1)
    assert code == 128 + signal.SIGTERM == 143, "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)
    match = re.fullmatch(r"error: stopped by SIGTERM at epoch 2, batch (\d+) \(step (\d+)\); saved (.+)", lines[-2])
    assert match, lines[-2:]
    batch, step = int(match[1]), int(match[2])
    assert Path(match[3]).resolve() == (run / "checkpoints" / "last.pt").resolve()
    assert lines[-1] == hint
    assert 1 <= batch < steps_per_epoch and step == steps_per_epoch + batch
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == step and saved["state"]["epoch"] == 2
    assert saved["position"]["batch_in_epoch"] == batch
    last_record = read_records(log)[-1]
    assert last_record["event"] == "step" and last_record["step"] == step
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"

    # 2. resume from the run directory; SIGTERM right after the last step of epoch 2 (while validating)
    err2 = tmp_path / "stderr2.txt"
    proc = start_cli("train", cfg, "--resume", run, "-q", stderr_path=err2, cwd=tmp_path)
    wait_for_record(proc, err2, log, lambda r: r["event"] == "step" and r["step"] == 2 * steps_per_epoch,
                    "the last step of epoch 2")
    proc.send_signal(signal.SIGTERM)
    code, lines = finish(proc, err2)
    assert code == 143, "\n".join(lines)
    assert any(f"resuming at epoch 2, step {step}" in line for line in lines), lines
    assert lines[-2] == (f"error: stopped by SIGTERM at end of epoch 2 (step {2 * steps_per_epoch}); "
                         f"saved {run.resolve() / 'checkpoints' / 'last.pt'}"), lines[-2:]
    assert lines[-1] == hint
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 2 * steps_per_epoch and saved["position"]["batch_in_epoch"] == 0
    assert read_records(log)[-1]["event"] == "epoch" and read_records(log)[-1]["epoch"] == 2

    # 3. resume with `auto` (in process) to the end
    result = invoke("train", cfg, "--output-dir", root, "--resume", "auto", "-q")
    assert result.exit_code == 0, result.stderr
    assert f"resuming at epoch 3, step {2 * steps_per_epoch}" in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 3 and summary["steps"] == 3 * steps_per_epoch

    # the interrupted-twice run is the uninterrupted one, bit for bit
    a = torch.load(full_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"weights differ after resume: {different}"
    for i, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][i][key]), (i, key)
    assert deep_equal(a["scheduler"], b["scheduler"]) and deep_equal(a["callbacks"], b["callbacks"])
    assert deep_equal(a["state"] | {"seconds": 0}, b["state"] | {"seconds": 0})  # all but the wall time
    assert strip_seconds(read_records(log)) == strip_seconds(full_records)
    assert summary["best"] == reference["best"] and summary["final"] == reference["final"]


# ---------------------------------------------------------------- a second Ctrl-C

SLOW_SAVE = """
import os, sys, time
real_fsync, calls = os.fsync, []
def slow_fsync(fd):  # checkpoint saves after the first one hang here (the process stays interruptible)
    calls.append(fd)
    if len(calls) > 1:
        time.sleep(120)
    real_fsync(fd)
os.fsync = slow_fsync
sys.argv = ["dlcli", *sys.argv[1:]]
from dlcli.cli import main
main()
"""


def test_second_sigint_aborts_a_save_at_once_and_keeps_the_previous_checkpoint(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 3, "device": "cpu", "log_interval": 5})))
    run = tmp_path / "runs" / "tiny" / "v1"
    folder = run / "checkpoints"
    err = tmp_path / "stderr.txt"
    proc = start_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", stderr_path=err, cwd=tmp_path,
                     python_code=SLOW_SAVE)
    # epoch 1's checkpoint is written; epoch 2's save is in progress (stuck before its fsync)
    wait_until(proc, err, lambda: (folder / "last.pt").exists() and list(folder.glob(".step-000000036.pt.*.tmp")),
               "the epoch-2 checkpoint save")
    proc.send_signal(signal.SIGINT)  # first Ctrl-C: "finish what you are doing, then stop"
    time.sleep(1.0)
    assert proc.poll() is None, err.read_text()  # still saving
    proc.send_signal(signal.SIGINT)  # second Ctrl-C: stop now, not after the save's 120 s hang
    code, lines = finish(proc, err, timeout=60)
    assert code == 130, "\n".join(lines)
    assert lines[-1] == "interrupted" and not any(line.startswith("error: stopped by") for line in lines), lines
    assert "Traceback" not in "\n".join(lines)

    assert not list(folder.glob(".*.tmp")), list(folder.iterdir())  # the half-written file is cleaned up
    assert not (folder / "step-000000036.pt").exists()
    for name in ("last.pt", "best.pt", "step-000000018.pt"):
        payload = checkpoint.load(folder / name)
        assert payload["state"]["epoch"] == 1 and payload["state"]["step"] == TINY_STEPS_PER_EPOCH, name
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


# ---------------------------------------------------------------- exit code per signal (in process)


@pytest.fixture
def guarded(request):
    """Replace the process's handler for a signal during the test, so a signal dlcli fails to catch
    is recorded instead of killing pytest; yields the list of signals that reached the guard."""
    reached = []
    signum = request.param
    previous = signal.signal(signum, lambda s, f: reached.append(s))
    try:
        yield signum, reached
    finally:
        signal.signal(signum, previous)


@pytest.mark.parametrize("guarded", [signal.SIGINT, signal.SIGUSR1, signal.SIGTERM], indirect=True,
                         ids=["SIGINT", "SIGUSR1", "SIGTERM"])
def test_one_signal_saves_and_exits_128_plus_signum(tmp_path, monkeypatch, guarded):
    from dlcli.runs.rundir import RunDir

    signum, reached = guarded
    guard = signal.getsignal(signum)
    real_log = RunDir.log

    def log_then_signal(self, record):
        real_log(self, record)
        if record["event"] == "step" and record["step"] == 23:  # epoch 2, batch 5
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(RunDir, "log", log_then_signal)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 3, "device": "cpu", "log_interval": 1})))
    result = invoke("train", cfg, "optimizer.lr=0.02", "callbacks=[]", "--output-dir", tmp_path / "runs", "-q")

    name = signal.Signals(signum).name
    run = (tmp_path / "runs" / "tiny" / "v1").resolve()
    assert result.exit_code == 128 + signum, result.stderr
    assert reached == [], "the signal reached the previous handler instead of dlcli's"
    assert signal.getsignal(signum) is guard  # handlers restored after training
    lines = result.stderr.strip().splitlines()
    assert lines[-2] == f"error: stopped by {name} at epoch 2, batch 5 (step 23); saved {run / 'checkpoints' / 'last.pt'}"
    assert lines[-1] == f"hint: resume with: dlcli train {cfg} optimizer.lr=0.02 'callbacks=[]' --resume {run}"
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert saved["state"]["step"] == 23 and saved["position"]["batch_in_epoch"] == 5
    monkeypatch.setattr(RunDir, "log", real_log)
    resumed = invoke(*shlex.split(lines[-1].removeprefix("hint: resume with: dlcli ")), "-q")
    assert resumed.exit_code == 0, resumed.stderr  # the printed command resumes the run as it was started
    assert "resuming at epoch 2, step 23" in resumed.stderr


# ---------------------------------------------------------------- what --resume accepts (in process)


def tiny_cfg(tmp_path: Path, epochs: int = 2, name: str = "cfg.yaml", **sections) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_digits_config(
        train={"epochs": epochs, "device": "cpu", "log_interval": 5}, **sections)))
    return path


def weights(path: Path) -> dict:
    return checkpoint.load(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_auto_without_an_earlier_run_starts_fresh(tmp_path):
    cfg = tiny_cfg(tmp_path)
    runs = tmp_path / "runs"
    result = invoke("train", cfg, "--output-dir", runs, "--resume", "auto", "-q")
    assert result.exit_code == 0, result.stderr
    assert "resuming" not in result.stderr
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == ["v1"]
    summary = json.loads((runs / "tiny" / "v1" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["steps"] == 2 * TINY_STEPS_PER_EPOCH


@pytest.fixture
def finished_run(tmp_path):
    """A finished 2-epoch tiny run under tmp_path/runs: (config path, run dir)."""
    cfg = tiny_cfg(tmp_path)
    train(load(str(cfg)), str(tmp_path / "runs"), None, quiet_progress(2))
    return cfg, tmp_path / "runs" / "tiny" / "v1"


@pytest.mark.parametrize("override, key", [
    ("optimizer.lr=0.02", "optimizer.lr"),
    ("model.hidden=[16]", "model.hidden"),
    ("data.batch_size=32", "data.batch_size"),
    ("seed=1", "seed"),
    ("train.grad_clip={max_norm: 1.0}", "train.grad_clip"),
])
def test_resume_with_a_different_config_is_exit_2_naming_the_key(finished_run, override, key):
    cfg, run = finished_run
    before = (run / "metrics.jsonl").read_text()
    result = invoke("train", cfg, override, "--resume", run, "-q")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "different config" in errors[0] and key in errors[0], result.stderr
    assert (run / "metrics.jsonl").read_text() == before  # the run is left alone


def test_resume_auto_with_a_different_config_starts_a_new_run(finished_run):
    cfg, run = finished_run
    result = invoke("train", cfg, "optimizer.lr=0.02", "--output-dir", run.parent.parent, "--resume", "auto", "-q")
    assert result.exit_code == 0, result.stderr
    assert "resuming" not in result.stderr
    assert sorted(p.name for p in run.parent.iterdir()) == ["v1", "v2"]


def test_resume_a_finished_run_trains_no_more(finished_run):
    cfg, run = finished_run
    before = weights(run / "checkpoints" / "last.pt")
    trained_for = json.loads((run / "summary.json").read_text())["seconds"]
    epochs_before = [r for r in read_records(run / "metrics.jsonl") if r["event"] == "epoch"]
    # the keys that may change on resume do not block it
    result = invoke("train", cfg, "train.log_interval=3", "train.keep_last=2", "train.on_nan=skip_batch",
                    "output.save_best=false", "--resume", run, "-q")
    assert result.exit_code == 0, result.stderr
    assert [r for r in read_records(run / "metrics.jsonl") if r["event"] == "epoch"] == epochs_before
    assert same_weights(weights(run / "checkpoints" / "last.pt"), before)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2 and summary["steps"] == 2 * TINY_STEPS_PER_EPOCH
    assert sorted(p.name for p in run.parent.iterdir()) == ["v1"]
    # the run's time over all its sessions (earlier ones up to their last checkpoint), not just the last
    assert trained_for > 0 and summary["seconds"] == pytest.approx(trained_for, abs=1.0)


def test_raising_epochs_on_resume_continues_as_if_never_stopped(finished_run, tmp_path):
    cfg, run = finished_run
    result = invoke("train", cfg, "train.epochs=4", "--resume", run / "checkpoints" / "last.pt", "-q")
    assert result.exit_code == 0, result.stderr
    assert f"resuming at epoch 3, step {2 * TINY_STEPS_PER_EPOCH}" in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4 and summary["steps"] == 4 * TINY_STEPS_PER_EPOCH

    # a fresh 4-epoch run (no scheduler: the epoch count changes nothing else) ends the same, bit for bit
    fresh = train(load(str(tiny_cfg(tmp_path, epochs=4, name="four.yaml"))), str(tmp_path / "fresh"), None,
                  quiet_progress(4))
    assert same_weights(weights(run / "checkpoints" / "last.pt"),
                        weights(Path(fresh["run_dir"]) / "checkpoints" / "last.pt"))
    assert strip_seconds(read_records(run / "metrics.jsonl")) == \
        strip_seconds(read_records(Path(fresh["run_dir"]) / "metrics.jsonl"))


def test_resuming_twice_inside_one_epoch_still_ends_as_if_never_stopped(tmp_path):
    """A preemptible job can be stopped twice in one epoch: the mid-epoch checkpoint a resumed run
    writes must itself be resumable (it once lost the epoch's shuffle state)."""
    import shutil

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 5,
                                                            "checkpoint_every": {"steps": 4}, "keep_last": 100})))
    reference = Path(train(load(str(cfg)), str(tmp_path / "ref"), None, quiet_progress(2))["run_dir"])
    once = tmp_path / "once" / "tiny" / "v1"
    shutil.copytree(reference, once)
    result = invoke("train", cfg, "--resume", once / "checkpoints" / "step-000000004.pt", "-q")
    assert result.exit_code == 0, result.stderr
    twice = tmp_path / "twice" / "tiny" / "v1"
    shutil.copytree(once, twice)  # step 8 (mid epoch 1) was written by the resumed run
    result = invoke("train", cfg, "--resume", twice / "checkpoints" / "step-000000008.pt", "-q")
    assert result.exit_code == 0, result.stderr
    assert "resuming at epoch 1, step 8" in result.stderr
    assert same_weights(weights(twice / "checkpoints" / "last.pt"), weights(reference / "checkpoints" / "last.pt"))
    assert strip_seconds(read_records(twice / "metrics.jsonl")) == \
        strip_seconds(read_records(reference / "metrics.jsonl"))


@pytest.mark.parametrize("scheduler", [{"name": "cosine"}, {"name": "onecycle"}])
def test_changing_epochs_under_a_schedule_laid_out_over_them_is_exit_2(tmp_path, scheduler):
    """Raising the total would make a cosine LR jump back up, and onecycle fail mid-run."""
    cfg = tiny_cfg(tmp_path, scheduler=scheduler)
    train(load(str(cfg)), str(tmp_path / "runs"), None, quiet_progress(2))
    run = tmp_path / "runs" / "tiny" / "v1"
    before = (run / "metrics.jsonl").read_text()
    result = invoke("train", cfg, "train.epochs=4", "--resume", run, "-q")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith(
        f"error: --resume: train.epochs cannot change (2 -> 4) with scheduler {scheduler['name']}")
    assert "Traceback" not in result.stderr and (run / "metrics.jsonl").read_text() == before


def test_schedule_names_cover_one_schedule_per_gan_network():
    from dlcli.training.resume import _schedule_names

    assert _schedule_names({"name": "cosine", "warmup_epochs": 1}) == ["cosine"]
    assert _schedule_names({"generator": {"name": "onecycle"}, "discriminator": {"name": "step"}}) == ["onecycle", "step"]
    assert _schedule_names(None) == []


def test_epochs_before_the_interrupted_epoch_is_exit_2(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 5,
                                                            "checkpoint_every": {"steps": 10}, "keep_last": 100})))
    train(load(str(cfg)), str(tmp_path / "runs"), None, quiet_progress(2))
    step20 = tmp_path / "runs" / "tiny" / "v1" / "checkpoints" / "step-000000020.pt"  # inside epoch 2
    assert checkpoint.load(step20)["position"]["batch_in_epoch"] == 20 - TINY_STEPS_PER_EPOCH
    result = invoke("train", cfg, "train.epochs=1", "--resume", step20, "-q")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0] == f"error: --resume: train.epochs=1 is before epoch 2, which {step20} " \
                                            f"stopped in the middle of"


def test_resume_of_a_missing_checkpoint_is_exit_2(tmp_path):
    cfg = tiny_cfg(tmp_path)
    result = invoke("train", cfg, "--resume", tmp_path / "nowhere", "-q")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: --resume: no checkpoint at ")
    assert not (tmp_path / "runs").exists()


def test_resumed_optimizer_keeps_the_kernel_choice_of_this_run():
    """A checkpoint saved by a non-fused optimizer (CPU, or before fused kernels) loaded into a fused one
    (CUDA) must not switch it back: GradScaler's fp16 step depends on how the optimizer was built."""
    import torch

    from dlcli.training.resume import keep_kernel_choice

    model = torch.nn.Linear(3, 2)
    saved = torch.optim.Adam(model.parameters()).state_dict()
    fused = torch.optim.Adam(model.parameters(), fused=True)
    fused.load_state_dict(saved)
    assert not fused.param_groups[0]["fused"]  # what torch's load_state_dict does on its own
    keep_kernel_choice(fused)
    assert fused.param_groups[0]["fused"] is True
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(model(torch.randn(4, 3)).sum()).backward()
    scaler.step(fused)  # the fp16-style step that failed before: grads unscaled inside the fused kernel
    scaler.update()
