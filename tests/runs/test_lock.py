"""The run lock (runs/lock.py) and what RunDir does with it: one holder at a time, named when
refused; free again when its holder releases it or dies, a forked child (a DataLoader worker)
keeping nothing alive; --run-version of a busy folder; stale temporaries cleared on open."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from dlcli.errors import ConfigError
from dlcli.runs import lock
from dlcli.runs.rundir import RunDir
from tests.conftest import REPO


def test_a_held_run_is_refused_naming_pid_and_host_and_is_free_once_released(tmp_path):
    held = lock.acquire(tmp_path)
    me = f"pid {os.getpid()} on {socket.gethostname()}"
    assert json.loads((tmp_path / lock.LOCK_NAME).read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    assert lock.holder(tmp_path) == me
    with pytest.raises(ConfigError) as caught:  # flock locks belong to open files: one process conflicts too
        lock.acquire(tmp_path)
    assert str(caught.value) == f"run {tmp_path} is in use by {me}" and caught.value.exit_code == 2
    held.release()
    assert lock.holder(tmp_path) is None
    lock.acquire(tmp_path).release()


def test_holder_of_a_folder_never_locked_is_none_and_creates_nothing(tmp_path):
    assert lock.holder(tmp_path) is None and lock.holder(tmp_path / "missing") is None
    assert list(tmp_path.iterdir()) == []


HOLD_FORK_DIE = """
import os, signal, sys, time
from dlcli.runs import lock
lock.acquire(sys.argv[1])
child = os.fork()
if child == 0:  # like a DataLoader worker: lives on a while after its parent is killed
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # (the test reads the parent's output to its end)
    os.dup2(devnull, 2)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_lock_dies_with_a_sigkilled_holder_even_while_its_forked_child_lives(tmp_path):
    proc = subprocess.run([sys.executable, "-c", HOLD_FORK_DIE, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    child = int(proc.stdout)
    try:
        os.kill(child, 0)  # the child is still alive ...
        assert lock.holder(tmp_path) is None  # ... and holds nothing: the lock was its parent's
        lock.acquire(tmp_path).release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_run_version_of_a_busy_folder_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "n" / "v7"
    folder.mkdir(parents=True)
    held = lock.acquire(folder)
    try:
        with pytest.raises(ConfigError, match=f"^run {folder} is in use by pid {os.getpid()} on "):
            RunDir.create(str(tmp_path), "n", "v7")
        assert [p.name for p in folder.iterdir()] == [lock.LOCK_NAME]
    finally:
        held.release()
    run = RunDir.create(str(tmp_path), "n", "v7")  # free, and empty but for its lock file: it is taken
    try:
        assert lock.holder(folder) == f"pid {os.getpid()} on {socket.gethostname()}"
    finally:
        run.release()


def test_run_version_of_a_used_free_folder_is_still_exit_2_already_exists(tmp_path):
    folder = tmp_path / "n" / "v1"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("name: n\n")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        RunDir.create(str(tmp_path), "n", "v1")
    assert not (folder / lock.LOCK_NAME).exists()


def plant_temporaries(run_dir):
    """What saves cut short by a SIGKILL leave (names as checkpoint.save, _link, write_summary and
    plot_curves make them)."""
    names = ["checkpoints/.step-000000537.pt.x1y2z3.tmp", "checkpoints/.last.pt.4242.tmp",
             "checkpoints/.final.pt.abcdef.tmp", ".summary.json.4242.tmp", ".metrics.jsonl.4242.tmp",
             "curves.tmp.png"]
    for name in names:
        (run_dir / name).write_bytes(b"half")
    return names


def test_opening_a_run_removes_its_stale_temporaries_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    kept = ["config.yaml", "metrics.jsonl", "summary.json", "curves.png", "checkpoints/step-000000018.pt",
            "checkpoints/last.pt", "checkpoints/best.pt"]
    for name in kept:
        (tmp_path / name).write_text("x")
    planted = plant_temporaries(tmp_path)
    run = RunDir.open(tmp_path)
    try:
        assert sorted(str(p.relative_to(tmp_path)) for p in run.stale_temporaries) == sorted(planted)
        left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
        assert left == sorted([*kept, lock.LOCK_NAME])
    finally:
        run.release()


def test_a_busy_run_keeps_its_temporaries(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    planted = plant_temporaries(tmp_path)  # the holder may be writing them right now
    held = lock.acquire(tmp_path)
    try:
        with pytest.raises(ConfigError, match="is in use by"):
            RunDir.open(tmp_path)
    finally:
        held.release()
    assert all((tmp_path / name).exists() for name in planted)
