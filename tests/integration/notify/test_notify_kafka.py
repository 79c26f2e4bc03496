"""Issue 7 acceptance: events on the real Kafka broker become the right messages on a real
SMTP server, a real SMS provider endpoint and real webhook receivers; retries, the
dead-letter topic, replay and redelivery behave as promised."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer

from signet.ca_gateway.v1 import ca_gateway_pb2
from signet.common.events import (
    EventEnvelope,
    decode_envelope,
    encode_envelope,
    envelope_headers,
    new_envelope,
    unpack_payload,
)
from signet.common.kafka import KafkaConsumerLoop, KafkaPublisher
from signet.common.outbox import OutboxRelay
from signet.common.v1 import common_pb2
from signet.events.v1 import events_pb2 as ev
from signet.notify import webhooks
from signet.notify.v1 import notify_pb2 as pb
from signet.signer.v1 import signer_pb2
from tests.fixtures.kafka import wait_until
from tests.fixtures.notify import NotifyHarness, notify_harness

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TENANT = "t-kafka"


@dataclass
class Topics:
    identity: str
    certificate: str
    signature: str


@dataclass
class Platform:
    """Notify consuming unique topics, its outbox relayed to the broker."""

    notify: NotifyHarness
    topics: Topics
    publisher: KafkaPublisher
    bootstrap: str
    group: str

    def publish(self, topic: str, envelope: EventEnvelope) -> None:
        self.publisher.publish(
            topic, envelope.subject.encode(), encode_envelope(envelope), envelope_headers(envelope)
        )
        self.publisher.flush()

    def event(self, topic: str, payload: Message, subject: str) -> EventEnvelope:
        envelope = new_envelope(payload, source="test", subject=subject, tenant=TENANT)
        self.publish(topic, envelope)
        return envelope


@pytest.fixture
def platform(
    tmp_path: Path, kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> Iterator[Platform]:
    topics = Topics(
        unique_topic("identity"), unique_topic("certificate"), unique_topic("signature")
    )
    group = f"notify-{uuid.uuid4().hex[:8]}"
    with notify_harness(
        tmp_path,
        topics=(topics.identity, topics.certificate, topics.signature),
        kafka_bootstrap=kafka_bootstrap,
        consumer_group=group,
        max_attempts=3,
    ) as notify:
        publisher = KafkaPublisher(kafka_bootstrap, client_id="notify-test")
        relay = OutboxRelay(notify.db, KafkaPublisher(kafka_bootstrap, client_id="notify-relay"))
        loops = notify.app.background
        for loop in loops:
            loop.start()
        relay.start()
        try:
            consumer = notify.app.consumer
            assert consumer is not None
            assert wait_until(lambda: consumer.assigned, timeout=90)
            yield Platform(notify, topics, publisher, kafka_bootstrap, group)
        finally:
            relay.stop()
            for loop in reversed(loops):
                loop.stop()
            publisher.close()


def _hook(notify: NotifyHarness, path: str, event_types: list[str] | None = None) -> str:
    response = notify.stub().RegisterWebhookEndpoint(
        pb.RegisterWebhookEndpointRequest(
            tenant_id=TENANT, url=notify.hooks.url + path, event_types=event_types or []
        )
    )
    return response.secret


def _ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def test_each_event_type_produces_the_right_message(platform: Platform) -> None:
    notify, topics = platform.notify, platform.topics
    secret = _hook(notify, "/all")
    not_after = 1893456000  # 2030-01-01 00:00 UTC
    cases: list[tuple[str, Message, set[str], str, str]] = [
        # (topic, payload, channels, expected English e-mail subject, text in the body)
        (
            topics.certificate,
            ev.CertificateIssued(serial="5A01", account_id="a-issued", not_after=_ts(not_after)),
            {"email"},
            "Your certificate was issued",
            "serial 5A01, valid until 2030-01-01 00:00 UTC",
        ),
        (
            topics.certificate,
            ev.CertificateRenewed(serial="5A02", previous_serial="5A01", account_id="a-renewed"),
            {"email"},
            "Your certificate was renewed",
            "serial 5A02 (was 5A01)",
        ),
        (
            topics.certificate,
            ev.CertificateRevoked(
                serial="5A03",
                account_id="a-revoked",
                reason=ca_gateway_pb2.REVOCATION_REASON_KEY_COMPROMISE,
            ),
            {"email", "sms"},
            "Your certificate was revoked",
            "reason: key compromise",
        ),
        (
            topics.certificate,
            ev.CertificateExpiring(
                serial="5A04", account_id="a-expiring", not_after=_ts(not_after)
            ),
            {"email", "sms"},
            "Your certificate expires soon",
            "Please renew it in time.",
        ),
        (
            topics.certificate,
            ev.CertificateExpiring(
                serial="5A05", account_id="a-autorenew", not_after=_ts(not_after), auto_renewal=True
            ),
            {"email", "sms"},
            "Your certificate expires soon",
            "renewed automatically",
        ),
        (
            topics.signature,
            ev.SignatureCreated(
                signature_id="sig-1",
                certificate_serial="5A01",
                owner=signer_pb2.KeyOwner(
                    subscriber=signer_pb2.SubscriberOwner(tenant_id=TENANT, account_id="a-signed")
                ),
                digest=common_pb2.Digest(
                    algorithm=common_pb2.HASH_ALGORITHM_SHA256, value=b"d" * 32
                ),
            ),
            {"email"},
            "A document was signed",
            "record sig-1",
        ),
        (
            topics.identity,
            ev.RealNameVerified(account_id="a-verified", verified_at=_ts(not_after)),
            {"email"},
            "Real-name verification succeeded",
            "at 2030-01-01 00:00 UTC",
        ),
        (
            topics.identity,
            ev.RealNameFailed(account_id="a-rn-locked", locked=True),
            {"email", "sms"},
            "Real-name verification locked",
            "is locked",
        ),
        (
            topics.identity,
            ev.WillingnessFailed(account_id="a-w-locked", locked=True),
            {"email", "sms"},
            "Signing confirmation locked",
            "is locked",
        ),
        (
            topics.identity,
            ev.AccountUpdated(account_id="a-updated", changed_fields=["phone"]),
            {"email", "sms"},
            "Your account details changed",
            "phone number",
        ),
        (
            topics.identity,
            ev.PersonalDataCorrected(account_id="a-corrected", changed_fields=["email"]),
            {"email", "sms"},
            "Your account details changed",
            "e-mail address",
        ),
        (
            topics.identity,
            ev.AutoSignAuthorized(account_id="a-autosign", business_scope="leases"),
            {"email", "sms"},
            "Automatic signing authorised",
            "for leases",
        ),
        (
            topics.identity,
            ev.AutoSignRevoked(account_id="a-autosign-off", authorization_id="au-9"),
            {"email"},
            "Automatic signing revoked",
            "au-9",
        ),
        (
            topics.identity,
            ev.OperatorAuthorizationGranted(
                enterprise_account_id="ent-1", operator_account_id="a-operator"
            ),
            {"email"},
            "You may act for an enterprise",
            "ent-1",
        ),
        (
            topics.identity,
            ev.AccountCancellationRequested(account_id="a-cancelling", due_by=_ts(not_after)),
            {"email"},
            "Account cancellation requested",
            "completes by 2030-01-01",
        ),
        (
            topics.identity,
            ev.AccountCancelled(account_id="a-cancelled"),
            {"email"},
            "Your account was cancelled",
            "at least 5 years",
        ),
        (
            topics.identity,
            ev.DeletionCompleted(account_id="a-deleted", request_id="del-7"),
            {"email"},
            "Your deletion request was carried out",
            "del-7",
        ),
    ]
    quiet = [
        (topics.identity, ev.RealNameFailed(account_id="a-quiet", locked=False)),
        (topics.signature, ev.KeyCreated(key_id="k-1")),
    ]
    accounts = set()
    for _, payload, _, _, _ in cases:
        account = getattr(payload, "account_id", "") or getattr(payload, "operator_account_id", "")
        if not account:
            account = "a-signed"
        accounts.add(account)
        notify.identity.add(
            account, email=f"{account}@example.com", phone="13800000000", locale="en"
        )
    notify.identity.add("a-quiet", email="a-quiet@example.com", phone="13800000000")
    published = [platform.event(t, p, subject="s") for t, p, *_ in cases]
    published += [platform.event(t, p, subject="s") for t, p in quiet]

    expected_sms = sum("sms" in channels for _, _, channels, _, _ in cases)
    assert wait_until(
        lambda: (
            len(notify.smtp.messages) >= len(cases)
            and len(notify.sms.accepted()) >= expected_sms
            and len(notify.hooks.accepted("/all")) >= len(published)
        ),
        timeout=120,
    ), (len(notify.smtp.messages), len(notify.sms.accepted()), len(notify.hooks.accepted("/all")))

    for _, payload, _channels, subject, fragment in cases:
        account = getattr(payload, "account_id", "") or getattr(payload, "operator_account_id", "")
        account = account or "a-signed"
        mails = notify.smtp.to(f"{account}@example.com")
        assert [m["Subject"] for m in mails] == [subject], account
        assert fragment in mails[0].get_content(), account
    assert notify.smtp.to("a-quiet@example.com") == []
    assert len(notify.sms.accepted()) == expected_sms
    # Every event of the tenant reached the webhook, signed, as its own JSON document.
    bodies = {}
    for request in notify.hooks.accepted("/all"):
        webhooks.verify(secret, request.body, request.headers)
        document = json.loads(request.body)
        bodies[document["id"]] = document
        assert request.headers[webhooks.HEADER_EVENT_TYPE] == document["type"]
    assert set(bodies) == {e.id for e in published}
    issued = bodies[published[0].id]
    assert issued["type"] == "signet.events.v1.CertificateIssued"
    assert issued["data"]["serial"] == "5A01" and issued["tenant"] == TENANT


def test_receiver_failing_twice_then_succeeding_gets_exactly_one_accepted_delivery(
    platform: Platform,
) -> None:
    notify = platform.notify
    secret = _hook(notify, "/flaky", ["signet.events.v1.CertificateIssued"])
    notify.hooks.respond(503, 502, then=200)
    envelope = platform.event(
        platform.topics.certificate, ev.CertificateIssued(serial="77", account_id=""), "cert-77"
    )
    assert wait_until(lambda: len(notify.hooks.accepted("/flaky")) == 1, timeout=90)
    # Give a wrongly scheduled extra attempt the chance to show up.
    assert not wait_until(lambda: len(notify.hooks.received("/flaky")) > 3, timeout=2)
    received = notify.hooks.received("/flaky")
    assert [r.status for r in received] == [503, 502, 200]
    ids = {webhooks.verify(secret, r.body, r.headers) for r in received}
    assert len(ids) == 1
    assert json.loads(received[-1].body)["id"] == envelope.id
    status = notify.stub().GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=ids.pop()))
    assert status.delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert status.delivery.source_event_id == envelope.id
    assert len(status.delivery.attempts) == 3


def _dead_letters(platform: Platform, timeout_ms: int = 60000) -> Iterator[EventEnvelope]:
    consumer = KafkaConsumer(
        platform.notify.service.dead_letter_topic,
        bootstrap_servers=platform.bootstrap.split(","),
        group_id=f"dlq-reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
    )
    try:
        for record in consumer:
            yield decode_envelope(record.value)
    finally:
        consumer.close()


def test_always_failing_receiver_ends_in_the_dead_letter_topic_and_replay_delivers(
    platform: Platform,
) -> None:
    notify = platform.notify
    _hook(notify, "/down", ["signet.events.v1.CertificateRevoked"])
    notify.hooks.respond(then=503)
    platform.event(
        platform.topics.certificate, ev.CertificateRevoked(serial="88", account_id=""), "cert-88"
    )
    dead = None
    for envelope in _dead_letters(platform):
        dead = unpack_payload(envelope, ev.NotificationDeadLettered)
        break
    assert dead is not None, "nothing reached the dead-letter topic"
    assert dead.attempts == notify.settings.max_attempts
    assert dead.last_error_class == "http_503"
    assert notify.hooks.accepted("/down") == []

    notify.hooks.respond(then=200)
    replayed = notify.stub().ReplayDeadLetters(
        pb.ReplayDeadLettersRequest(notification_ids=[dead.notification_id])
    )
    assert list(replayed.notification_ids) == [dead.notification_id]
    assert wait_until(lambda: len(notify.hooks.accepted("/down")) == 1, timeout=60)
    status = notify.stub().GetDeliveryStatus(
        pb.GetDeliveryStatusRequest(notification_id=dead.notification_id)
    )
    assert status.delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert len(status.delivery.attempts) == notify.settings.max_attempts + 1


def test_redelivered_kafka_event_sends_nothing_twice(platform: Platform) -> None:
    notify = platform.notify
    _hook(notify, "/once", ["signet.events.v1.CertificateIssued"])
    notify.identity.add("a-once", email="a-once@example.com", locale="en")
    envelope = new_envelope(
        ev.CertificateIssued(serial="99", account_id="a-once"),
        source="ca-gateway",
        subject="cert-99",
        tenant=TENANT,
    )
    platform.publish(platform.topics.certificate, envelope)
    platform.publish(platform.topics.certificate, envelope)  # the broker redelivers it
    assert wait_until(
        lambda: (
            len(notify.smtp.to("a-once@example.com")) >= 1
            and len(notify.hooks.accepted("/once")) >= 1
        ),
        timeout=90,
    )
    # A second consumer group reading everything again (offsets lost) adds nothing either.
    rereader = KafkaConsumerLoop(
        platform.bootstrap,
        platform.group + "-again",
        [platform.topics.certificate],
        lambda env, _msg: notify.service.handle_event(env),
    )
    rereader.start()
    try:
        assert wait_until(lambda: rereader.assigned, timeout=60)
        assert not wait_until(
            lambda: (
                len(notify.smtp.to("a-once@example.com")) > 1
                or len(notify.hooks.accepted("/once")) > 1
            ),
            timeout=5,
        )
    finally:
        rereader.stop()
    assert len(notify.smtp.to("a-once@example.com")) == 1
    assert len(notify.hooks.received("/once")) == 1
