"""The image cache end to end, in real processes: `dlcli cache` builds, lists and clears; two
builders wait on one lock and one builds; a build killed with SIGKILL is rebuilt, never used; a
corrupt image is exit 3 naming it, or skipped and counted; a run resumed mid-epoch on the cached
path ends bitwise where the uninterrupted one did."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dlcli.data.cache_entries import entry_key
from tests.conftest import REPO, train_then_resume
from tests.data.test_datasets import image_folder_config, make_image_folder


def cache_config(folder, cache, **data) -> dict:
    config = image_folder_config(folder, cache=str(cache), **data)
    config["data"]["train_transforms"] = [{"random_resized_crop": {"size": 8, "scale": [0.5, 1.0]}},
                                          {"horizontal_flip": {}}]
    return config


def start(args, cwd, stderr):
    return subprocess.Popen([sys.executable, "-m", "dlcli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_cache_builds_then_finds_lists_and_clears(tmp_path, write_config, run_cli):
    cache = tmp_path / "cache"
    cfg = write_config(cache_config(make_image_folder(tmp_path / "colours"), cache))
    first = run_cli("cache", cfg, "--workers", "1", "--json")
    assert first.returncode == 0, first.stderr
    (row,) = json.loads(first.stdout)
    assert row["split"] == "train" and row["images"] == 18 and row["size"] == [10, 10] and row["built"] is True
    assert "caching 18 images at 10x10" in first.stderr
    again = run_cli("cache", cfg)
    assert again.returncode == 0 and "already cached" in again.stdout and "caching" not in again.stderr
    listed = run_cli("cache", "--list", "--dir", cache, "--json")
    (entry,) = json.loads(listed.stdout)["caches"]
    assert entry["state"] == "complete" and entry["images"] == 18 and entry["bytes"] > 18 * 300
    cleared = run_cli("cache", "--clear", "--dir", cache)
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 1 cache(s)")
    assert "no image caches in" in run_cli("cache", "--list", "--dir", cache).stdout


def test_cache_usage_errors_are_exit_2(tmp_path, write_config, run_cli):
    from tests.conftest import tiny_digits_config

    assert run_cli("cache").returncode == 2
    assert run_cli("cache", "--list", "--clear").returncode == 2
    elsewhere = run_cli("cache", write_config(image_folder_config(tmp_path), "any.yaml"), "--dir", tmp_path / "x")
    assert elsewhere.returncode == 2 and "--dir: only with --list or --clear" in elsewhere.stderr
    digits = run_cli("cache", write_config(tiny_digits_config()))
    assert digits.returncode == 2 and "'digits' is not read from image files" in digits.stderr
    off = run_cli("cache", write_config(image_folder_config(tmp_path, cache="off"), "off.yaml"))
    assert off.returncode == 2 and "data.cache: off" in off.stderr


def test_two_builders_wait_on_one_lock_and_one_builds(tmp_path, write_config):
    cache = tmp_path / "cache"
    folder = make_image_folder(tmp_path / "colours")
    cfg = write_config(cache_config(folder, cache))
    spec = {"channels": 3, "size": [10, 10], "resize": True}
    cache.mkdir()
    with open(cache / f"{entry_key(str(folder), spec)}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if a third process were building: both must wait
        logs = [tmp_path / f"err{i}.txt" for i in range(2)]
        handles = [open(log, "w") for log in logs]
        builders = [start(["cache", cfg, "--json", "--workers", "0"], tmp_path, handle) for handle in handles]
        wait_for(lambda: all("waiting for another process" in log.read_text() for log in logs))
        fcntl.flock(lock, fcntl.LOCK_UN)
    rows = [json.loads(builder.communicate(timeout=120)[0])[0] for builder in builders]
    for handle in handles:
        handle.close()
    assert all(builder.returncode == 0 for builder in builders)
    assert sorted(row["built"] for row in rows) == [False, True]
    assert sum("caching 18 images" in log.read_text() for log in logs) == 1


def slow_folder(root):
    """40 images whose last 4 are large: the build is slow once the first batch is written."""
    from PIL import Image

    folder = make_image_folder(root, per_class=12)
    for i in range(4):
        Image.new("RGB", (7000, 7000), (200, 10, 10)).save(folder / "red" / f"zz_large_{i}.png")
    return folder


def test_a_stop_signal_while_train_builds_the_cache_stops_at_once(tmp_path, write_config):
    cache = tmp_path / "cache"
    cfg = write_config(cache_config(slow_folder(tmp_path / "colours"), cache))
    log = tmp_path / "err.txt"
    with open(log, "w") as handle:
        trainer = start(["train", cfg, "--output-dir", tmp_path / "runs", "-q", "data.num_workers=1"], tmp_path, handle)
        wait_for(lambda: "caching 40 images" in log.read_text() or trainer.poll() is not None)
        trainer.send_signal(signal.SIGINT)
        trainer.wait(timeout=60)
    assert trainer.returncode == 130, log.read_text()
    assert "stopped by SIGINT before training started; nothing was written" in log.read_text()
    assert "cached 40 images" not in log.read_text() and "Traceback" not in log.read_text()
    assert not (tmp_path / "runs").exists() and not [p for p in cache.iterdir() if p.is_dir()]


def test_sigterm_to_dlcli_cache_ends_the_build_and_keeps_nothing(tmp_path, write_config):
    cache = tmp_path / "cache"
    cfg = write_config(cache_config(slow_folder(tmp_path / "colours"), cache))
    log = tmp_path / "err.txt"
    with open(log, "w") as handle:
        builder = start(["cache", cfg, "--workers", "1"], tmp_path, handle)
        wait_for(lambda: "caching 40 images" in log.read_text() or builder.poll() is not None)
        builder.send_signal(signal.SIGTERM)
        builder.wait(timeout=60)
    assert builder.returncode == 143, log.read_text()
    assert "error: stopped by SIGTERM; the image cache was not finished (nothing of it kept)" in log.read_text()
    assert not [path for path in cache.iterdir() if path.is_dir()]


def test_a_build_killed_mid_write_is_rebuilt_not_used(tmp_path, write_config, run_cli):
    cache = tmp_path / "cache"
    folder = slow_folder(tmp_path / "colours")
    cfg = write_config(cache_config(folder, cache))
    builder = start(["cache", cfg, "--workers", "0"], tmp_path, subprocess.DEVNULL)
    key = entry_key(str(folder), {"channels": 3, "size": [10, 10], "resize": True})
    wait_for(lambda: any(cache.glob(f"{key}-*.partial/images.u8")) or builder.poll() is not None)
    time.sleep(0.5)  # some rows written, the large images still to decode
    builder.send_signal(signal.SIGKILL)
    builder.wait()
    assert builder.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    (partial,) = cache.glob(f"{key}-*.partial")
    entry = partial.with_name(partial.name.removesuffix(".partial"))
    assert not (entry / "meta.json").exists()
    listed = json.loads(subprocess.run([sys.executable, "-m", "dlcli", "cache", "--list", "--dir", cache, "--json"],
                                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                                       check=True).stdout)["caches"]
    assert [row["state"] for row in listed] == ["building or cut short"]
    trained = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert trained.returncode == 0, trained.stderr
    assert "caching 40 images" in trained.stderr  # rebuilt from the start
    assert json.loads((entry / "meta.json").read_text())["count"] == 40
    assert not entry.with_name(entry.name + ".partial").exists()


def test_a_corrupt_image_is_exit_3_naming_it_or_skipped_and_counted(tmp_path, write_config, run_cli):
    folder = make_image_folder(tmp_path / "colours")
    bad = folder / "red" / "zz_corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    cfg = write_config(cache_config(folder, tmp_path / "cache"))
    failed = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert failed.returncode == 3 and "Traceback" not in failed.stderr
    assert f"error: cannot read image {bad}: " in failed.stderr and not (tmp_path / "runs").exists()
    skipping = run_cli("train", cfg, "data.skip_bad_images=true", "--output-dir", tmp_path / "runs")
    assert skipping.returncode == 0, skipping.stderr
    assert "skipped 1 unreadable image(s) (data.skip_bad_images): red/zz_corrupt.png" in skipping.stderr
    summary = json.loads((tmp_path / "runs" / "colours" / "v1" / "summary.json").read_text())
    assert summary["skipped_images"] == ["red/zz_corrupt.png"] and summary["steps"] == 2 * 3  # 18 images, 6 a batch
    evaluated = run_cli("eval", tmp_path / "runs" / "colours" / "v1", "--split", "test", "--json",
                        f"data.dataset.test_root={folder}")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["skipped_images"] == ["red/zz_corrupt.png"] and result["samples"] == 18


@pytest.mark.parametrize("budget", [4.0, 1e-6])  # the device-resident path, the memory map's
def test_a_mid_epoch_resume_on_the_cached_path_is_bitwise(budget, tmp_path, write_config, run_cli):
    config = cache_config(make_image_folder(tmp_path / "colours"), tmp_path / "cache", batch_size=4,
                          memory_budget_gb=budget)
    config["train"].update({"epochs": 2, "checkpoint_every": {"steps": 3}, "keep_last": 100})
    full, resumed = train_then_resume(run_cli, write_config(config), tmp_path, "colours", 3)
    a, b = full["model"], resumed["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
