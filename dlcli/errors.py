"""Errors users can cause, each carrying the exit code the CLI returns for it."""


class DlcliError(Exception):
    """Base class: a one-line message for the user, plus an optional hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(DlcliError):
    """Bad usage or config; carries every problem found, one line each."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, hint: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems), hint)


class DataError(DlcliError):
    """A dataset is missing, unreachable or unreadable."""

    exit_code = 3


class CheckpointError(DlcliError):
    """A checkpoint cannot be read or is not a dlcli checkpoint."""

    exit_code = 4


def listed(names, limit: int = 8) -> str:
    """Names joined by commas; a long list (190 classes) cut to its first `limit` and a count."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names)} in all)"


def first_line(err: BaseException | str, fallback: str = "") -> str:
    """The first line of an error's message (libraries' messages run to pages), or `fallback`."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else fallback


def unexpected(err: Exception) -> str:
    """A one-line description of an error dlcli did not foresee (a bug, or a library's failure)."""
    return f"unexpected {type(err).__name__}: {first_line(err)}"


# The codes of errors dlcli reports itself (config, data, checkpoint); a DDP job passes them on.
REPORTED_CODES = (2, 3, 4)


class TrainingError(DlcliError):
    """Training failed at run time (e.g. a non-finite loss)."""

    exit_code = 1


class Interrupted(DlcliError):
    """Training stopped by a signal after saving a checkpoint; exit code 128 + signal number."""

    def __init__(self, message: str, signum: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = 128 + signum


class DlcliWarning(UserWarning):
    """A warning of dlcli's own, for the user: `warnings.warn(message, DlcliWarning)`. The one kind of
    warning a normal run shows (see cli.base.only_own_warnings)."""
