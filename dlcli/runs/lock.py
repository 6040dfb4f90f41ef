"""One process per run directory: an advisory lock (fcntl.flock) on RUN_DIR/.lock.

The kernel drops the lock when its holder's process ends, however it ends (a SIGKILL or an
out-of-memory kill included), so a lock is never stale: a lock file without a live holder is free.
The holder writes its pid and host into the file so that a refused process can name it.
"""

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError

LOCK_NAME = ".lock"
# A process that only probes (`holder`) holds the lock for microseconds, and a new holder writes its
# pid just after locking: a refused process retries this long before it reports the run as busy.
RETRY_S, RETRY_EVERY_S = 0.25, 0.025
_HELD: set[int] = set()  # this process's lock descriptors


def _close_in_child() -> None:
    """A forked child (a DataLoader worker) shares the lock: closing its copy of the descriptor lets
    the lock die with the holder itself, not with its last worker (closing does not unlock)."""
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunLock:
    """A held run lock (`fd` None where the file system has no locks); `release()` frees it."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def acquire(run_dir: Path) -> RunLock:
    """Lock `run_dir` for this process, or a ConfigError naming the process that holds it."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise DlcliError(f"cannot lock the run directory {run_dir}: {err.strerror}") from None
    try:
        if not _try_lock(fd, fcntl.LOCK_EX, RETRY_S):
            raise busy(run_dir, _holder_of(path))
    except OSError as err:  # no flock on this file system (Lustre without -o flock, some NFS set-ups)
        os.close(fd)
        print(f"warning: cannot lock {path} ({err.strerror}); nothing stops a second process from "
              f"using this run directory at the same time", file=sys.stderr)
        return RunLock(None)
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n")
    _HELD.add(fd)
    return RunLock(fd)


def holder(run_dir: Path) -> str | None:
    """"pid N on HOST" when a live process holds `run_dir`'s lock, else None; writes nothing."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no dlcli process has ever held it
        return None
    try:
        return None if _try_lock(fd, fcntl.LOCK_SH, 0.0) else _holder_of(path)
    except OSError:
        return None
    finally:
        os.close(fd)  # releases the probe's shared lock


def busy(run_dir: Path, who: str) -> ConfigError:
    return ConfigError(f"run {run_dir} is in use by {who}",
                       hint="one process per run directory: wait for that one to end, or stop it "
                            "(SIGTERM saves last.pt), then resume")


def _try_lock(fd: int, kind: int, patience_s: float) -> bool:
    """Take the lock without blocking, retrying for `patience_s`; False if it stays held."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(RETRY_EVERY_S)


def _holder_of(path: Path) -> str:
    """What the holder wrote into the lock file; a holder that has just locked may not have yet."""
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            record = json.loads(path.read_text())
            return f"pid {int(record['pid'])} on {record['host']}"
        except (OSError, ValueError, TypeError, KeyError):
            if time.monotonic() >= deadline:
                return "another process"
            time.sleep(RETRY_EVERY_S)
