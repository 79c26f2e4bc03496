"""Notify repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from signet.common.db import Database, utcnow
from signet.common.errors import AlreadyExists, FailedPrecondition
from signet.notify.models import (
    MIGRATIONS_DIR,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Incident,
    WebhookEndpoint,
)
from signet.notify.repository import (
    AccountRosterRepository,
    DeliveryRepository,
    IncidentRepository,
    PreferenceRepository,
    WebhookEndpointRepository,
)


@pytest.fixture
def db(migrated_db: Callable[[Path], Database]) -> Database:
    return migrated_db(MIGRATIONS_DIR)


def _delivery(
    delivery_id: str,
    key: str = "evt-1",
    channel: str = "email",
    *,
    state: DeliveryState = DeliveryState.PENDING,
    tenant: str = "t1",
    due_in: float = 0.0,
) -> Delivery:
    return Delivery(
        id=delivery_id,
        idempotency_key=key,
        channel=channel,
        recipient_hash="h-recipient",
        recipient_masked="z***@example.com",
        template="certificate-issued",
        category="certificate_notice",
        tenant=tenant,
        params={"serial": "01"},
        state=state,
        next_attempt_at=utcnow() + timedelta(seconds=due_in),
    )


def test_same_event_channel_and_recipient_is_delivered_once(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("d1"))
        repo.add(_delivery("d2", channel="sms"))
    with pytest.raises(AlreadyExists), db.session() as s:
        DeliveryRepository(s).add(_delivery("d3"))
    with db.session() as s:
        found = DeliveryRepository(s).find("evt-1", "sms", "h-recipient")
        assert found is not None and found.id == "d2"


def test_attempts_are_kept_in_order(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("d1"))
        repo.add_attempt(DeliveryAttempt(delivery_id="d1", attempt=1, succeeded=False))
        repo.add_attempt(DeliveryAttempt(delivery_id="d1", attempt=2, succeeded=True))
        repo.get("d1").state = DeliveryState.DELIVERED
    with db.session() as s:
        repo = DeliveryRepository(s)
        assert repo.get("d1").state is DeliveryState.DELIVERED
        assert [a.succeeded for a in repo.attempts("d1")] == [False, True]


def test_attempt_of_unknown_delivery_is_rejected(db: Database) -> None:
    with pytest.raises(FailedPrecondition), db.session() as s:
        DeliveryRepository(s).add_attempt(DeliveryAttempt(delivery_id="nope", succeeded=True))


def test_claim_takes_due_deliveries_once_until_the_lease_ends(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("due", key="k1"))
        repo.add(_delivery("later", key="k2", due_in=600))
        repo.add(_delivery("done", key="k3", state=DeliveryState.DELIVERED))
    now = utcnow()
    with db.session() as s:
        assert DeliveryRepository(s).claim_due(now, now + timedelta(seconds=60), 10) == ["due"]
    with db.session() as s:
        assert DeliveryRepository(s).claim_due(now, now + timedelta(seconds=60), 10) == []
    after_lease = now + timedelta(seconds=61)
    with db.session() as s:
        claimed = DeliveryRepository(s).claim_due(after_lease, after_lease, 10)
    assert claimed == ["due"]


def test_recent_attempts_are_counted_per_recipient_and_channel(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("d1"))
        for minutes, channel in ((90, "sms"), (30, "sms"), (10, "sms"), (5, "email")):
            repo.add_attempt(
                DeliveryAttempt(
                    delivery_id="d1",
                    recipient_hash="h-recipient",
                    channel=channel,
                    attempted_at=now - timedelta(minutes=minutes),
                    succeeded=True,
                )
            )
    with db.session() as s:
        recent = DeliveryRepository(s).attempts_since(
            "h-recipient", "sms", now - timedelta(hours=1)
        )
    assert [round((now - t).total_seconds() / 60) for t in recent] == [30, 10]


def test_dead_letters_are_filtered_by_ids_tenant_and_channel(db: Database) -> None:
    with db.session() as s:
        repo = DeliveryRepository(s)
        repo.add(_delivery("a", key="k1", state=DeliveryState.DEAD_LETTERED))
        repo.add(_delivery("b", key="k2", channel="sms", state=DeliveryState.DEAD_LETTERED))
        repo.add(_delivery("c", key="k3", tenant="t2", state=DeliveryState.DEAD_LETTERED))
        repo.add(_delivery("d", key="k4", state=DeliveryState.DELIVERED))
    with db.session() as s:
        repo = DeliveryRepository(s)
        assert sorted(d.id for d in repo.dead_lettered(limit=10)) == ["a", "b", "c"]
        assert sorted(d.id for d in repo.dead_lettered(tenant="t1", limit=10)) == ["a", "b"]
        assert [d.id for d in repo.dead_lettered(tenant="t1", channel="sms", limit=10)] == ["b"]
        assert [d.id for d in repo.dead_lettered(ids=["c", "d"], tenant="t1", limit=10)] == ["c"]
        assert repo.count_by_state() == {"dead_lettered": 3, "delivered": 1}


def test_endpoints_are_listed_per_tenant_in_pages(db: Database) -> None:
    with db.session() as s:
        repo = WebhookEndpointRepository(s)
        for i, tenant in enumerate(("t1", "t1", "t2", "t1")):
            repo.add(
                WebhookEndpoint(
                    id=f"we-{i}",
                    tenant=tenant,
                    url="https://example.com",
                    sealed_secret=b"x",
                    active=i != 3,
                )
            )
    with db.session() as s:
        repo = WebhookEndpointRepository(s)
        assert [e.id for e in repo.list_for_tenant("t1", limit=2)] == ["we-0", "we-1"]
        assert [e.id for e in repo.list_for_tenant("t1", after="we-1")] == ["we-3"]
        assert [e.id for e in repo.active_for_tenant("t1")] == ["we-0", "we-1"]


def test_roster_and_preferences_round_trip(db: Database) -> None:
    with db.session() as s:
        roster = AccountRosterRepository(s)
        roster.upsert("a1", "t1", True)
        roster.upsert("a2", "t2", True)
        roster.upsert("a1", "", False)
        PreferenceRepository(s).get_or_create("a2").disabled = {"reminder": ["email"]}
    with db.session() as s:
        roster = AccountRosterRepository(s)
        assert roster.active() == ["a2"]
        assert roster.tenant_of("a1") == "t1"
        prefs = PreferenceRepository(s).get("a2")
        assert prefs is not None and prefs.disabled == {"reminder": ["email"]}


def test_incident_idempotency_key_is_unique(db: Database) -> None:
    def incident(incident_id: str) -> Incident:
        return Incident(
            id=incident_id,
            idempotency_key="inc-key",
            title="t",
            severity="high",
            notice={"advice": "a"},
            scope="all",
            affected_count=0,
            notifications_queued=0,
            declared_by="ops",
            event=b"e",
        )

    with db.session() as s:
        IncidentRepository(s).add(incident("i1"))
    with pytest.raises(AlreadyExists), db.session() as s:
        IncidentRepository(s).add(incident("i2"))
    with db.session() as s:
        found = IncidentRepository(s).by_idempotency_key("inc-key")
        assert found is not None and found.id == "i1"
