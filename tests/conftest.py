"""Shared fixtures: run the real CLI in a subprocess, and tiny configs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def image_cache_folder(tmp_path_factory):
    """Image caches (data.cache: auto) go to a folder of the test session's, never ~/.cache/dlcli;
    the CLI's subprocesses inherit it."""
    os.environ["DLCLI_CACHE_DIR"] = str(tmp_path_factory.mktemp("image_cache"))
    yield os.environ["DLCLI_CACHE_DIR"]


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m dlcli ARGS` in tmp_path; returns the CompletedProcess."""

    def run(*args, cwd=None, timeout=300, env=None):
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], cwd=cwd or tmp_path,
                              capture_output=True, text=True, timeout=timeout, env=full_env)

    return run


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: its timing-sensitive training runs stay fast when other
    processes share the 2 cores (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_config(tmp_path):
    """Write a dict as YAML into tmp_path and return its path."""

    def write(data: dict, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def train_then_resume(run_cli, cfg, tmp_path, name: str, step: int) -> tuple[dict, dict]:
    """Train `cfg` (run name `name`) uninterrupted into tmp_path/full, then resume a copy of that run
    from its checkpoint at optimizer step `step` (in the first epoch); both runs' last.pt, the
    uninterrupted one first."""
    import shutil

    import torch

    full = run_cli("train", cfg, "--output-dir", tmp_path / "full", "-q")
    assert full.returncode == 0, full.stderr
    reference, copy = tmp_path / "full" / name / "v1", tmp_path / "part"
    shutil.copytree(reference, copy)
    resumed = run_cli("train", cfg, "-q", "--resume", copy / "checkpoints" / f"step-{step:09d}.pt")
    assert resumed.returncode == 0 and f"resuming at epoch 1, step {step}" in resumed.stderr, resumed.stderr
    return tuple(torch.load(run / "checkpoints" / "last.pt", weights_only=True) for run in (reference, copy))


def tiny_digits_config(**sections) -> dict:
    """A fast digits MLP config; keyword arguments replace whole sections."""
    config = {
        "name": "tiny",
        "seed": 0,
        "data": {"dataset": {"name": "digits"}, "val_split": 0.2, "batch_size": 64,
                 "train_transforms": [{"normalize": "digits"}], "eval_transforms": [{"normalize": "digits"}]},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 2, "device": "cpu", "log_interval": 10},
    }
    config.update(sections)
    return config
