"""Delivery rules with fake channels: retries, backoff, dead letters, codes, rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from signet.common.auth import ANONYMOUS
from signet.common.db import Database, utcnow
from signet.common.errors import InvalidArgument, NotFound
from signet.events.v1.events_pb2 import EventEnvelope
from signet.notify.backends.http import classify_status
from signet.notify.domain import (
    ChannelKind,
    Contact,
    OutboundMessage,
    Outcome,
    RecipientSpec,
    SendRequest,
    SendResult,
)
from signet.notify.metrics import NotifyMetrics
from signet.notify.models import MIGRATIONS_DIR, Delivery, DeliveryState
from signet.notify.sealing import Sealer
from signet.notify.service import DeliveryPolicy, NotifyService
from signet.notify.templates import TemplateCatalog


@dataclass
class FakeSender:
    kind: ChannelKind
    results: list[SendResult] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)

    def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        return self.results.pop(0) if self.results else SendResult.ok(200)


class FakeDirectory:
    def contact(self, account_id: str) -> Contact:
        raise NotFound("account not found")


class FakeEvidence:
    def append(self, envelope: EventEnvelope) -> None:
        return None


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: object) -> Iterator[Database]:
    database = Database.from_url("sqlite://")
    database.migrate(MIGRATIONS_DIR)
    yield database
    database.dispose()


def _service(db: Database, sender: FakeSender, clock: Clock, **policy: object) -> NotifyService:
    return NotifyService(
        db=db,
        sealer=Sealer(b"k" * 32),
        catalog=TemplateCatalog(),
        senders={sender.kind: sender},
        directory=FakeDirectory(),
        evidence=FakeEvidence(),
        metrics=NotifyMetrics.create(CollectorRegistry()),
        policy=DeliveryPolicy(
            max_attempts=3,
            retry_initial_seconds=1.0,
            retry_max_seconds=30.0,
            retry_jitter_seconds=0.5,
            **policy,  # type: ignore[arg-type]
        ),
        _clock=clock,
    )


def _code(key: str = "k", phone: str = "13800001111", **kw: object) -> SendRequest:
    values: dict[str, object] = {
        "tenant": "t1",
        "channel": ChannelKind.SMS,
        "recipient": RecipientSpec(phone=phone),
        "template_id": "verification-code",
        "params": {"code": "123456", "minutes": "5"},
        "sensitive_params": frozenset({"code"}),
        "idempotency_key": key,
    }
    values.update(kw)
    return SendRequest(**values)  # type: ignore[arg-type]


def _reminder() -> SendRequest:
    return SendRequest(
        tenant="t1",
        channel=ChannelKind.SMS,
        recipient=RecipientSpec(phone="13800001111"),
        template_id="signing-reminder",
        params={"document_title": "Lease", "due_date": "2026-12-01"},
    )


def test_dead_one_time_code_is_not_replayed(db: Database) -> None:
    clock = Clock()
    service = _service(db, FakeSender(ChannelKind.SMS, [SendResult.permanent("http_400")]), clock)
    sent = service.send(ANONYMOUS, _code())
    _run(service)
    assert _row(db, sent.notification_id).state is DeliveryState.DEAD_LETTERED
    assert service.replay(ANONYMOUS) == []


def _run(service: NotifyService) -> list[Outcome | None]:
    return [service.attempt(i) for i in service.claim_due(10)]


def _row(db: Database, notification_id: str) -> Delivery:
    with db.session() as s:
        row = s.get(Delivery, notification_id)
        assert row is not None
        return row


def test_backoff_grows_exponentially_with_bounded_jitter(db: Database) -> None:
    service = _service(db, FakeSender(ChannelKind.SMS), Clock())
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        waits = [service.backoff(attempt) for _ in range(50)]
        assert all(base <= w <= base + 0.5 for w in waits), (attempt, min(waits), max(waits))
        assert len(set(waits)) > 1  # jittered
    assert service.backoff(10) <= 30.0


def test_transient_failure_waits_its_backoff_before_the_next_attempt(db: Database) -> None:
    clock = Clock()
    sender = FakeSender(ChannelKind.SMS, [SendResult.transient("http_503", 503)])
    service = _service(db, sender, clock)
    sent = service.send(ANONYMOUS, _code())
    assert _run(service) == [Outcome.TRANSIENT]
    row = _row(db, sent.notification_id)
    assert row.state is DeliveryState.RETRYING and row.next_attempt_at is not None
    assert timedelta(seconds=1) <= row.next_attempt_at - clock.now <= timedelta(seconds=1.5)
    assert _run(service) == []  # not due yet
    clock.now += timedelta(seconds=2)
    assert _run(service) == [Outcome.SUCCESS]
    row = _row(db, sent.notification_id)
    assert row.state is DeliveryState.DELIVERED and row.sealed_params is None
    assert len(sender.sent) == 2


def test_budget_spent_dead_letters_and_replay_gives_a_new_budget(db: Database) -> None:
    clock = Clock()
    sender = FakeSender(ChannelKind.SMS, [SendResult.transient("timeout")] * 3)
    service = _service(db, sender, clock)
    sent = service.send(ANONYMOUS, _reminder())
    for _ in range(3):
        _run(service)
        clock.now += timedelta(minutes=1)
    assert _row(db, sent.notification_id).state is DeliveryState.DEAD_LETTERED
    assert service.replay(ANONYMOUS) == [sent.notification_id]
    assert _run(service) == [Outcome.SUCCESS]
    assert _row(db, sent.notification_id).attempts == 4


def test_expired_code_is_dead_lettered_unsent_and_never_replayed(db: Database) -> None:
    clock = Clock()
    sender = FakeSender(ChannelKind.SMS, [SendResult.transient("timeout")])
    service = _service(db, sender, clock)
    sent = service.send(ANONYMOUS, _code(deliver_before=clock.now + timedelta(milliseconds=900)))
    _run(service)  # transient; the next attempt would come after the deadline
    row = _row(db, sent.notification_id)
    assert row.state is DeliveryState.DEAD_LETTERED
    assert row.sealed_params is None  # the code is gone for good
    clock.now += timedelta(minutes=1)
    assert service.replay(ANONYMOUS) == []


def test_rate_limit_postpones_until_the_window_frees_a_slot(db: Database) -> None:
    clock = Clock()
    sender = FakeSender(ChannelKind.SMS)
    service = _service(db, sender, clock, recipient_rate_limit=2, recipient_rate_window_seconds=60)
    for i in range(3):
        service.send(ANONYMOUS, _code(key=f"k{i}"))
        _run(service)
        clock.now += timedelta(seconds=1)
    assert len(sender.sent) == 2
    clock.now += timedelta(seconds=57)
    _run(service)
    assert len(sender.sent) == 2
    clock.now += timedelta(seconds=2)
    _run(service)
    assert len(sender.sent) == 3


def test_webhook_send_refuses_sensitive_parameters(db: Database) -> None:
    service = _service(db, FakeSender(ChannelKind.WEBHOOK), Clock())
    request = SendRequest(
        tenant="t1",
        channel=ChannelKind.WEBHOOK,
        recipient=RecipientSpec(endpoint_id="we-1"),
        template_id="x",
        params={"code": "1"},
        sensitive_params=frozenset({"code"}),
    )
    with pytest.raises(InvalidArgument, match="never sent to webhooks"):
        service.send(ANONYMOUS, request)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (408, Outcome.TRANSIENT),
        (429, Outcome.TRANSIENT),
        (500, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (400, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (410, Outcome.PERMANENT),
    ],
)
def test_http_status_classification(status: int, outcome: Outcome) -> None:
    assert classify_status(status).outcome is outcome


def test_sealed_values_open_only_for_their_record() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal(b"13800001111", "n-1")
    assert b"13800001111" not in sealed
    assert sealer.open(sealed, "n-1") == b"13800001111"
    with pytest.raises(Exception, match="cannot be opened"):
        sealer.open(sealed, "n-2")
    with pytest.raises(Exception, match="cannot be opened"):
        Sealer(b"x" * 32).open(sealed, "n-1")
    assert sealer.recipient_hash("phone", "1") != Sealer(b"x" * 32).recipient_hash("phone", "1")


def test_record_sealed_under_another_key_fails_permanently_without_sending(db: Database) -> None:
    sender = FakeSender(ChannelKind.SMS)
    service = _service(db, sender, Clock())
    sent = service.send(ANONYMOUS, _reminder())
    service.sealer = Sealer(b"o" * 32)  # e.g. restarted without the configured data key
    assert _run(service) == [Outcome.PERMANENT]
    assert sender.sent == []
    row = _row(db, sent.notification_id)
    assert row.state is DeliveryState.DEAD_LETTERED
    assert row.last_error_class == "sealed_data_unreadable"
