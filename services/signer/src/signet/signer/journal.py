"""The signature journal: where signatures' grants, key counters and events are written.

A signature is returned only after its grant was consumed and its SignatureCreated event
committed. Those writes are grouped (one transaction, one multi-row insert) by a single
writer. In one process the writer is a thread (:class:`GroupCommitter`); but a writer
thread shares the interpreter lock with dozens of request threads and, measured, commits
ten times slower than alone. With several worker processes the signer therefore runs the
journal as a process of its own (``python -m signet.signer.journal``): single-threaded,
it never waits for the lock, and the workers no longer contend for SQLite's write lock
among themselves. Workers talk to it over a Unix socket, one connection per request
thread, each request a length-prefixed pickle (both ends are this program).

Plain data crosses that boundary: :class:`JournalWrite` in, per item an outcome out
(``""`` recorded, ``"replayed"`` grant already used, ``"retired"`` key disabled meanwhile).
"""

from __future__ import annotations

import logging
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import FrameType
from typing import Any, Protocol, cast

from sqlalchemy import Integer, Table, bindparam, insert, update
from sqlalchemy.engine import Dialect

from signet.common.db import Database, UtcDateTime
from signet.common.errors import Unavailable
from signet.common.groupcommit import GroupCommitter, GroupWriter, RawStatement
from signet.common.outbox import OUTBOX_TABLE
from signet.signer.models import ConsumedGrant, KeyRecord, KeyState

_log = logging.getLogger("signet.signer.journal")

RECORDED = ""
REPLAYED = "replayed"
RETIRED = "retired"

_KEYS = cast(Table, KeyRecord.__table__)
_GRANTS = cast(Table, ConsumedGrant.__table__)
_OUTBOX_COLUMNS = (
    "event_id",
    "topic",
    "key",
    "envelope",
    "headers",
    "created_at",
    "published_at",
    "attempts",
)
_FRAME = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


@dataclass(frozen=True)
class JournalItem:
    """One signature to record: its key, its grant (if any) and its event row."""

    index: int
    key_id: str
    grant_id: str
    grant_expires_at: datetime | None
    event: dict[str, Any]


@dataclass(frozen=True)
class JournalWrite:
    """One call's signatures."""

    items: tuple[JournalItem, ...]
    now: datetime


Outcomes = dict[int, str]


class Journal(Protocol):
    """Where a signer records signatures: a writer thread, or the journal process."""

    def submit(self, write: JournalWrite) -> Outcomes:
        """Record ``write`` (one transaction with others); its outcomes once committed."""
        ...

    def close(self) -> None:
        """Release what the journal holds."""
        ...


class _Statements:
    """The journal's writes, compiled once for the database's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.mark_used = RawStatement(
            update(_KEYS)
            .where(_KEYS.c.id == bindparam("key_id"), _KEYS.c.state == KeyState.ACTIVE.value)
            .values(
                sign_count=_KEYS.c.sign_count + bindparam("count", type_=Integer),
                last_used_at=bindparam("now", type_=UtcDateTime()),
            ),
            dialect,
        )
        self.consume_grant = RawStatement(
            insert(_GRANTS), dialect, ("grant_id", "key_id", "consumed_at", "expires_at")
        )
        self.add_event = RawStatement(insert(OUTBOX_TABLE), dialect, _OUTBOX_COLUMNS)


class JournalWriter:
    """Writes a group of calls with few statements; per-call, per-item outcomes."""

    def __init__(self, dialect: Dialect, integrity_error: type[Exception]) -> None:
        self._sql = _Statements(dialect)
        self._integrity_error = integrity_error

    def __call__(self, cursor: Any, writes: Sequence[JournalWrite]) -> list[Outcomes]:
        """Consume grants, bump key counters, insert the events of the recorded items."""
        now = writes[-1].now
        owner_of_grant = self._consume_grants(cursor, writes, now)
        retired = self._count_uses(cursor, writes, owner_of_grant, now)
        rows: list[dict[str, Any]] = []
        outcomes: list[Outcomes] = []
        for n, write in enumerate(writes):
            out: Outcomes = {}
            for item in write.items:
                if item.grant_id and owner_of_grant.get(item.grant_id) != n:
                    out[item.index] = REPLAYED
                elif item.key_id in retired:
                    out[item.index] = RETIRED
                else:
                    out[item.index] = RECORDED
                    rows.append(item.event)
            outcomes.append(out)
        self._sql.add_event.execute_many(cursor, rows)
        return outcomes

    def _consume_grants(
        self, cursor: Any, writes: Sequence[JournalWrite], now: datetime
    ) -> dict[str, int]:
        """Record each grant id once; map it to the call (index) that may use it.

        A grant id already stored (or used by an earlier call of the group) maps to no call.
        """
        first: dict[str, tuple[int, JournalItem]] = {}
        for n, write in enumerate(writes):
            for item in write.items:
                if item.grant_id and item.grant_id not in first:
                    first[item.grant_id] = (n, item)
        if not first:
            return {}
        rows = [
            {
                "grant_id": grant_id,
                "key_id": item.key_id,
                "consumed_at": now,
                "expires_at": item.grant_expires_at or now,
            }
            for grant_id, (_, item) in first.items()
        ]
        if self._try(cursor, lambda: self._sql.consume_grant.execute_many(cursor, rows)):
            return {grant_id: n for grant_id, (n, _) in first.items()}
        owners: dict[str, int] = {}
        for row in rows:
            grant_id = str(row["grant_id"])
            if self._try(cursor, partial(self._sql.consume_grant.execute, cursor, row)):
                owners[grant_id] = first[grant_id][0]
        return owners

    def _try(self, cursor: Any, action: Callable[[], object]) -> bool:
        """Run ``action`` in a savepoint; False (and rolled back) on a duplicate key."""
        cursor.execute("SAVEPOINT signet_grant")
        try:
            action()
        except self._integrity_error:
            cursor.execute("ROLLBACK TO SAVEPOINT signet_grant")
            cursor.execute("RELEASE SAVEPOINT signet_grant")
            return False
        cursor.execute("RELEASE SAVEPOINT signet_grant")
        return True

    def _count_uses(
        self,
        cursor: Any,
        writes: Sequence[JournalWrite],
        owner_of_grant: dict[str, int],
        now: datetime,
    ) -> set[str]:
        """Bump each key's counters while it is still active; return keys retired meanwhile."""
        per_key: dict[str, int] = {}
        for n, write in enumerate(writes):
            for item in write.items:
                if not item.grant_id or owner_of_grant.get(item.grant_id) == n:
                    per_key[item.key_id] = per_key.get(item.key_id, 0) + 1
        retired: set[str] = set()
        for key_id, count in per_key.items():
            values = {"key_id": key_id, "count": count, "now": now}
            if not self._sql.mark_used.execute(cursor, values):
                retired.add(key_id)
        return retired


def local_journal(db: Database) -> GroupCommitter[JournalWrite, Outcomes]:
    """The journal as a writer thread in this process."""
    engine = db.engine
    error = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
    return GroupCommitter(engine, JournalWriter(engine.dialect, error), name="signer-journal")


class JournalClient:
    """The workers' side of the journal process: one socket per request thread."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self._path = path
        self._timeout = timeout
        self._local = threading.local()

    def submit(self, write: JournalWrite) -> Outcomes:
        """Record ``write``; its outcomes once committed."""
        sock = self._socket()
        try:
            _send(sock, write)
        except OSError:
            # The journal this connection led to is gone (restarted): nothing reached it,
            # so sending again on a fresh connection cannot record anything twice.
            self._drop()
            sock = self._socket()
            try:
                _send(sock, write)
            except OSError as err:
                self._drop()
                raise Unavailable("the signature journal is unavailable") from err
        try:
            status, value = _receive(sock)
        except (OSError, EOFError, pickle.UnpicklingError) as err:
            self._drop()
            raise Unavailable("the signature journal is unavailable") from err
        if status != "ok":
            raise Unavailable("the database is temporarily unavailable")
        return cast(Outcomes, value)

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        self._drop()

    def _socket(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self._path)
            except OSError as err:
                sock.close()
                raise Unavailable("the signature journal is unavailable") from err
            self._local.sock = sock
        return sock

    def _drop(self) -> None:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close()
            self._local.sock = None


def _send(sock: socket.socket, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    (size,) = _FRAME.unpack(_read_exact(sock, _FRAME.size))
    if size > MAX_FRAME:
        raise EOFError("frame too large")
    return pickle.loads(_read_exact(sock, size))  # noqa: S301 (our own processes)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("connection closed")
        chunks += chunk
    return bytes(chunks)


class _Connection:
    """A worker thread's connection, with the bytes read so far."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[JournalWrite]:
        out = []
        while len(self.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self.buffer)
            if size > MAX_FRAME:
                raise EOFError("frame too large")
            if len(self.buffer) < _FRAME.size + size:
                break
            body = bytes(self.buffer[_FRAME.size : _FRAME.size + size])
            del self.buffer[: _FRAME.size + size]
            out.append(pickle.loads(body))  # noqa: S301 (our own processes)
        return out


class JournalServer:
    """The journal process: one thread, a selector over the workers' connections."""

    def __init__(self, db: Database, path: str) -> None:
        engine = db.engine
        error = engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        # The same writer the in-process journal uses, driven synchronously here.
        self._writer: GroupWriter[JournalWrite, Outcomes] = GroupWriter(
            engine, JournalWriter(engine.dialect, error)
        )
        self._path = path
        self._selector = selectors.DefaultSelector()
        self._stop = False

    def stop(self) -> None:
        """Ask the loop to end after the current group."""
        self._stop = True

    def serve(self) -> None:
        """Accept workers and commit what they send, a group per wake-up, until stopped."""
        if os.path.exists(self._path):
            os.unlink(self._path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self._path)
        listener.listen(512)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, None)
        _log.info("journal ready", extra={"socket": self._path})
        try:
            while not self._stop:
                group: list[tuple[_Connection, JournalWrite]] = []
                for key, _ in self._selector.select(timeout=0.5):
                    if key.data is None:
                        self._accept(listener)
                        continue
                    conn = cast(_Connection, key.data)
                    group.extend((conn, w) for w in self._read(conn))
                if group:
                    self._answer(group)
        finally:
            self._writer.close()
            self._selector.close()
            listener.close()
            if os.path.exists(self._path):
                os.unlink(self._path)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, _Connection(sock))

    def _read(self, conn: _Connection) -> list[JournalWrite]:
        try:
            while True:
                try:
                    chunk = conn.sock.recv(1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    raise EOFError("closed")
                conn.buffer += chunk
            return conn.frames()
        except (OSError, EOFError, pickle.UnpicklingError):
            self._selector.unregister(conn.sock)
            conn.sock.close()
            return []

    def _answer(self, group: list[tuple[_Connection, JournalWrite]]) -> None:
        try:
            outcomes: list[tuple[str, object]] = [
                ("ok", o) for o in self._writer.write([w for _, w in group])
            ]
        except Exception:  # noqa: BLE001 (every worker waiting must get an answer)
            _log.warning("journal group failed", exc_info=True, extra={"calls": len(group)})
            outcomes = [("error", None)] * len(group)
        for (conn, _), answer in zip(group, outcomes, strict=True):
            try:
                conn.sock.setblocking(True)
                _send(conn.sock, answer)
                conn.sock.setblocking(False)
            except OSError:
                self._selector.unregister(conn.sock)
                conn.sock.close()


def main() -> None:
    """``python -m signet.signer.journal <socket path>`` (started by the signer)."""
    from signet.common.logging import configure_logging
    from signet.signer.config import SignerSettings

    settings = SignerSettings()
    configure_logging("signer-journal", settings.log_level)
    db = Database.from_url(settings.database_url)
    server = JournalServer(db, sys.argv[1])

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve()
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
