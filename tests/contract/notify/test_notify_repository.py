"""Notify repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from signet.common.db import Database
from signet.common.errors import AlreadyExists, FailedPrecondition
from signet.notify.models import MIGRATIONS_DIR, Delivery, DeliveryAttempt, DeliveryState
from signet.notify.repository import DeliveryRepository


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _delivery(delivery_id: str, key: str = "evt-1", channel: str = "email") -> Delivery:
    return Delivery(
        id=delivery_id,
        idempotency_key=key,
        channel=channel,
        recipient_hash="h-recipient",
        recipient_masked="z***@example.com",
        template="certificate_issued",
    )


def test_same_event_channel_and_recipient_is_delivered_once(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("d1"))
        repo.add(_delivery("d2", channel="sms"))
    with pytest.raises(AlreadyExists), db.session() as s:
        DeliveryRepository(s).add(_delivery("d3"))


def test_attempts_are_kept_in_order(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("d1"))
        repo.add_attempt(DeliveryAttempt(delivery_id="d1", succeeded=False, detail="HTTP 503"))
        repo.add_attempt(DeliveryAttempt(delivery_id="d1", succeeded=True, detail="HTTP 200"))
        repo.get("d1").state = DeliveryState.DELIVERED
    with db.session() as s:
        repo = DeliveryRepository(s)
        assert repo.get("d1").state is DeliveryState.DELIVERED
        assert [a.succeeded for a in repo.attempts("d1")] == [False, True]


def test_attempt_of_unknown_delivery_is_rejected(db: Database) -> None:
    with pytest.raises(FailedPrecondition), db.session() as s:
        DeliveryRepository(s).add_attempt(DeliveryAttempt(delivery_id="nope", succeeded=True))
