"""Notes a model builder leaves for the run's log (a re-initialised head, an adapted first layer):
collected while building, printed by the training session once its output is set up."""

from collections.abc import Iterator
from contextlib import contextmanager

_collecting: list[list[str]] = []


def note(text: str) -> None:
    """Record one line for the log (dropped when nobody collects: a rebuild for eval or a test)."""
    if _collecting:
        _collecting[-1].append(text)


@contextmanager
def collected() -> Iterator[list[str]]:
    """The notes left while the block runs."""
    notes: list[str] = []
    _collecting.append(notes)
    try:
        yield notes
    finally:
        _collecting.pop()
