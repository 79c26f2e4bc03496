"""GroupCommitter on SQLite and PostgreSQL: groups commit together, fail together, and a
request's own error stays its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, insert, select

from signet.common.db import Database
from signet.common.errors import AlreadyExists, ServiceError, Unavailable
from signet.common.groupcommit import GroupCommitter, RawStatement

META = MetaData()
ITEMS = Table("gc_items", META, Column("id", Integer, primary_key=True), Column("name", String(32)))
DOCS = Table("gc_docs", META, Column("id", Integer, primary_key=True), Column("doc", JSON))


class _Work:
    """Inserts each request's rows; a duplicate id answers that request alone."""

    def __init__(self, db: Database, integrity_error: type[Exception]) -> None:
        self.insert = RawStatement(insert(ITEMS), db.engine.dialect, ("id", "name"))
        self.integrity_error = integrity_error
        self.groups: list[int] = []
        self.fail_next = False

    def __call__(self, cursor: Any, requests: Sequence[int]) -> list[int | ServiceError]:
        self.groups.append(len(requests))
        if self.fail_next:
            self.fail_next = False
            cursor.execute("SELECT * FROM no_such_table")
        out: list[int | ServiceError] = []
        for n in requests:
            cursor.execute("SAVEPOINT item")
            try:
                self.insert.execute(cursor, {"id": n, "name": f"item-{n}"})
            except self.integrity_error:
                cursor.execute("ROLLBACK TO SAVEPOINT item")
                out.append(AlreadyExists(f"item {n} exists"))
            else:
                out.append(n * 10)
            cursor.execute("RELEASE SAVEPOINT item")
        return out


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    META.create_all(database.engine)
    yield database
    META.drop_all(database.engine)
    database.dispose()


def _stored(db: Database) -> list[int]:
    with db.engine.connect() as conn:
        return sorted(conn.execute(select(ITEMS.c.id)).scalars())


def test_requests_commit_in_groups_with_their_own_outcomes(db: Database) -> None:
    error = db.engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
    work = _Work(db, error)
    committer: GroupCommitter[int, int] = GroupCommitter(db.engine, work)
    try:
        results: dict[int, object] = {}

        def call(n: int) -> None:
            try:
                results[n] = committer.submit(n % 40)
            except ServiceError as err:
                results[n] = err

        threads = [threading.Thread(target=call, args=(n,)) for n in range(80)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _stored(db) == list(range(40))
        ok = [n for n, r in results.items() if isinstance(r, int)]
        dup = [n for n, r in results.items() if isinstance(r, AlreadyExists)]
        # Each id was inserted by exactly one of its two requests.
        assert sorted(n % 40 for n in ok) == list(range(40))
        assert sorted(n % 40 for n in dup) == list(range(40))
        assert sum(work.groups) == 80
    finally:
        committer.close()


def test_a_failed_transaction_fails_the_whole_group_and_stores_nothing(db: Database) -> None:
    error = db.engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
    work = _Work(db, error)
    committer: GroupCommitter[int, int] = GroupCommitter(db.engine, work)
    try:
        work.fail_next = True
        with pytest.raises(Unavailable):
            committer.submit(1)
        assert _stored(db) == []
        # The writer recovers with a fresh connection.
        assert committer.submit(2) == 20
        assert _stored(db) == [2]
    finally:
        committer.close()
    with pytest.raises(Unavailable):
        committer.submit(3)


def test_raw_statement_serialises_json_as_the_dialect_does(db: Database) -> None:
    # The outbox's headers column is JSON: on PostgreSQL a nested list must arrive as JSON,
    # not as the driver's array literal (the signer's journal wrote no event at all there).
    statement = RawStatement(insert(DOCS), db.engine.dialect, ("id", "doc"))
    headers = [["traceparent", "00-abc-def-01"], ["x-event-id", "e-1"]]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        statement.execute(cursor, {"id": 1, "doc": headers})
        raw.commit()
    finally:
        raw.close()
    with db.engine.connect() as conn:
        assert conn.execute(select(DOCS.c.doc)).scalar_one() == headers
