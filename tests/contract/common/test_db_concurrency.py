"""Concurrent units of work that read and then write all commit, on SQLite and PostgreSQL.

A service handles calls on many threads (and, replicated, in several processes) against one
database. On SQLite a transaction that began as a reader cannot always become a writer once
another connection has written (it fails at once, whatever the busy timeout), so a unit of
work must take the write lock when it begins; this is the failure this suite guards against.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from signet.common.db import Database


class _Base(sa.orm.DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = "concurrency_rows"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    seen: Mapped[int] = mapped_column(sa.Integer)


def test_read_then_write_units_of_work_all_commit_under_concurrency(database_url: str) -> None:
    db = Database.from_url(database_url)
    _Base.metadata.create_all(db.engine)
    start = threading.Barrier(8)

    def work(_: int) -> None:
        start.wait()
        for _ in range(15):
            with db.session() as s:
                seen = s.scalar(sa.select(sa.func.count()).select_from(_Row)) or 0
                s.add(_Row(id=uuid.uuid4().hex, seen=seen))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        with db.session() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(_Row)) == 8 * 15
    finally:
        _Base.metadata.drop_all(db.engine)
        db.dispose()
