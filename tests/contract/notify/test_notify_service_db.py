"""The delivery flow on SQLite and PostgreSQL: claims, attempts, dead letters, replay, events."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import select

from signet.common.auth import ANONYMOUS
from signet.common.db import Database
from signet.common.events import new_envelope
from signet.common.outbox import OutboxMessage
from signet.events.v1 import events_pb2
from signet.events.v1.events_pb2 import EventEnvelope
from signet.notify.domain import (
    ChannelKind,
    Contact,
    OutboundMessage,
    RecipientSpec,
    SendRequest,
    SendResult,
)
from signet.notify.metrics import NotifyMetrics
from signet.notify.models import MIGRATIONS_DIR, Delivery, DeliveryState
from signet.notify.sealing import Sealer
from signet.notify.service import DeliveryPolicy, NotifyService
from signet.notify.templates import TemplateCatalog


class ScriptedSender:
    kind = ChannelKind.EMAIL

    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        return self.results.pop(0) if self.results else SendResult.ok(250)


class Directory:
    def contact(self, account_id: str) -> Contact:
        return Contact(account_id, email=f"{account_id}@example.com", locale="en")


class Evidence:
    def append(self, envelope: EventEnvelope) -> None:
        return None


def _service(db: Database, sender: ScriptedSender) -> NotifyService:
    return NotifyService(
        db=db,
        sealer=Sealer(b"s" * 32),
        catalog=TemplateCatalog(),
        senders={ChannelKind.EMAIL: sender},
        directory=Directory(),
        evidence=Evidence(),
        metrics=NotifyMetrics.create(CollectorRegistry()),
        policy=DeliveryPolicy(
            max_attempts=2,
            retry_initial_seconds=0.001,
            retry_max_seconds=0.001,
            retry_jitter_seconds=0.0,
        ),
    )


def _drain(service: NotifyService) -> None:
    """Attempt until nothing is due, waiting out the (millisecond) backoffs."""
    idle = 0
    while idle < 3:
        ids = service.claim_due(10)
        for delivery_id in ids:
            service.attempt(delivery_id)
        idle = 0 if ids else idle + 1
        time.sleep(0.01)


def test_event_notification_is_delivered_once_with_its_events(
    migrated_db: Callable[[Path], Database],
) -> None:
    db = migrated_db(MIGRATIONS_DIR)
    sender = ScriptedSender(SendResult.transient("smtp_451", 451))
    service = _service(db, sender)
    envelope = new_envelope(
        events_pb2.CertificateIssued(serial="0B", account_id="acc-1"),
        source="ca-gateway",
        subject="0B",
        tenant="t1",
    )
    assert service.handle_event(envelope) == 1
    assert service.handle_event(envelope) == 0
    _drain(service)
    assert len(sender.sent) == 2 and sender.sent[-1].to == "acc-1@example.com"  # type: ignore[union-attr]
    with db.session() as s:
        [row] = s.scalars(select(Delivery)).all()
        assert row.state is DeliveryState.DELIVERED and row.recipient_masked == "a****@example.com"
        types = [m.topic for m in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    assert types == ["signet.notify.v1", "signet.notify.v1"]  # failed, then sent


def test_dead_letter_and_replay_on_every_database(
    migrated_db: Callable[[Path], Database],
) -> None:
    db = migrated_db(MIGRATIONS_DIR)
    sender = ScriptedSender(SendResult.transient("timeout"), SendResult.transient("timeout"))
    service = _service(db, sender)
    sent = service.send(
        ANONYMOUS,
        SendRequest(
            tenant="t1",
            channel=ChannelKind.EMAIL,
            recipient=RecipientSpec(email="x@example.com"),
            template_id="account-cancelled",
        ),
    )
    _drain(service)
    with db.session() as s:
        row = s.get(Delivery, sent.notification_id)
        assert row is not None and row.state is DeliveryState.DEAD_LETTERED
        topics = [m.topic for m in s.scalars(select(OutboxMessage))]
    assert service.dead_letter_topic in topics
    assert service.replay(ANONYMOUS, tenant="t1") == [sent.notification_id]
    _drain(service)
    with db.session() as s:
        row = s.get(Delivery, sent.notification_id)
        assert row is not None and row.state is DeliveryState.DELIVERED and row.attempts == 3
