"""Output paths the user names (--output, --output-dir): checked before anything is written."""

import os
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError


def writable_output(path: str | Path, flag: str, reads=()) -> Path:
    """The file to write, its folder created when missing. A folder, a file this command reads (or a
    hard link to one: a run's best/last/step checkpoints share one file), or a folder that cannot be
    written is a one-line error naming the path."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag}: {out} is a folder; give a file name")
    for source in reads:
        if out.exists() and Path(source).exists() and os.path.samefile(out, source):
            raise ConfigError(f"{flag}: {out} is the file this command reads ({source}); give another name")
    return _writable_folder(out.parent, flag) / out.name


def writable_folder(path: str | Path, flag: str) -> Path:
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag}: {folder} is a file, not a folder")
    return _writable_folder(folder, flag)


def _writable_folder(folder: Path, flag: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DlcliError(f"{flag}: cannot create the folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK):
        raise DlcliError(f"{flag}: the folder {folder} is not writable")
    return folder
