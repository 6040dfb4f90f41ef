"""The run directory: runs/<name>/<version>/ with config.yaml, metrics.jsonl, summary.json,
curves.png and checkpoints/."""

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dlcli.errors import ConfigError, DlcliError
from dlcli.runs import lock
from dlcli.runs.lock import RunLock

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class NullRun:
    """What ranks other than 0 see under DDP: the run directory's interface, writing nothing."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else Path(os.devnull)
        self.checkpoints = self.path / "checkpoints"
        self.stale_temporaries: list[Path] = []

    def __getattr__(self, name):  # log, write_text, write_summary, close, truncate_log, enable_tensorboard, release
        return lambda *args, **kwargs: None


class RunDir:
    """A run folder this process holds the lock of (see runs/lock.py): `create` a new one, or `open`
    one to resume; `release()` at the very end."""

    def __init__(self, path: Path, held: RunLock | None = None):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._lock = held
        self.stale_temporaries: list[Path] = []  # what `open` removed
        self._metrics: TextIO | None = None
        self._tensorboard: SummaryWriter | None = None

    def enable_tensorboard(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._tensorboard = SummaryWriter(log_dir=str(self.path / "tensorboard"))

    @classmethod
    def create(cls, root: str, name: str, version: str | None) -> "RunDir":
        """Make a new run folder, locked before anything is written in it; the version is v1, v2, ...
        unless given."""
        base = Path(root) / name
        if version is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", version):
            raise ConfigError(f"--run-version: {version!r} must be a plain folder name (letters, digits, _ . -)")
        try:
            base.mkdir(parents=True, exist_ok=True)
            if version is not None:
                path = base / version
                _refuse_busy(path)  # before writing anything there, even a lock file
                _refuse_not_empty(path)
                path.mkdir(exist_ok=True)
            else:
                path = next_version(base)
        except PermissionError as err:
            raise DlcliError(f"output directory not writable: {err.filename}") from None
        except OSError as err:
            raise DlcliError(f"cannot create the run directory under {base}: {err.strerror}") from None
        run = cls(path, lock.acquire(path))  # a process given the same --run-version stops here
        try:
            if version is not None:  # ... or here, if the other one got the lock, wrote and ended first
                _refuse_not_empty(path)
            run._prepare()
        except BaseException:
            run.release()
            raise
        return run

    def _prepare(self) -> None:
        try:
            self.checkpoints.mkdir()
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except PermissionError as err:
            raise DlcliError(f"output directory not writable: {err.filename}") from None
        except OSError as err:
            raise DlcliError(f"cannot create the run directory {self.path}: {err.strerror}") from None

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """An existing run folder, to resume: locked, then cleared of the temporary files that a
        killed process left (with the lock held, no other process can be writing them)."""
        run = cls(path, lock.acquire(path))
        run.stale_temporaries = run.remove_stale_temporaries()
        return run

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the half-written files of saves cut short (checkpoints, links, summary, curves)."""
        removed = []
        for pattern in TEMPORARIES:
            for path in self.path.glob(pattern):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:  # a folder that matches, or one removed meanwhile: not ours to force
                    pass
        return removed

    def release(self) -> None:
        """Give up the run directory (the kernel does it too, when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def write_text(self, name: str, text: str) -> None:
        (self.path / name).write_text(text)

    def log(self, record: dict) -> None:
        """Append one JSON object to metrics.jsonl (flushed, so a crash loses nothing logged)."""
        if self._metrics is None:
            self._metrics = (self.path / "metrics.jsonl").open("a")
        self._metrics.write(json.dumps(finite(record)) + "\n")
        self._metrics.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, float) and ("/" in key or key == "lr"):
                    self._tensorboard.add_scalar(key, value, record["step"])

    def write_summary(self, summary: dict) -> None:
        """Atomically: a write cut short (disk full, a kill) leaves the previous summary.json."""
        _replace_file(self.path / "summary.json", json.dumps(finite(summary), indent=2) + "\n")

    def truncate_log(self, step: int) -> None:
        """On resume: drop records logged after the checkpoint (they will be logged again)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = [r for r in read_records(path) if r.get("step", 0) <= step]
        _replace_file(path, "".join(json.dumps(r) + "\n" for r in kept))  # a kill meanwhile loses no record

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def runs_root(output_dir: str | None, configured: str = "runs") -> str:
    """--output-dir, else $DLCLI_RUNS_DIR (cluster scratch space), else the config's output.dir."""
    return output_dir or os.environ.get("DLCLI_RUNS_DIR") or configured


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a last line cut short by a kill is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# What a save cut short leaves: checkpoint and link temporaries (checkpoint.save, _link), summary.json's
# (_replace_file), curves.png's (plot_curves) and create's write probe.
TEMPORARIES = ("checkpoints/.*.tmp", ".*.tmp", "*.tmp.png", ".write-test")


def _refuse_busy(path: Path) -> None:
    who = lock.holder(path)
    if who is not None:
        raise lock.busy(path, who)


def _refuse_not_empty(path: Path) -> None:
    """A --run-version folder must be new or empty (its lock file aside)."""
    if path.exists() and any(p.name != lock.LOCK_NAME for p in path.iterdir()):
        raise ConfigError(f"--run-version: run directory {path} already exists and is not empty",
                          hint="pick another --run-version, remove it, or continue it with --resume")


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def next_version(base: Path) -> Path:
    """A new, empty folder base/vN (N one above the highest there), made atomically."""
    numbers = [int(p.name[1:]) for p in base.glob("v*") if p.name[1:].isdigit()]
    n = max(numbers, default=0) + 1
    while True:  # mkdir is atomic: two runs starting together get different versions
        try:
            path = base / f"v{n}"
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def finite(record):
    """JSON has no NaN/Inf: write them as strings so the file stays standard JSON."""
    if isinstance(record, dict):
        return {k: finite(v) for k, v in record.items()}
    if isinstance(record, list):
        return [finite(v) for v in record]
    if isinstance(record, float) and not math.isfinite(record):
        return str(record)
    return record


def plot_curves(metrics_path: Path, out_path: Path) -> None:
    """Loss and metric curves per epoch from metrics.jsonl (matplotlib, imported lazily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in read_records(metrics_path) if r.get("event") == "epoch"]
    if not epochs:
        return
    names = sorted({k.split("/")[1] for e in epochs for k in e if "/" in k})
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], names):
        for split in ("train", "val"):
            key = f"{split}/{metric}"
            points = [(e["epoch"], e[key]) for e in epochs if isinstance(e.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=split)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    tmp = out_path.with_suffix(".tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
