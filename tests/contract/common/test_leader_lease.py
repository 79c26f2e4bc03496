"""The leader lease: one holder among replicas on PostgreSQL, taken over when it goes;
on SQLite every instance runs the job."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from signet.common.leader import LeaderLease


@pytest.mark.postgres
def test_one_replica_holds_the_lease_and_another_takes_over(postgres_url: str) -> None:
    first_engine, second_engine = create_engine(postgres_url), create_engine(postgres_url)
    first = LeaderLease(first_engine, "evidence-sequencer")
    second = LeaderLease(second_engine, "evidence-sequencer")
    other_job = LeaderLease(second_engine, "ca-scheduler")
    try:
        assert first.held()
        assert first.held()  # kept, not re-acquired
        assert not second.held()
        assert other_job.held()  # another job's lease is independent
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        for lease in (first, second, other_job):
            lease.release()
        first_engine.dispose()
        second_engine.dispose()


@pytest.mark.postgres
def test_lease_of_a_dead_holder_is_free_again(postgres_url: str) -> None:
    first_engine, second_engine = create_engine(postgres_url), create_engine(postgres_url)
    first = LeaderLease(first_engine, "evidence-sequencer")
    second = LeaderLease(second_engine, "evidence-sequencer")
    try:
        assert first.held()
        # The holder's process dies: the server drops its connection and the lock.
        first_engine.dispose()
        assert first._conn is not None
        first._conn.invalidate()
        assert second.held()
    finally:
        second.release()
        second_engine.dispose()


def test_on_sqlite_every_instance_runs() -> None:
    engine = create_engine("sqlite://")
    a, b = LeaderLease(engine, "job"), LeaderLease(engine, "job")
    assert a.shared and a.held() and b.held()
