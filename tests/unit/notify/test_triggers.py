"""Which events give which notifications (the mapping alone, no delivery)."""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.events import new_envelope
from signet.events.v1 import events_pb2 as ev
from signet.notify import triggers
from signet.notify.domain import Category, ChannelKind
from signet.signer.v1 import signer_pb2


def _intents(payload: object) -> list[tuple[str, ChannelKind, Category, str]]:
    envelope = new_envelope(payload, source="test", subject="s", tenant="t1")  # type: ignore[arg-type]
    return [
        (i.template_id, i.channel, i.category, i.account_id)
        for i in triggers.person_intents(envelope)
    ]


def test_revocation_is_a_security_notice_by_email_and_sms() -> None:
    assert _intents(ev.CertificateRevoked(serial="1", account_id="a1")) == [
        ("certificate-revoked", ChannelKind.EMAIL, Category.SECURITY_NOTICE, "a1"),
        ("certificate-revoked", ChannelKind.SMS, Category.SECURITY_NOTICE, "a1"),
    ]


def test_expiry_is_a_reminder_whose_wording_follows_auto_renewal() -> None:
    manual = _intents(ev.CertificateExpiring(serial="1", account_id="a1"))
    auto = _intents(ev.CertificateExpiring(serial="1", account_id="a1", auto_renewal=True))
    assert {t for t, *_ in manual} == {"certificate-expiring"}
    assert {t for t, *_ in auto} == {"certificate-expiring-auto-renewal"}
    assert {c for _, _, c, _ in manual + auto} == {Category.REMINDER}


def test_system_certificates_and_system_signatures_notify_nobody() -> None:
    assert _intents(ev.CertificateIssued(serial="1", system_owner="ca-gateway")) == []
    assert _intents(ev.SignatureCreated(owner=signer_pb2.KeyOwner(system="evidence"))) == []


def test_a_failure_notifies_only_when_it_locked_the_check() -> None:
    assert _intents(ev.WillingnessFailed(account_id="a1")) == []
    assert [t for t, *_ in _intents(ev.WillingnessFailed(account_id="a1", locked=True))] == [
        "willingness-locked",
        "willingness-locked",
    ]


def test_operator_authorisation_goes_to_the_operator() -> None:
    payload = ev.OperatorAuthorizationGranted(enterprise_account_id="e1", operator_account_id="o1")
    assert {a for *_, a in _intents(payload)} == {"o1"}


def test_events_people_do_not_need_give_nothing() -> None:
    assert _intents(ev.KeyCreated(key_id="k")) == []
    assert _intents(ev.CrlPublished(ca_id="ca")) == []


def test_roster_follows_registration_and_cancellation() -> None:
    registered = new_envelope(
        ev.AccountRegistered(account_id="a1"), source="identity", subject="a1", tenant="t1"
    )
    cancelled = new_envelope(
        ev.AccountCancelled(account_id="a1"), source="identity", subject="a1", tenant="t1"
    )
    assert triggers.roster_change(registered) == triggers.RosterChange("a1", "t1", True)
    assert triggers.roster_change(cancelled) == triggers.RosterChange("a1", "t1", False)


def test_webhook_body_carries_the_envelope_and_payload() -> None:
    envelope = new_envelope(
        ev.CertificateIssued(serial="0A", account_id="a1", not_after=Timestamp(seconds=0)),
        source="ca-gateway",
        subject="0A",
        tenant="t1",
    )
    body = triggers.webhook_body(envelope)
    document = json.loads(body)
    assert document["id"] == envelope.id and document["tenant"] == "t1"
    assert document["data"] == {
        "serial": "0A",
        "accountId": "a1",
        "notAfter": "1970-01-01T00:00:00Z",
    }
    assert body == triggers.webhook_body(envelope)  # stable bytes, so the signature is too


def test_every_event_type_is_subscribable_but_not_the_envelope() -> None:
    assert "signet.events.v1.SignatureCreated" in triggers.EVENT_TYPES
    assert "signet.events.v1.EventEnvelope" not in triggers.EVENT_TYPES
    assert "signet.events.v1.NotificationSent" not in triggers.EVENT_TYPES


def test_single_signatures_notify_the_signer_but_batch_items_do_not() -> None:
    owner = signer_pb2.KeyOwner(
        subscriber=signer_pb2.SubscriberOwner(tenant_id="t1", account_id="a1")
    )
    single = _intents(ev.SignatureCreated(signature_id="s1", owner=owner))
    assert single == [("contract-completed", ChannelKind.EMAIL, Category.CONTRACT_COMPLETED, "a1")]
    assert _intents(ev.SignatureCreated(signature_id="s2", owner=owner, batch_id="b1")) == []
