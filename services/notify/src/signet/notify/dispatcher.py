"""The delivery loop: claims due deliveries and tries each once on a small thread pool.

Claims are leases in the database (see :meth:`NotifyService.claim_due`), so several notify
replicas share the work, and a delivery whose sender died mid-attempt is tried again when
its lease runs out. A new notification wakes the loop at once instead of at the next poll.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from signet.notify.service import NotifyService

log = logging.getLogger(__name__)


class Dispatcher:
    """Background loop over :class:`NotifyService`; ``start``/``stop`` like the outbox relay."""

    def __init__(
        self, service: NotifyService, *, workers: int = 4, poll_seconds: float = 1.0
    ) -> None:
        if workers < 1 or poll_seconds <= 0:
            raise ValueError("workers must be at least 1 and poll_seconds positive")
        self._service = service
        self._workers = workers
        self._poll = poll_seconds
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._wakeup.set()

    def dispatch_once(self) -> int:
        """Claim one batch and try each delivery; returns how many were claimed.

        Without a running loop (tests) the batch is tried in this thread.
        """
        ids = self._service.claim_due(self._workers * 4)
        if not ids:
            return 0
        if self._pool is None:
            for delivery_id in ids:
                self._attempt(delivery_id)
        else:
            wait([self._pool.submit(self._attempt, delivery_id) for delivery_id in ids])
        return len(ids)

    def _attempt(self, delivery_id: str) -> None:
        try:
            self._service.attempt(delivery_id)
        except Exception as err:  # noqa: BLE001  (one bad delivery must not stop the others)
            # Class name only: driver errors can quote row values.
            log.error(
                "delivery attempt failed unexpectedly; its lease will expire and it is retried",
                extra={"notification_id": delivery_id, "error": type(err).__name__},
            )

    def start(self) -> None:
        """Start the loop thread and its worker pool (idempotent while running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="notify-send")
        self._thread = threading.Thread(target=self._run, name="notify-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the attempts in flight."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("notify dispatcher did not stop in time")
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self.dispatch_once()
            except Exception as err:  # noqa: BLE001  (the loop must outlive a database outage)
                log.warning(
                    "dispatcher could not claim deliveries", extra={"error": type(err).__name__}
                )
                self._stopping.wait(self._poll)
                continue
            if claimed == 0:
                self._wakeup.wait(self._poll)
                self._wakeup.clear()
