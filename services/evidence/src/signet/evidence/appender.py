"""Appends committed in groups: many concurrent appends, one transaction.

Every append is one small insert (the entry and its references). Done one transaction per
call, the transaction overhead and SQLite's single writer lock dominate, so appends go to
one writer thread (:class:`~signet.common.groupcommit.GroupCommitter`): the appends that
arrive while a transaction runs are written together in the next one, with statements
compiled once and run on the driver directly. Idempotency stays per event id: an event
already in the log (or earlier in the same group) is reported as a duplicate and writes
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.engine import Dialect

from signet.common.errors import ServiceError
from signet.common.groupcommit import RawStatement
from signet.evidence.models import EntryRef, LogEntry

_ENTRIES = cast(Table, LogEntry.__table__)
_REFS = cast(Table, EntryRef.__table__)
_COLUMNS = (
    "event_id",
    "event_type",
    "source",
    "subject",
    "tenant",
    "transaction_id",
    "event_time",
    "leaf_data",
    "leaf_hash",
    "received_at",
)


@dataclass(frozen=True)
class NewEntry:
    """An entry to append (not yet sequenced) and what it is about."""

    event_id: str
    event_type: str
    source: str
    subject: str
    tenant: str
    transaction_id: str
    event_time: datetime
    leaf_data: bytes
    leaf_hash: bytes
    received_at: datetime
    refs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Appended:
    """The entry id of an append, and whether the event was already in the log."""

    entry_id: int
    duplicate: bool


class AppendWriter:
    """The group handler: ``(cursor, entries) -> outcomes`` inside the writer's transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self._find = RawStatement(
            select(_ENTRIES.c.id).where(_ENTRIES.c.event_id == bindparam("event_id")), dialect
        )
        self._insert = RawStatement(
            insert(_ENTRIES).returning(_ENTRIES.c.id), dialect, list(_COLUMNS)
        )
        self._insert_ref = RawStatement(insert(_REFS), dialect, ["entry_id", "kind", "value"])

    def __call__(self, cursor: Any, entries: Sequence[NewEntry]) -> list[Appended | ServiceError]:
        """Insert the entries not yet in the log; report the others as duplicates."""
        outcomes: list[Appended | ServiceError] = []
        in_group: dict[str, int] = {}
        refs: list[dict[str, object]] = []
        for entry in entries:
            known = in_group.get(entry.event_id)
            if known is None:
                cursor.execute(self._find.sql, self._find.params({"event_id": entry.event_id}))
                row = cursor.fetchone()
                known = int(row[0]) if row is not None else None
            if known is not None:
                outcomes.append(Appended(known, duplicate=True))
                continue
            values = {name: getattr(entry, name) for name in _COLUMNS}
            cursor.execute(self._insert.sql, self._insert.params(values))
            entry_id = int(cursor.fetchone()[0])
            in_group[entry.event_id] = entry_id
            refs.extend({"entry_id": entry_id, "kind": k, "value": v} for k, v in entry.refs)
            outcomes.append(Appended(entry_id, duplicate=False))
        self._insert_ref.execute_many(cursor, refs)
        return outcomes
