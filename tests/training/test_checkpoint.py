"""Checkpoints: atomic writes (SIGKILL mid-save, disk full), the numbered store with keep_last and
last.pt/best.pt links, and safe loading (weights_only=True) of malicious and broken files.

Most CLI cases run in-process through typer's CliRunner (same command functions and exit-code
mapping); one real `python -m dlcli` subprocess checks the malicious file end to end.
"""

import errno
import io
import json
import os
import pathlib
import random
import signal
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import CheckpointError, TrainingError
from dlcli.training import checkpoint
from dlcli.training.checkpoint import CheckpointStore
from dlcli.training.session import train
from tests.conftest import REPO, tiny_digits_config

DIGIT_PNG = REPO / "examples" / "digits" / "digit_0.png"
STEPS_PER_EPOCH = 18  # tiny digits: 1,150 training samples in batches of 64


def run_training(config: dict, root: Path) -> dict:
    cfg = validate(config)
    return train(cfg, str(root), None, Progress(cfg.train.epochs, quiet=True, stream=io.StringIO()))


def invoke(*args):
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, (SystemExit, type(None))), repr(result.exception)
    return result


def assert_one_error_line(result, code: int = 4, informative: bool = True) -> str:
    """Exit code, exactly one `error:` line (plus at most hint lines), no traceback; returns the line.

    informative: the line also says why (it does not end in a bare `reason:`)."""
    stderr = result.stderr
    assert result.exit_code == code, stderr
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), stderr
    assert len([line for line in lines if line.startswith("error: ")]) == 1, stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), stderr
    if informative:
        assert not lines[0].rstrip().endswith(":"), f"error line gives no reason: {lines[0]!r}"
    return lines[0]


# the sections every dlcli checkpoint has (checkpoint.load checks them), for hand-made payloads
SECTIONS = {"config": {}, "meta": {"class_names": [], "input_shape": [], "kind": "image"}, "model": {},
            "state": {"epoch": 0, "step": 0}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real one-epoch tiny-digits run: (config dict, its run directory)."""
    root = tmp_path_factory.mktemp("ckpt_run")
    config = tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 10})
    summary = run_training(config, root / "runs")
    return config, Path(summary["run_dir"])


# ---------------------------------------------------------------- atomic writes


def test_sigkill_at_random_moments_while_saving_always_leaves_a_loadable_checkpoint(tmp_path):
    import torch

    path = tmp_path / "model.pt"
    size = 1_000_000  # 4 MB of float32 per payload
    payloads = [{**SECTIONS, "i": i, "w": torch.full((size,), float(i)),
                 "extra": {"name": f"p{i}", "values": list(range(i, i + 50))}}
                for i in range(1, 4)]  # built before forking: the children only serialize
    checkpoint.save({**SECTIONS, "i": 0, "w": torch.zeros(size), "extra": {"name": "p0", "values": list(range(50))}},
                    path)
    started = time.perf_counter()
    checkpoint.save(payloads[0], path)
    duration = time.perf_counter() - started

    rng = random.Random(20240601)
    loaded_ids, torn_writes = [], 0
    for kill in range(25):
        pid = os.fork()
        if pid == 0:  # child: save over and over until killed; never return into pytest
            try:
                n = kill
                while True:
                    checkpoint.save(payloads[n % 3], path)
                    n += 1
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.2, 3.0) * max(duration, 0.01))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "child saved and exited by itself"

        payload = checkpoint.load(path)  # never raises: the old or the new file, never a torn one
        i = payload["i"]
        assert payload["format"] == "dlcli-checkpoint" and payload["format_version"] == checkpoint.FORMAT_VERSION
        assert torch.equal(payload["w"], torch.full((size,), float(i)))
        assert payload["extra"] == {"name": f"p{i}", "values": list(range(i, i + 50))}
        loaded_ids.append(i)
        others = [p for p in tmp_path.iterdir() if p.name != "model.pt"]
        assert all(p.name.startswith(".model.pt.") and p.name.endswith(".tmp") for p in others), others
        torn_writes += len(others)  # a kill mid-write leaves its temp file (nothing can remove it) ...
        for p in others:
            p.unlink()  # ... which only a later cleanup could; keep /tmp small

    assert len(set(loaded_ids)) >= 2, loaded_ids  # the children really replaced the file between kills
    assert torn_writes >= 5, "too few kills landed in the middle of a write to exercise atomicity"


def tiny_payload(i: int) -> dict:
    import torch

    return {**SECTIONS, "i": i, "w": torch.full((1000,), float(i))}


def test_keep_last_keeps_the_newest_written_after_resuming_from_an_earlier_step(tmp_path):
    """Resumed from step 10, a run writes steps 11 and 12; keep_last 2 keeps those two, not the
    abandoned steps 20 and 30 written before the resume."""
    folder = tmp_path / "checkpoints"
    store = CheckpointStore(folder, keep_last=2)
    for step in (10, 20, 30):
        store.save(tiny_payload(step), step=step, is_best=False)
    for age, name in enumerate(("step-000000030.pt", "step-000000020.pt"), start=1):
        os.utime(folder / name, ns=(0, 10**18 - age))  # written long before what follows
    for step in (11, 12):
        store.save(tiny_payload(step), step=step, is_best=False)
    assert sorted(p.name for p in folder.glob("step-*.pt")) == ["step-000000011.pt", "step-000000012.pt"]
    assert checkpoint.load(folder / "last.pt")["i"] == 12


def test_disk_full_while_saving_raises_training_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    folder = tmp_path / "checkpoints"
    store = CheckpointStore(folder, keep_last=3)
    store.save(tiny_payload(1), step=10, is_best=True)

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(TrainingError) as caught:
        store.save(tiny_payload(2), step=20, is_best=True)
    monkeypatch.undo()

    message = str(caught.value)
    assert message.startswith(f"could not save checkpoint {folder / 'step-000000020.pt'}: disk full ("), message
    assert message.endswith(f" MiB free); the previous checkpoint {folder / 'last.pt'} is kept"), message
    assert caught.value.hint and "resume" in caught.value.hint
    for name in ("last.pt", "best.pt", "step-000000010.pt"):
        assert checkpoint.load(folder / name)["i"] == 1, name
    assert not (folder / "step-000000020.pt").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt", "step-000000010.pt"]  # no temp left


def test_disk_full_during_training_fails_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from dlcli.cli import app

    real_save, calls = checkpoint.save, []

    def fails_second_time(payload, path):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(payload, path)

    monkeypatch.setattr(checkpoint, "save", fails_second_time)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 3, "device": "cpu", "log_interval": 10})))
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs"), "-q"])
    monkeypatch.undo()

    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "could not save checkpoint" in error[0] and "disk full" in error[0], error
    assert "previous checkpoint" in error[0] and error[0].endswith("last.pt is kept"), error
    assert calls == ["step-000000018.pt", "step-000000036.pt"]  # stopped at the failed save: no epoch 3
    run = tmp_path / "runs" / "tiny" / "v1"
    last = checkpoint.load(run / "checkpoints" / "last.pt")
    assert last["state"]["epoch"] == 1 and last["state"]["step"] == STEPS_PER_EPOCH
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == error[0].removeprefix("error: ")


# ---------------------------------------------------------------- the store: numbered files, keep_last, links


def test_store_numbers_checkpoints_keeps_the_newest_and_links_last_and_best(tmp_path, monkeypatch):
    real_save, saved = checkpoint.save, []

    def spy(payload, path):
        saved.append(Path(path).name)
        real_save(payload, path)

    monkeypatch.setattr(checkpoint, "save", spy)
    config = tiny_digits_config(train={"epochs": 2, "device": "cpu", "log_interval": 10,
                                       "checkpoint_every": {"steps": 5}, "keep_last": 3})
    summary = run_training(config, tmp_path / "runs")
    folder = Path(summary["run_dir"]) / "checkpoints"

    # every 5 steps inside an epoch, plus each epoch end (steps 18 and 36)
    assert saved == [f"step-{s:09d}.pt" for s in (5, 10, 15, 18, 20, 25, 30, 35, 36)]
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt", "step-000000030.pt",
                                                        "step-000000035.pt", "step-000000036.pt"]
    assert os.path.samefile(folder / "last.pt", folder / "step-000000036.pt")  # a hard link, not a copy
    assert os.stat(folder / "last.pt").st_nlink >= 2

    mid = checkpoint.load(folder / "step-000000035.pt")
    assert mid["state"]["step"] == 35 and mid["state"]["epoch"] == 2
    assert mid["position"]["batch_in_epoch"] == 35 - STEPS_PER_EPOCH
    end = checkpoint.load(folder / "last.pt")
    assert end["state"]["step"] == 36 and end["position"]["batch_in_epoch"] == 0

    best = checkpoint.load(folder / "best.pt")
    best_epoch = summary["best"]["epoch"]
    assert best["state"]["epoch"] == best_epoch and best["state"]["step"] == best_epoch * STEPS_PER_EPOCH
    assert best["metrics"]["val/loss"] == summary["best"]["value"]
    if best_epoch == 2:
        assert os.path.samefile(folder / "best.pt", folder / "step-000000036.pt")
    else:  # its numbered name was pruned; the link keeps the data
        assert os.stat(folder / "best.pt").st_nlink == 1


def test_checkpoint_every_minutes_saves_inside_epochs(tmp_path, monkeypatch):
    import dlcli.training.session as training

    real_time = training.time

    class FakeClock:
        """monotonic() advances 25 s per call, so `minutes: 1` is due at every third check."""

        def __init__(self):
            self.now = 0.0

        def monotonic(self):
            self.now += 25.0
            return self.now

        def __getattr__(self, name):
            return getattr(real_time, name)

    real_save, saved = checkpoint.save, []
    monkeypatch.setattr(checkpoint, "save", lambda payload, path: (saved.append(Path(path).name),
                                                                    real_save(payload, path)))
    monkeypatch.setattr(training, "time", FakeClock())
    config = tiny_digits_config(train={"epochs": 1, "device": "cpu", "log_interval": 10,
                                       "checkpoint_every": {"minutes": 1}, "keep_last": 100})
    summary = run_training(config, tmp_path / "runs")
    monkeypatch.undo()

    steps = [int(name[5:14]) for name in saved]
    assert steps == [3, 6, 9, 12, 15, 18], steps  # every third step, then the epoch end
    folder = Path(summary["run_dir"]) / "checkpoints"
    assert checkpoint.load(folder / "step-000000009.pt")["position"]["batch_in_epoch"] == 9


def test_no_checkpoint_every_saves_only_at_epoch_ends(tmp_path, monkeypatch):
    real_save, saved = checkpoint.save, []
    monkeypatch.setattr(checkpoint, "save", lambda payload, path: (saved.append(Path(path).name),
                                                                    real_save(payload, path)))
    summary = run_training(tiny_digits_config(), tmp_path / "runs")
    assert saved == ["step-000000018.pt", "step-000000036.pt"]
    folder = Path(summary["run_dir"]) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt", "step-000000036.pt"]  # keep_last 1


# ---------------------------------------------------------------- safe loading


class EvilSystem:
    """Unpickling this (without weights_only) runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class EvilTouch:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def make_evil(tmp_path: Path, kind, name: str = "evil.pt") -> tuple[Path, Path]:
    """A checkpoint-shaped file whose unpickling would create a marker file; proven to be live."""
    import torch

    marker = tmp_path / f"MARKER-{kind.__name__}"
    path = tmp_path / name
    torch.save({"format": "dlcli-checkpoint", "format_version": 1, "x": kind(marker)}, path)
    torch.load(path, weights_only=False)  # the unsafe load really does run the payload ...
    assert marker.exists()
    marker.unlink()  # ... so a marker later on would mean dlcli loaded it unsafely
    return path, marker


BLOCKED = {EvilSystem: "posix.system", EvilTouch: "getattr"}  # what torch's safe unpickler names


@pytest.mark.parametrize("kind", [EvilSystem, EvilTouch])
def test_malicious_checkpoint_refused_by_load_without_running_it(tmp_path, kind):
    path, marker = make_evil(tmp_path, kind)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: refused to load")
    assert BLOCKED[kind] in message, f"the refusal should name the blocked global: {message!r}"
    assert "weights_only` set to `False" not in message  # never advise the unsafe load
    assert not marker.exists()


@pytest.mark.parametrize("kind", [EvilSystem, EvilTouch])
def test_malicious_checkpoint_refused_by_eval_infer_and_train_resume(tmp_path, monkeypatch, kind):
    path, marker = make_evil(tmp_path, kind)
    monkeypatch.chdir(tmp_path)  # a relative `touch MARKER` would land here too

    line = assert_one_error_line(invoke("eval", path))
    assert line.startswith(f"error: {path}: refused to load"), line
    line = assert_one_error_line(invoke("infer", path, DIGIT_PNG))
    assert line.startswith(f"error: {path}: refused to load"), line

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    runs = tmp_path / "runs"
    line = assert_one_error_line(invoke("train", cfg, "--output-dir", runs, "--resume", path, "-q"))
    assert "refused to load" in line, line
    assert not (runs / "tiny").exists() or not any((runs / "tiny").iterdir())  # no run was started

    # the same file as a run directory's last.pt, found through RUN_DIR and through auto
    run = runs / "tiny" / "v1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(validate(tiny_digits_config()).model_dump(mode="json")))
    os.replace(path, run / "checkpoints" / "last.pt")
    for resume in (str(run), "auto"):
        line = assert_one_error_line(invoke("train", cfg, "--output-dir", runs, "--resume", resume, "-q"))
        assert "refused to load" in line and str(run / "checkpoints" / "last.pt") in line, line
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == ["v1"]
    assert not marker.exists() and not list(tmp_path.rglob("MARKER*"))


def test_malicious_checkpoint_refused_by_a_real_eval_process(run_cli, tmp_path):
    path, marker = make_evil(tmp_path, EvilSystem)
    result = run_cli("eval", path)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {path}: refused to load") and len(lines) <= 2, result.stderr
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert not marker.exists() and not list(tmp_path.rglob("MARKER*"))


# ---------------------------------------------------------------- broken files


def broken_files(directory: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error must contain)."""
    import torch

    data = good.read_bytes()
    files = {}

    def put(name, content, phrase):
        path = directory / f"{name}.pt"
        path.write_bytes(content)
        files[name] = (path, phrase)

    put("zero-bytes", b"", "empty")
    for label, cut in [("first-byte", 1), ("first-100", 100), ("half", len(data) // 2), ("all-but-30", len(data) - 30)]:
        put(f"truncated-{label}", data[:cut], str(directory))
    put("random-bytes", random.Random(7).randbytes(4096), str(directory))
    put("text", b"model: cnn\nweights: somewhere else\n", str(directory))
    for name, obj in [("plain-dict", {"a": 1}), ("list", [1, 2, 3])]:
        path = directory / f"{name}.pt"
        torch.save(obj, path)
        files[name] = (path, "not a dlcli checkpoint")
    payload = checkpoint.load(good)
    path = directory / "future.pt"
    torch.save({**payload, "format_version": 999}, path)
    files["future-version"] = (path, "format version 999")
    for name, broken in [("no-meta", {k: v for k, v in payload.items() if k != "meta"}),
                         ("empty-meta", {**payload, "meta": {}}), ("no-config", {**payload, "config": None})]:
        torch.save(broken, directory / f"{name}.pt")
        files[name] = (directory / f"{name}.pt", "incomplete dlcli checkpoint")
    return files


BROKEN = ["zero-bytes", "truncated-first-byte", "truncated-first-100", "truncated-half", "truncated-all-but-30",
          "random-bytes", "text", "plain-dict", "list", "future-version", "no-meta", "empty-meta", "no-config"]


def test_every_broken_file_is_a_one_line_checkpoint_error(tmp_path, trained):
    _, run = trained
    files = broken_files(tmp_path, run / "checkpoints" / "last.pt")
    assert sorted(files) == sorted(BROKEN)
    for name, (path, phrase) in files.items():
        with pytest.raises(CheckpointError) as caught:
            checkpoint.load(path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and phrase in message, (name, message)
        assert not message.rstrip().endswith(":"), (name, message)
        assert caught.value.exit_code == 4


@pytest.mark.parametrize("name", BROKEN)
def test_eval_of_a_broken_checkpoint_exits_4_with_one_line(tmp_path, trained, name):
    _, run = trained
    path, phrase = broken_files(tmp_path, run / "checkpoints" / "last.pt")[name]
    line = assert_one_error_line(invoke("eval", path))
    assert str(path) in line and phrase in line, line


@pytest.mark.parametrize("name", ["truncated-half", "random-bytes", "future-version"])
def test_infer_and_train_resume_of_a_broken_checkpoint_exit_4(tmp_path, trained, name):
    config, run = trained
    path, phrase = broken_files(tmp_path, run / "checkpoints" / "last.pt")[name]
    # (whether the reason is informative is checked per file kind above; here: exit 4, one line)
    line = assert_one_error_line(invoke("infer", path, DIGIT_PNG), informative=False)
    assert phrase in line, line
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    line = assert_one_error_line(invoke("train", cfg, "--output-dir", tmp_path / "runs", "--resume", path, "-q"),
                                 informative=False)
    assert phrase in line, line
    assert not (tmp_path / "runs" / "tiny").exists() or not any((tmp_path / "runs" / "tiny").iterdir())


def test_a_good_checkpoint_still_loads_and_is_plain_data(trained):
    import torch

    _, run = trained
    payload = checkpoint.load(run / "checkpoints" / "last.pt")
    assert payload["format"] == "dlcli-checkpoint" and payload["format_version"] == checkpoint.FORMAT_VERSION
    assert payload["state"]["step"] == STEPS_PER_EPOCH
    assert all(isinstance(v, torch.Tensor) for v in payload["model"].values())
    assert checkpoint.load(run)["state"] == payload["state"]  # a run directory resolves to best.pt (else last.pt)
