"""Self-describing checkpoints: atomic save, safe load (weights_only=True, never a fallback),
verified by a digest of everything they hold.

The payload holds only tensors and plain Python data: weights, optimizer/scheduler/scaler
state, counters, RNG states, the resolved config and the data description (class names,
input shape, preprocessing statistics). Nothing in it is ever imported or called.
"""

import os
import shutil
import tempfile
from collections.abc import Collection
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from dlcli.errors import CheckpointError, first_line

FORMAT = "dlcli-checkpoint"
FORMAT_VERSION = 1
# How torch.save's C++ stream writer reports a write that failed (a full disk, mostly).
TORCH_WRITE_FAILED = ("inline_container.cc", "PytorchStreamWriter", "file write failed")
# Sections only a resume reads: eval, infer and export leave them unverified (with mmap, unread).
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "callbacks", "position", "rng", "tracking", "train_model", "swa")


def save(payload: dict, path: Path, *, with_digest: bool = True) -> None:
    """Write to a temp file in the same folder, fsync, then atomically replace `path`. The file holds
    the payload's digest (`with_digest=False` only for benchmarks and for tests of older files)."""
    import torch

    from dlcli.training.digest import digest

    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    full.pop("digest", None)  # a payload read back with torch.load still has its old one
    if with_digest:
        full["digest"] = digest(full)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(full, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def locate(path: str | Path) -> Path:
    """The checkpoint file a path names: itself, or a run directory's best (else last) checkpoint."""
    path = Path(path)
    if path.is_dir():
        for name in ("checkpoints/best.pt", "checkpoints/last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def load(path: str | Path, *, mmap: bool = True, skip: Collection[str] = ()) -> dict:
    """Load and check a dlcli checkpoint, and its digest when it has one (files written before
    digests load unverified); every failure is a one-line CheckpointError. `skip`: sections the
    caller does not read, left unverified (eval skips TRAINING_STATE). `mmap`: the tensors stay in
    the file's (copy-on-write) mapping, so the digest pass is the first read of the data, not a second
    one after a copy; a caller that keeps the tensors for long (resume) passes False."""
    import pickle

    path = locate(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        payload = _torch_load(path, mmap)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "global" not in reason.lower():  # garbage bytes, not a blocked object
            raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
        raise CheckpointError(f"{path}: refused to load: {reason}",
                              hint="dlcli loads only tensors and plain data (weights_only=True); "
                                   "this file asks to import or call code") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: "
                              f"{first_line(err, 'truncated?')[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dlcli checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: unsupported checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is newer than this dlcli "
                              f"understands ({FORMAT_VERSION}); upgrade dlcli")
    _verify_digest(payload, path, skip)
    _check_sections(payload, path)
    return payload


def load_for_inference(path: str | Path) -> tuple[dict, Path]:
    """(payload, the file it came from) for eval, infer and export: mapped, and verified but for the
    training state they do not read."""
    return load(path, skip=TRAINING_STATE), locate(path)


def _torch_load(path: Path, mmap: bool):
    import torch

    if mmap and _is_zip(path):  # torch maps only its zip format; anything else gets the plain load's error
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError):
            pass  # a file system that cannot map files; the plain load decides
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _verify_digest(payload: dict, path: Path, skip: Collection[str]) -> None:
    """Recompute the digests of what was read (taking them out of the payload), but for the sections
    in `skip`; no digest: a file from before digests, loaded unverified."""
    from dlcli.training.digest import ALGORITHM, section_digests

    stored = payload.pop("digest", None)
    if stored is None:
        return
    algorithm = stored.get("algorithm") if isinstance(stored, dict) else ALGORITHM
    if algorithm != ALGORITHM:
        raise CheckpointError(f"checkpoint {path}: unknown digest algorithm {algorithm!r} (from a newer dlcli?)",
                              hint="upgrade dlcli")
    sections = stored.get("sections") if isinstance(stored, dict) else None
    names = [name for name in payload if name not in skip]
    # A section taken out leaves the others verifiable: what is missing is the section checks' to
    # name ("section optimizer: missing"); a section the digest does not cover cannot be trusted.
    if not isinstance(sections, dict) or not set(names) <= set(sections) or \
            section_digests(payload, names) != {name: sections[name] for name in names}:
        raise CheckpointError(f"checkpoint {path} is corrupted (digest mismatch)",
                              hint="the file changed after it was written (a disk or copy error); "
                                   "use another checkpoint of the run (an older step-*.pt) or a backup")


# What every command reading a checkpoint relies on: section -> keys it must hold.
REQUIRED = {"config": (), "meta": ("class_names", "input_shape", "kind"), "model": (), "state": ("epoch", "step")}


def _check_sections(payload: dict, path: Path) -> None:
    missing = [name for name in REQUIRED if not isinstance(payload.get(name), dict)]
    missing += [f"{name}.{key}" for name, keys in REQUIRED.items() if isinstance(payload.get(name), dict)
                for key in keys if key not in payload[name]]
    if missing:
        raise CheckpointError(f"{path}: incomplete dlcli checkpoint (missing {', '.join(missing)})")


def _unpickler_reason(err: Exception) -> str:
    """The one informative line of torch's long weights_only message (never its advice to
    retry with weights_only=False)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            reason = line.split("error:", 1)[1].split(". Please use")[0].strip()[:200]
            return reason or "not a valid checkpoint file"
    for line in lines:
        if "global" in line.lower() and "weights_only" not in line:
            return line[:200]
    useful = [line for line in lines if "weights_only" not in line and "Weights only load failed" not in line]
    return useful[0][:200] if useful else "not a valid checkpoint file"


def rng_states() -> dict:
    import random

    import numpy as np
    import torch

    # legacy=True (the default) always gives the ("MT19937", keys, pos, has_gauss, cached) tuple
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    states = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].copy()), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(_as_tuple(states["python"]))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy(), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class CheckpointStore:
    """checkpoints/step-NNNNNNNNN.pt files (the newest `keep_last` kept), with last.pt and best.pt
    as hard links to them (a copy where links are not supported). Every name changes atomically."""

    def __init__(self, folder: Path, keep_last: int):
        self.folder, self.keep_last = Path(folder), keep_last

    def save(self, payload: dict, step: int, is_best: bool) -> Path:
        """Commit a new checkpoint, then point last.pt (and best.pt) at it, then prune old ones."""
        target = self.folder / f"step-{step:09d}.pt"
        with self._failing_as(target):
            save(payload, target)
            _link(target, self.folder / "last.pt")
            if is_best:
                _link(target, self.folder / "best.pt")
        self._prune()
        return target

    def save_as(self, payload: dict, name: str) -> Path:
        """A checkpoint outside the numbered series (final.pt), failing as `save` does."""
        target = self.folder / name
        with self._failing_as(target):
            save(payload, target)
        return target

    @contextmanager
    def _failing_as(self, target: Path):
        """A write that fails (disk full, quota, permissions) becomes one TrainingError naming the
        file, the free space and the checkpoint that is kept; any other error passes unchanged."""
        from dlcli.errors import TrainingError

        try:
            yield
        except (OSError, RuntimeError) as err:
            reason = self._write_failure(err)
            if reason is None:
                raise
            kept = self.folder / "last.pt"
            previous = f"the previous checkpoint {kept} is kept" if kept.exists() else "no earlier checkpoint exists"
            raise TrainingError(f"could not save checkpoint {target}: {reason}; {previous}",
                                hint="free disk space or fix permissions, then resume with --resume") from err

    def _write_failure(self, err: BaseException) -> str | None:
        """Why a save failed, in words, or None when `err` is not a failed write. torch.save reports a
        write cut short by a full disk as its stream writer's RuntimeError ("[enforce fail at
        inline_container.cc:...] unexpected pos"), with the OSError at most as its context."""
        import errno

        failed = next((e for e in (err, err.__context__, err.__cause__) if isinstance(e, OSError)), None)
        if failed is not None and failed.errno == errno.ENOSPC:
            return f"disk full ({self._free()})"
        if failed is not None and failed.errno == errno.EDQUOT:
            return f"disk quota exceeded ({self._free()})"
        if failed is not None:
            return str(failed.strerror or failed)
        if any(mark in str(err) for mark in TORCH_WRITE_FAILED):
            return f"the write stopped short, most likely a full disk ({self._free()})"
        return None

    def _free(self) -> str:
        try:
            return f"{shutil.disk_usage(self.folder).free // 2**20} MiB free"
        except OSError:
            return "free space unknown"

    def _prune(self) -> None:
        # Oldest written first, not lowest step: after resuming from an earlier checkpoint, the files of
        # the abandoned later steps are the old ones.
        numbered = sorted(self.folder.glob("step-*.pt"), key=lambda path: (path.stat().st_mtime_ns, path.name))
        for old in numbered[:-self.keep_last]:
            old.unlink(missing_ok=True)  # last.pt/best.pt are links: their data stays


def _link(source: Path, name: Path) -> None:
    """Atomically make `name` refer to the same file as `source`."""
    tmp = name.with_name(f".{name.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, name)
