"""Output paths the user names (--output, --output-dir): checked before anything is written, and
created only when the command writes (a later usage error leaves no empty folder behind)."""

import os
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
