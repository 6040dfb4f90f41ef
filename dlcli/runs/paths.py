"""Output paths the user names (--output, --output-dir): checked before anything is written,
created only when the command writes (a later usage error leaves no empty folder behind), and
written atomically (a temporary beside the file, renamed over it once complete)."""

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError


def writable_output(path: str | Path, flag: str, reads=()) -> Path:
    """The file to write. A folder, a file this command reads (or a hard link to one: a run's
    best/last/step checkpoints share one file), a place inside a folder it reads (the next run
    would read the output as an input), or a folder that cannot be written is a one-line error."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag}: {out} is a folder; give a file name")
    for source in map(Path, reads):
        if source.is_dir() and out.resolve().is_relative_to(source.resolve()):
            raise ConfigError(f"{flag}: {out} is inside the input folder {source}; write it elsewhere")
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise ConfigError(f"{flag}: {out} is the file this command reads ({source}); give another name")
    _check_folder(out.parent, flag)
    return out


def writable_folder(path: str | Path, flag: str) -> Path:
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag}: {folder} is a file, not a folder")
    _check_folder(folder, flag)
    return folder


def _check_folder(folder: Path, flag: str) -> None:
    """The folder, or the nearest existing one above it (where it would be created), is writable."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DlcliError(f"{flag}: cannot create the folder {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise DlcliError(f"{flag}: the folder {existing} is not writable")


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` for the caller to write (and check). It replaces `path` only
    when the block ends normally; on any failure it is removed, so an existing file stays as it was
    and no partial output is left. The result has the mode a new file gets (0666 less the umask)."""
    path = Path(path)
    if path.is_symlink():  # write the file the link names, as a plain open() would, and keep the link
        path = Path(os.path.realpath(path))
    created = _make_folders(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL with 0666: the kernel applies the umask (no process-wide os.umask() juggling)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        mode = tmp.stat().st_mode & 0o777
        yield tmp
        os.chmod(tmp, mode)  # writers that write their own temporary and rename it over ours give 0600
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only the folders made for this output, and only while empty
        raise


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones created, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _fsync(path: Path) -> None:
    """Data on disk before the rename: after a crash the name holds the old file or the whole new one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
