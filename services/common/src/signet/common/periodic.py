"""A background task that runs a function every few seconds, beside a gRPC server.

Scheduled work (renewals, CRL refreshes, retries) runs on one daemon thread per task. It
implements :class:`signet.common.server.Background`, so it starts with the server and stops
in the drain. The function must catch its own errors; one that escapes is logged and the
next round runs anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_log = logging.getLogger("signet.common.periodic")


class PeriodicTask:
    """Runs ``fn`` at once on start, then every ``interval`` seconds until stopped."""

    def __init__(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.name = name
        self._interval = interval
        self._fn = fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for the round in progress to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._fn()
            except Exception:  # noqa: BLE001  (a failed round must not end the schedule)
                _log.exception("periodic task failed", extra={"task": self.name})
            self._stop.wait(self._interval)
