"""The files data is read from: regular files only (reading a FIFO blocks until a writer comes, a
device never ends), and folders walked so that each real folder is read once (a symlink back up the
tree, `a/loop -> .`, would otherwise repeat the folder until the path grows too long)."""

import os
import stat
import sys
from pathlib import Path

from dlcli.errors import DataError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def kind_of(mode: int) -> str:
    """What a non-regular file is, from its st_mode: 'a folder', 'a FIFO (named pipe)', ..."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def regular_file(path, what: str = "file") -> Path:
    """`path` (links followed) when it is a regular file; else a DataError naming it and what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if os.path.islink(path) else ""
        raise DataError(f"{what} not found: {os.path.abspath(path)}{broken}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: expected a {what}, got a folder")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: {kind_of(mode)}, not a regular file")
    return Path(path)


class FolderWalk:
    """Walks folders, following links to folders except those whose real folder was already read
    (a loop, or a second link to one folder): those are counted in `skipped`, not followed."""

    def __init__(self, already_read=()) -> None:
        self.seen = {os.path.realpath(folder) for folder in already_read}
        self.skipped: list[str] = []

    def files(self, folder, suffixes) -> list[str]:
        """Regular files under `folder` with one of `suffixes` (lower case), ordered by folder, then
        name (as torchvision's ImageFolder orders them). A non-regular one is a DataError naming it."""
        self.seen.add(os.path.realpath(folder))
        groups = []
        for parent, folders, names in os.walk(folder, followlinks=True, onerror=_unreadable):
            folders[:] = [name for name in sorted(folders) if self._first_visit(os.path.join(parent, name))]
            chosen = [os.path.join(parent, n) for n in sorted(names) if os.path.splitext(n)[1].lower() in suffixes]
            groups.append((parent, [str(regular_file(path, "file")) for path in chosen]))
        return [path for _, paths in sorted(groups) for path in paths]

    def _first_visit(self, folder: str) -> bool:
        real = os.path.realpath(folder)
        if real in self.seen:
            self.skipped.append(folder)
            return False
        self.seen.add(real)
        return True

    def report(self, where: str) -> None:
        """One line on stderr (rank 0) naming the links not followed, if any."""
        from dlcli.ranks import is_main

        if self.skipped and is_main():
            shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            print(f"note: {where}: skipped {len(self.skipped)} link(s) to folders already read "
                  f"(a loop, or a second link to one folder): {shown}", file=sys.stderr)


def _unreadable(err: OSError) -> None:
    raise DataError(f"cannot read folder {err.filename}: {err.strerror or err}")
