"""Graceful stop on SIGINT / SIGTERM / SIGUSR1 (what SLURM sends before preemption).

The handler only records the signal; the engine finishes the current step, saves last.pt and
exits with 128 + the signal number. A second SIGINT aborts at once (the previous checkpoint
stays intact because every checkpoint write is atomic).
"""

import signal
import threading
from contextlib import contextmanager

WATCHED = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])


class StopSignals:
    """Context manager: `.received` holds the first stop signal (or None)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.received = self.received or signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for sig in WATCHED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @contextmanager
    def ending_builds(self):
        """While building (nothing written yet), a stop signal ends an image-cache build at its next
        image: the build may take minutes, and there is nothing to save. The block then just ends
        (`received` says why); a KeyboardInterrupt of another origin goes on."""
        from dlcli.data import cache_build

        cache_build.stop_requested = lambda: self.received is not None
        try:
            yield
        except KeyboardInterrupt:
            if self.received is None:
                raise
        finally:
            cache_build.stop_requested = cache_build.never

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""
