"""Data access for log entries, subtree hashes, tree heads, service keys and timestamps."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from signet.common.db import utcnow
from signet.evidence.merkle import NodeKey
from signet.evidence.models import (
    EntryRef,
    LogEntry,
    MerkleNode,
    ServiceKey,
    TimestampToken,
    TreeHead,
)

# Bound parameters per statement stay well under SQLite's and PostgreSQL's limits.
_CHUNK = 400


class LogRepository:
    """Entries, subtree hashes and tree heads of one unit of work."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # ---- entries ---------------------------------------------------------------------

    def add_entry(self, entry: LogEntry, refs: Iterable[tuple[str, str]] = ()) -> LogEntry:
        """Queue an entry for sequencing (a duplicate event id fails with AlreadyExists)."""
        self._session.add(entry)
        self._session.flush()
        rows = [{"entry_id": entry.id, "kind": k, "value": v} for k, v in sorted(set(refs))]
        if rows:
            self._session.execute(insert(EntryRef), rows)
        return entry

    def by_event_id(self, event_id: str) -> LogEntry | None:
        """The entry of one event, if appended."""
        return self._session.scalars(select(LogEntry).where(LogEntry.event_id == event_id)).first()

    def by_event_ids(self, event_ids: Collection[str]) -> dict[str, LogEntry]:
        """Entries of the given events that exist, by event id."""
        found: dict[str, LogEntry] = {}
        ids = list(event_ids)
        for i in range(0, len(ids), _CHUNK):
            stmt = select(LogEntry).where(LogEntry.event_id.in_(ids[i : i + _CHUNK]))
            found.update({e.event_id: e for e in self._session.scalars(stmt)})
        return found

    def by_leaf_index(self, index: int) -> LogEntry | None:
        """The entry integrated at ``index``."""
        return self._session.scalars(select(LogEntry).where(LogEntry.leaf_index == index)).first()

    def by_leaf_hash(self, leaf_hash: bytes) -> LogEntry | None:
        """The first integrated entry with this leaf hash."""
        stmt = (
            select(LogEntry)
            .where(LogEntry.leaf_hash == leaf_hash, LogEntry.leaf_index.is_not(None))
            .order_by(LogEntry.leaf_index)
            .limit(1)
        )
        return self._session.scalars(stmt).first()

    def leaf_index_of(self, entry_id: int) -> int | None:
        """The leaf index of an entry (None while unsequenced)."""
        return self._session.scalar(select(LogEntry.leaf_index).where(LogEntry.id == entry_id))

    def unsequenced(self, limit: int) -> Sequence[LogEntry]:
        """Entries not yet integrated, in arrival order."""
        stmt = (
            select(LogEntry).where(LogEntry.leaf_index.is_(None)).order_by(LogEntry.id).limit(limit)
        )
        return self._session.scalars(stmt).all()

    def pending_count(self) -> int:
        """How many entries wait for integration."""
        count = self._session.scalar(
            select(func.count()).select_from(LogEntry).where(LogEntry.leaf_index.is_(None))
        )
        return int(count or 0)

    def sequence(self, assignments: Sequence[tuple[int, int]]) -> None:
        """Give entries (id, leaf index) their places in the log."""
        now = utcnow()
        self._session.execute(
            update(LogEntry),
            [{"id": i, "leaf_index": index, "integrated_at": now} for i, index in assignments],
        )

    def entries(
        self,
        *,
        start_index: int,
        end_index: int,
        transaction_id: str = "",
        event_type: str = "",
        tenant: str = "",
        ref: tuple[str, str] | None = None,
        limit: int,
    ) -> Sequence[LogEntry]:
        """Integrated entries with leaf index in [start, end), filtered, in index order."""
        stmt = select(LogEntry).where(
            LogEntry.leaf_index >= start_index, LogEntry.leaf_index < end_index
        )
        if transaction_id:
            stmt = stmt.where(LogEntry.transaction_id == transaction_id)
        if event_type:
            stmt = stmt.where(LogEntry.event_type == event_type)
        if tenant:
            stmt = stmt.where(LogEntry.tenant == tenant)
        if ref is not None:
            stmt = stmt.where(
                LogEntry.id.in_(
                    select(EntryRef.entry_id).where(
                        EntryRef.kind == ref[0], EntryRef.value == ref[1]
                    )
                )
            )
        return self._session.scalars(stmt.order_by(LogEntry.leaf_index).limit(limit)).all()

    def related(
        self,
        refs: Collection[tuple[str, str]],
        transaction_ids: Collection[str],
        limit: int,
        event_types: Collection[str] = (),
    ) -> Sequence[LogEntry]:
        """Integrated entries naming any of ``refs`` or in any of ``transaction_ids``.

        ``event_types`` (when given) keeps only entries of those types.
        """
        conditions = []
        if transaction_ids:
            conditions.append(LogEntry.transaction_id.in_(list(transaction_ids)))
        if refs:
            conditions.append(
                LogEntry.id.in_(
                    select(EntryRef.entry_id).where(
                        or_(*(and_(EntryRef.kind == k, EntryRef.value == v) for k, v in refs))
                    )
                )
            )
        if not conditions:
            return []
        stmt = select(LogEntry).where(LogEntry.leaf_index.is_not(None), or_(*conditions))
        if event_types:
            stmt = stmt.where(LogEntry.event_type.in_(list(event_types)))
        return self._session.scalars(stmt.order_by(LogEntry.leaf_index).limit(limit)).all()

    # ---- subtree hashes --------------------------------------------------------------

    def nodes(self, keys: Collection[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored subtree hashes for ``keys`` (missing ones are absent).

        One statement of a fixed shape (levels IN, indices IN; SQLAlchemy caches its
        compilation) that may return a few extra rows, dropped here: for the O(log n)
        nodes of a proof that is far cheaper than building a query per key or level.
        """
        wanted = set(keys)
        if not wanted:
            return {}
        levels = sorted({level for level, _ in wanted})
        indices = sorted({index for _, index in wanted})
        found: dict[NodeKey, bytes] = {}
        for i in range(0, len(indices), _CHUNK):
            stmt = select(MerkleNode.level, MerkleNode.node_index, MerkleNode.hash).where(
                MerkleNode.level.in_(levels), MerkleNode.node_index.in_(indices[i : i + _CHUNK])
            )
            for level, index, value in self._session.execute(stmt):
                key = (int(level), int(index))
                if key in wanted:
                    found[key] = value
        return found

    def add_nodes(self, nodes: Mapping[NodeKey, bytes]) -> None:
        """Store new subtree hashes (an existing key fails with AlreadyExists)."""
        rows = [{"level": lv, "node_index": ix, "hash": h} for (lv, ix), h in nodes.items()]
        for i in range(0, len(rows), _CHUNK):
            self._session.execute(insert(MerkleNode), rows[i : i + _CHUNK])

    # ---- tree heads ------------------------------------------------------------------

    def add_tree_head(self, head: TreeHead) -> None:
        """Store a signed tree head."""
        self._session.add(head)
        self._session.flush()

    def latest_tree_head(self) -> TreeHead | None:
        """The newest head of the largest size, if any."""
        return self._session.scalars(
            select(TreeHead).order_by(TreeHead.tree_size.desc(), TreeHead.id.desc()).limit(1)
        ).first()

    def tree_head_for_size(self, size: int) -> TreeHead | None:
        """The newest signed head of exactly ``size`` entries."""
        return self._session.scalars(
            select(TreeHead).where(TreeHead.tree_size == size).order_by(TreeHead.id.desc()).limit(1)
        ).first()

    # ---- keys and timestamps ---------------------------------------------------------

    def service_key(self, purpose: str) -> ServiceKey | None:
        """Our system key for ``purpose``, if recorded."""
        return self._session.get(ServiceKey, purpose)

    def add_service_key(self, key: ServiceKey) -> None:
        """Record a system key (a second one for the same purpose fails)."""
        self._session.add(key)
        self._session.flush()

    def add_timestamp(self, token: TimestampToken) -> None:
        """Keep an issued timestamp token."""
        self._session.add(token)
        self._session.flush()

    def timestamps_by_sha256(self, digests: Collection[bytes]) -> Sequence[TimestampToken]:
        """Issued tokens whose SHA-256 is one of ``digests``."""
        if not digests:
            return []
        stmt = select(TimestampToken).where(TimestampToken.token_sha256.in_(list(digests)))
        return self._session.scalars(stmt).all()
