"""One active instance of a background job among a service's replicas (leader lease).

On PostgreSQL the lease is a session-level advisory lock held on a connection of its own:
the replica holding it runs the job; the others check again on their next pass. A replica
that dies (even by SIGKILL) loses its connection, the server releases the lock, and
another replica takes over at its next attempt; no expiry time has to be guessed.

On SQLite (one machine, tests, ``make run``) every instance may run the job: the jobs that
use a lease already detect a concurrent writer and retry, and a single file has no
replicas in production.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

_log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LeaderLease:
    """Whether this process is the one that runs job ``name`` right now."""

    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self._key = lock_key(name)
        self._name = name
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when the database has no advisory locks (SQLite): every instance runs."""
        return self._engine.dialect.name != "postgresql"

    def held(self) -> bool:
        """True when this process holds the lease: kept if still valid, else tried for."""
        if self.shared:
            return True
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT 1"))
                    return True
                except DBAPIError:
                    _log.warning("leader lease lost with its connection", extra={"job": self._name})
                    self._drop()
            try:
                conn = self._engine.connect()
            except DBAPIError:
                return False
            try:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                ).scalar()
                conn.commit()
            except DBAPIError:
                conn.close()
                return False
            if not got:
                conn.close()
                return False
            _log.info("leader lease acquired", extra={"job": self._name})
            self._conn = conn
            return True

    def release(self) -> None:
        """Give the lease up (closing its connection releases the lock)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None
