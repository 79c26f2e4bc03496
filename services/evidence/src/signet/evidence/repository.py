"""Data access for log entries and tree heads."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from signet.evidence.models import LogEntry, TreeHead


class LogRepository:
    """Entries and tree heads of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add_entry(self, entry: LogEntry) -> LogEntry:
        """Queue an entry for sequencing (a duplicate event id fails with AlreadyExists)."""
        self._session.add(entry)
        self._session.flush()
        return entry

    def unsequenced(self, limit: int) -> Sequence[LogEntry]:
        """Entries not yet integrated, in arrival order."""
        stmt = (
            select(LogEntry).where(LogEntry.leaf_index.is_(None)).order_by(LogEntry.id).limit(limit)
        )
        return self._session.scalars(stmt).all()

    def tree_size(self) -> int:
        """Number of integrated leaves."""
        count = self._session.scalar(
            select(func.count()).select_from(LogEntry).where(LogEntry.leaf_index.is_not(None))
        )
        return int(count or 0)

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes with index in [start, end), in index order."""
        stmt = (
            select(LogEntry.leaf_hash)
            .where(LogEntry.leaf_index >= start, LogEntry.leaf_index < end)
            .order_by(LogEntry.leaf_index)
        )
        return list(self._session.scalars(stmt).all())

    def add_tree_head(self, head: TreeHead) -> None:
        """Store a signed tree head."""
        self._session.add(head)
        self._session.flush()

    def latest_tree_head(self) -> TreeHead | None:
        """The largest signed tree head, if any."""
        return self._session.scalars(
            select(TreeHead).order_by(TreeHead.tree_size.desc()).limit(1)
        ).first()
