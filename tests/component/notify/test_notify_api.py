"""Notify over gRPC against a real SMTP server, real HTTP receivers and the peer doubles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, text

from signet.common.events import NOTIFY_TOPIC, decode_envelope, unpack_payload
from signet.common.outbox import OutboxMessage
from signet.events.v1 import events_pb2
from signet.notify import webhooks
from signet.notify.domain import ChannelKind
from signet.notify.v1 import notify_pb2 as pb
from tests.fixtures.notify import NotifyHarness, notify_harness

CODE = "493817"


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyHarness]:
    with notify_harness(tmp_path) as harness:
        yield harness


def _code_request(**overrides: object) -> pb.SendNotificationRequest:
    request = pb.SendNotificationRequest(
        tenant_id="t1",
        channel=pb.CHANNEL_SMS,
        recipient=pb.Recipient(phone_number="+86 138 0013 5678"),
        template_id="willingness-code",
        params={"code": CODE, "minutes": "5"},
        sensitive_params=["code"],
        locale="zh-CN",
        idempotency_key="w-1",
    )
    for name, value in overrides.items():
        if isinstance(value, pb.Recipient):
            request.recipient.CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def _outbox(notify: NotifyHarness, topic: str | None = None) -> list[events_pb2.EventEnvelope]:
    with notify.db.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [decode_envelope(r.envelope) for r in rows if topic is None or r.topic == topic]


def _register_hook(notify: NotifyHarness, path: str = "/hook") -> tuple[str, str]:
    response = notify.stub().RegisterWebhookEndpoint(
        pb.RegisterWebhookEndpointRequest(tenant_id="t1", url=notify.hooks.url + path)
    )
    return response.endpoint.endpoint_id, response.secret


def _webhook(notify: NotifyHarness, endpoint_id: str, key: str) -> str:
    response = notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_WEBHOOK,
            recipient=pb.Recipient(webhook_endpoint_id=endpoint_id),
            template_id="contract-ready",
            params={"contract": "c-1"},
            idempotency_key=key,
        )
    )
    return response.notification_id


# ---- direct sends -----------------------------------------------------------------------


def test_one_time_code_is_sent_by_sms_and_never_stored_in_clear(notify: NotifyHarness) -> None:
    response = notify.stub().SendNotification(_code_request())
    assert response.state == pb.DELIVERY_STATE_PENDING and not response.duplicate
    notify.drain()

    [sms] = notify.sms.accepted("/sms")
    sent = json.loads(sms.body)
    assert sent["to"] == "+8613800135678"
    assert CODE in sent["text"] and sent["text"].startswith("【Signet】")
    assert sent["reference"] == response.notification_id
    status = notify.stub().GetDeliveryStatus(
        pb.GetDeliveryStatusRequest(notification_id=response.notification_id)
    )
    assert status.delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert status.delivery.masked_recipient == "138****5678"
    # Neither the code nor the phone number is anywhere in the database.
    dump = "\n".join(notify.db.engine.raw_connection().driver_connection.iterdump())  # type: ignore[union-attr]
    assert CODE not in dump
    assert "13800135678" not in dump


def test_email_to_an_account_uses_identity_contact_and_locale(notify: NotifyHarness) -> None:
    notify.identity.add("acc-1", email="zhang.san@example.com", locale="en")
    response = notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(account_id="acc-1"),
            template_id="signing-invitation",
            params={"sender_name": "ACME", "document_title": "Lease", "due_date": "2026-12-01"},
        )
    )
    notify.drain()
    [mail] = notify.smtp.to("zhang.san@example.com")
    assert mail["Subject"] == "Please sign: Lease"
    assert "ACME invites you to sign" in mail.get_content()
    assert mail["X-Signet-Notification-Id"] == response.notification_id
    status = notify.stub().GetDeliveryStatus(
        pb.GetDeliveryStatusRequest(notification_id=response.notification_id)
    )
    assert status.delivery.masked_recipient == "z********@example.com"
    [sent] = [
        unpack_payload(e, events_pb2.NotificationSent)
        for e in _outbox(notify, NOTIFY_TOPIC)
        if e.type.endswith("NotificationSent")
    ]
    assert sent.notification_id == response.notification_id
    assert "zhang" not in sent.masked_recipient[1:]


def test_repeated_idempotency_key_sends_nothing_twice(notify: NotifyHarness) -> None:
    first = notify.stub().SendNotification(_code_request())
    second = notify.stub().SendNotification(_code_request())
    assert second.duplicate and second.notification_id == first.notification_id
    notify.drain()
    assert len(notify.sms.received()) == 1
    third = notify.stub().SendNotification(_code_request())
    assert third.duplicate and third.state == pb.DELIVERY_STATE_DELIVERED


def test_same_key_to_another_recipient_is_another_notification(notify: NotifyHarness) -> None:
    first = notify.stub().SendNotification(_code_request())
    other = notify.stub().SendNotification(
        _code_request(recipient=pb.Recipient(phone_number="13900001111"))
    )
    assert not other.duplicate and other.notification_id != first.notification_id


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"template_id": ""}, "template_id is required"),
        ({"template_id": "no-such"}, "unknown template_id"),
        ({"channel": pb.CHANNEL_UNSPECIFIED}, "channel is required"),
        ({"recipient": pb.Recipient(email_address="a@example.com")}, "cannot go to a email"),
        ({"recipient": pb.Recipient(phone_number="call me")}, "not a phone number"),
        ({"sensitive_params": []}, "must be listed in sensitive_params"),
        ({"params": {"code": "1"}}, "needs the parameters: minutes"),
        ({"category": pb.NOTIFICATION_CATEGORY_REMINDER}, "has category ONE_TIME_CODE"),
        ({"deliver_before": Timestamp(seconds=1)}, "deliver_before is in the past"),
    ],
)
def test_bad_send_is_invalid_argument(
    notify: NotifyHarness, overrides: dict[str, object], fragment: str
) -> None:
    request = _code_request()
    for name, value in overrides.items():
        if name == "params":
            request.ClearField("params")
            request.params.update(value)  # type: ignore[call-overload]
        elif name == "sensitive_params":
            request.ClearField("sensitive_params")
        elif isinstance(value, pb.Recipient):
            request.recipient.CopyFrom(value)
        elif isinstance(value, Timestamp):
            request.deliver_before.CopyFrom(value)
        else:
            setattr(request, name, value)
    with pytest.raises(grpc.RpcError) as err:
        notify.stub().SendNotification(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (err.value.details() or "")


def test_unknown_notification_is_not_found(notify: NotifyHarness) -> None:
    with pytest.raises(grpc.RpcError) as err:
        notify.stub().GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id="n-nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_transient_smtp_refusal_is_retried_and_recorded(notify: NotifyHarness) -> None:
    notify.smtp.fail_next(1, "451 4.3.0 mailbox busy")
    response = notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(email_address="li.si@example.com"),
            template_id="verification-code",
            params={"code": CODE, "minutes": "10"},
            sensitive_params=["code"],
        )
    )
    notify.drain()
    assert len(notify.smtp.to("li.si@example.com")) == 1
    delivery = (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=response.notification_id))
        .delivery
    )
    assert delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert [(a.outcome, a.error_class, a.response_code) for a in delivery.attempts] == [
        (pb.ATTEMPT_OUTCOME_TRANSIENT_FAILURE, "smtp_451", 451),
        (pb.ATTEMPT_OUTCOME_SUCCESS, "", 250),
    ]
    assert notify.metric("signet_notify_retries_total", {"channel": "email"}) == 1
    assert notify.metric("signet_notify_sends_total", {"channel": "email"}) == 1


def test_permanent_smtp_refusal_dead_letters_at_once(notify: NotifyHarness) -> None:
    notify.smtp.fail_next(1, "550 5.1.1 no such user")
    response = notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(email_address="nobody@example.com"),
            template_id="verification-code",
            params={"code": CODE, "minutes": "10"},
            sensitive_params=["code"],
        )
    )
    notify.drain()
    delivery = (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=response.notification_id))
        .delivery
    )
    assert delivery.state == pb.DELIVERY_STATE_DEAD_LETTERED
    assert [a.error_class for a in delivery.attempts] == ["smtp_550"]


# ---- webhooks -----------------------------------------------------------------------


def test_webhook_failing_twice_then_succeeding_is_accepted_exactly_once(
    notify: NotifyHarness,
) -> None:
    endpoint_id, secret = _register_hook(notify)
    notify.hooks.respond(503, 503, then=200)
    notification_id = _webhook(notify, endpoint_id, "k-1")
    notify.drain()

    received = notify.hooks.received("/hook")
    assert [r.status for r in received] == [503, 503, 200]
    assert len(notify.hooks.accepted("/hook")) == 1
    # Every attempt carries the same delivery id and a valid signature.
    for request in received:
        assert webhooks.verify(secret, request.body, request.headers) == notification_id
    delivery = (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=notification_id))
        .delivery
    )
    assert delivery.state == pb.DELIVERY_STATE_DELIVERED
    assert [a.response_code for a in delivery.attempts] == [503, 503, 200]


def test_webhook_signature_fails_when_the_body_changes(notify: NotifyHarness) -> None:
    endpoint_id, secret = _register_hook(notify)
    _webhook(notify, endpoint_id, "k-2")
    notify.drain()
    [request] = notify.hooks.accepted("/hook")
    tampered = request.body.replace(b"c-1", b"c-2")
    assert tampered != request.body
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(secret, tampered, request.headers)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify("whsec_wrong", request.body, request.headers)


def test_always_failing_webhook_is_dead_lettered_then_replayed(notify: NotifyHarness) -> None:
    endpoint_id, _ = _register_hook(notify)
    notify.hooks.respond(then=500)
    notification_id = _webhook(notify, endpoint_id, "k-3")
    notify.drain()

    delivery = (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=notification_id))
        .delivery
    )
    assert delivery.state == pb.DELIVERY_STATE_DEAD_LETTERED
    assert len(delivery.attempts) == notify.settings.max_attempts
    [dead] = _outbox(notify, notify.service.dead_letter_topic)
    assert unpack_payload(dead, events_pb2.NotificationDeadLettered).notification_id == (
        notification_id
    )
    assert notify.metric("signet_notify_dead_letters_total", {"channel": "webhook"}) == 1

    notify.hooks.respond(then=200)
    replayed = notify.stub().ReplayDeadLetters(pb.ReplayDeadLettersRequest(tenant_id="t1"))
    assert list(replayed.notification_ids) == [notification_id]
    notify.drain()
    assert len(notify.hooks.accepted("/hook")) == 1
    assert (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=notification_id))
        .delivery.state
        == pb.DELIVERY_STATE_DELIVERED
    )
    # A second replay finds nothing dead any more.
    again = notify.stub().ReplayDeadLetters(pb.ReplayDeadLettersRequest(tenant_id="t1"))
    assert again.replayed_count == 0


def test_rotated_secret_signs_with_old_and_new_during_grace(notify: NotifyHarness) -> None:
    endpoint_id, old = _register_hook(notify)
    rotated = notify.stub().RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(endpoint_id=endpoint_id, grace_period=Duration(seconds=600))
    )
    assert rotated.secret != old
    assert rotated.endpoint.HasField("previous_secret_valid_until")
    _webhook(notify, endpoint_id, "k-4")
    notify.drain()
    [request] = notify.hooks.accepted("/hook")
    webhooks.verify(old, request.body, request.headers)
    webhooks.verify(rotated.secret, request.body, request.headers)
    # No grace: only the newest secret signs.
    newest = notify.stub().RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(endpoint_id=endpoint_id, grace_period=Duration(seconds=0))
    )
    _webhook(notify, endpoint_id, "k-5")
    notify.drain()
    last = notify.hooks.accepted("/hook")[-1]
    webhooks.verify(newest.secret, last.body, last.headers)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(rotated.secret, last.body, last.headers)


def test_webhook_registration_checks_url_and_event_types(notify: NotifyHarness) -> None:
    stub = notify.stub()
    for url, fragment in [
        ("ftp://example.com/x", "https URL"),
        ("https://user:pw@example.com/x", "credentials"),
        ("", "url is required"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.RegisterWebhookEndpoint(pb.RegisterWebhookEndpointRequest(tenant_id="t1", url=url))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        stub.RegisterWebhookEndpoint(
            pb.RegisterWebhookEndpointRequest(
                tenant_id="t1", url="https://example.com/h", event_types=["signet.events.v1.Nope"]
            )
        )
    assert "unknown event types" in (err.value.details() or "")


def test_webhook_endpoints_are_listed_a_page_at_a_time(notify: NotifyHarness) -> None:
    ids = sorted(_register_hook(notify, f"/h{i}")[0] for i in range(3))
    first = notify.stub().ListWebhookEndpoints(
        pb.ListWebhookEndpointsRequest(tenant_id="t1", page_size=2)
    )
    second = notify.stub().ListWebhookEndpoints(
        pb.ListWebhookEndpointsRequest(
            tenant_id="t1", page_size=2, page_token=first.next_page_token
        )
    )
    assert [e.endpoint_id for e in first.endpoints] + [
        e.endpoint_id for e in second.endpoints
    ] == ids
    assert second.next_page_token == ""
    # Secrets never come back in listings; the registration event has no query string.
    assert "secret" not in str(first)


# ---- preferences, rate limits ----------------------------------------------------------


def test_reminders_can_be_turned_off_but_security_notices_cannot(notify: NotifyHarness) -> None:
    notify.identity.add("acc-2", email="wang.wu@example.com", phone="13700001234")
    stub = notify.stub()
    stub.SetNotificationPreferences(
        pb.SetNotificationPreferencesRequest(
            account_id="acc-2",
            categories=[
                pb.CategoryPreference(
                    category=pb.NOTIFICATION_CATEGORY_REMINDER,
                    disabled_channels=[pb.CHANNEL_EMAIL],
                )
            ],
            locale="en-GB",
        )
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.SetNotificationPreferences(
            pb.SetNotificationPreferencesRequest(
                account_id="acc-2",
                categories=[
                    pb.CategoryPreference(
                        category=pb.NOTIFICATION_CATEGORY_SECURITY_NOTICE,
                        disabled_channels=[pb.CHANNEL_EMAIL],
                    )
                ],
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    prefs = stub.GetNotificationPreferences(
        pb.GetNotificationPreferencesRequest(account_id="acc-2")
    ).preferences
    assert prefs.locale == "en"
    assert [c.category for c in prefs.categories] == [pb.NOTIFICATION_CATEGORY_REMINDER]

    reminder = stub.SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(account_id="acc-2"),
            template_id="signing-reminder",
            params={"document_title": "Lease", "due_date": "2026-12-01"},
        )
    )
    assert reminder.state == pb.DELIVERY_STATE_SUPPRESSED
    notice = stub.SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(account_id="acc-2"),
            template_id="account-cancelled",
        )
    )
    notify.drain()
    [mail] = notify.smtp.to("wang.wu@example.com")
    assert mail["Subject"] == "Your account was cancelled"  # English, from the preference
    assert (
        stub.GetDeliveryStatus(
            pb.GetDeliveryStatusRequest(notification_id=notice.notification_id)
        ).delivery.state
        == pb.DELIVERY_STATE_DELIVERED
    )


def test_per_recipient_rate_limit_postpones_instead_of_sending(tmp_path: Path) -> None:
    with notify_harness(tmp_path, recipient_rate_limit=2) as notify:
        for i in range(3):
            notify.stub().SendNotification(_code_request(idempotency_key=f"r-{i}"))
        notify.drain(until=lambda: len(notify.sms.received()) >= 2, timeout=5)
        notify.app.dispatcher.dispatch_once()
        assert len(notify.sms.received()) == 2
        assert notify.metric("signet_notify_rate_limited_total", {"channel": "sms"}) >= 1
        # Another recipient is not held back.
        notify.stub().SendNotification(
            _code_request(idempotency_key="r-x", recipient=pb.Recipient(phone_number="13900001111"))
        )
        notify.app.dispatcher.dispatch_once()
        assert len(notify.sms.received()) == 3


def test_unknown_account_is_dead_lettered_without_a_send(notify: NotifyHarness) -> None:
    response = notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(account_id="acc-missing"),
            template_id="account-cancelled",
        )
    )
    notify.drain()
    delivery = (
        notify.stub()
        .GetDeliveryStatus(pb.GetDeliveryStatusRequest(notification_id=response.notification_id))
        .delivery
    )
    assert delivery.state == pb.DELIVERY_STATE_DEAD_LETTERED
    assert delivery.attempts[0].error_class == "recipient_unknown"
    assert notify.smtp.messages == []


def test_identity_outage_is_retried(notify: NotifyHarness) -> None:
    notify.identity.add("acc-3", email="zhao@example.com")
    notify.identity.available = False
    notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(account_id="acc-3"),
            template_id="account-cancelled",
        )
    )
    notify.app.dispatcher.dispatch_once()
    assert notify.smtp.messages == []
    notify.identity.available = True
    notify.drain()
    assert len(notify.smtp.to("zhao@example.com")) == 1


# ---- incidents ------------------------------------------------------------------------


def _incident(**overrides: object) -> pb.DeclareIncidentRequest:
    request = pb.DeclareIncidentRequest(
        title="Contact data exposed",
        severity=pb.INCIDENT_SEVERITY_HIGH,
        notice=pb.IncidentNotice(
            what_happened_and_impact="A log file exposed masked phone numbers.",
            measures_taken="The file was deleted and access revoked.",
            advice="Be wary of calls asking for codes.",
            remedies="Free identity monitoring for a year.",
        ),
        accounts=pb.AffectedAccounts(account_ids=["acc-a", "acc-b"]),
        channels=[pb.CHANNEL_EMAIL],
        declared_by="ops-zhang",
        idempotency_key="inc-1",
    )
    request.happened_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    for name, value in overrides.items():
        setattr(request, name, value)
    return request


def test_incident_notifies_every_account_with_the_four_items_and_records_evidence(
    notify: NotifyHarness,
) -> None:
    notify.identity.add("acc-a", email="a@example.com", locale="zh-CN")
    notify.identity.add("acc-b", email="b@example.com", locale="en")
    response = notify.stub().DeclareIncident(_incident())
    assert response.notifications_queued == 2
    notify.drain()

    zh = notify.smtp.to("a@example.com")[0].get_content()
    en = notify.smtp.to("b@example.com")[0].get_content()
    for item in (
        "A log file exposed masked phone numbers.",
        "The file was deleted and access revoked.",
        "Be wary of calls asking for codes.",
        "Free identity monitoring for a year.",
    ):
        assert item in zh and item in en
    assert "补救措施" in zh and "Remedies" in en
    [entry] = notify.evidence.entries.values()
    declared = unpack_payload(entry, events_pb2.IncidentDeclared)
    assert declared.incident_id == response.incident_id
    assert declared.affected_account_count == 2
    assert declared.notice.remedies == "Free identity monitoring for a year."


def test_incident_retry_after_evidence_outage_records_once_and_notifies_once(
    notify: NotifyHarness,
) -> None:
    notify.identity.add("acc-a", email="a@example.com")
    notify.identity.add("acc-b", email="b@example.com")
    notify.evidence.available = False
    with pytest.raises(grpc.RpcError) as err:
        notify.stub().DeclareIncident(_incident())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retry with the same idempotency_key" in (err.value.details() or "")
    notify.evidence.available = True
    again = notify.stub().DeclareIncident(_incident())
    assert again.notifications_queued == 2
    notify.drain()
    assert len(notify.evidence.entries) == 1
    assert len(notify.smtp.messages) == 2


def test_incident_without_all_four_items_is_invalid(notify: NotifyHarness) -> None:
    request = _incident()
    request.notice.remedies = ""
    with pytest.raises(grpc.RpcError) as err:
        notify.stub().DeclareIncident(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "notice.remedies" in (err.value.details() or "")


def test_only_operators_declare_incidents_or_replay(tmp_path: Path) -> None:
    with notify_harness(tmp_path, auth=True) as notify:
        for call, request in (
            ("DeclareIncident", _incident()),
            ("ReplayDeadLetters", pb.ReplayDeadLettersRequest()),
        ):
            with pytest.raises(grpc.RpcError) as err:
                getattr(notify.stub("identity"), call)(request)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        notify.identity.add("acc-a", email="a@example.com")
        response = notify.stub("ops").DeclareIncident(_incident())
        assert response.notifications_queued == 2


def test_incident_for_a_tenant_reaches_the_accounts_notify_knows(notify: NotifyHarness) -> None:
    from signet.common.events import new_envelope

    for account, tenant in (("acc-1", "t1"), ("acc-2", "t1"), ("acc-3", "t2")):
        notify.service.handle_event(
            new_envelope(
                events_pb2.AccountRegistered(account_id=account),
                source="identity",
                subject=account,
                tenant=tenant,
            )
        )
    response = notify.stub().DeclareIncident(_incident(idempotency_key="inc-t1", tenant_id="t1"))
    assert response.notifications_queued == 2


def test_database_keeps_no_address_in_clear(notify: NotifyHarness) -> None:
    notify.stub().SendNotification(
        pb.SendNotificationRequest(
            tenant_id="t1",
            channel=pb.CHANNEL_EMAIL,
            recipient=pb.Recipient(email_address="secret.person@example.com"),
            template_id="account-cancelled",
        )
    )
    notify.drain()
    with notify.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM deliveries")).all()
    assert rows and "secret.person" not in repr(rows)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_tls_verifies_the_smtp_server(tmp_path: Path, security: str) -> None:
    with notify_harness(tmp_path, smtp_security=security) as notify:
        notify.stub().SendNotification(
            pb.SendNotificationRequest(
                tenant_id="t1",
                channel=pb.CHANNEL_EMAIL,
                recipient=pb.Recipient(email_address="tls@example.com"),
                template_id="account-cancelled",
                locale="zh-CN",
            )
        )
        notify.drain()
        [mail] = notify.smtp.to("tls@example.com")
        assert mail["Subject"] == "账户已注销"


def test_untrusted_smtp_certificate_is_a_transient_failure(tmp_path: Path) -> None:
    with notify_harness(tmp_path, smtp_security="starttls") as notify:
        object.__setattr__(notify.app.service.senders[ChannelKind.EMAIL], "_ca_file", "")
        response = notify.stub().SendNotification(
            pb.SendNotificationRequest(
                tenant_id="t1",
                channel=pb.CHANNEL_EMAIL,
                recipient=pb.Recipient(email_address="tls@example.com"),
                template_id="account-cancelled",
            )
        )
        notify.drain()
        delivery = (
            notify.stub()
            .GetDeliveryStatus(
                pb.GetDeliveryStatusRequest(notification_id=response.notification_id)
            )
            .delivery
        )
        assert notify.smtp.messages == []
        assert {a.error_class for a in delivery.attempts} == {"tls_error"}
        assert delivery.state == pb.DELIVERY_STATE_DEAD_LETTERED


def test_event_reminders_follow_preferences_but_security_notices_always_go(
    notify: NotifyHarness,
) -> None:
    from signet.common.events import new_envelope

    notify.identity.add("acc-p", email="p@example.com", phone="13600001234", locale="en")
    notify.stub().SetNotificationPreferences(
        pb.SetNotificationPreferencesRequest(
            account_id="acc-p",
            categories=[
                pb.CategoryPreference(
                    category=pb.NOTIFICATION_CATEGORY_REMINDER,
                    disabled_channels=[pb.CHANNEL_EMAIL, pb.CHANNEL_SMS],
                )
            ],
        )
    )
    expiring = new_envelope(
        events_pb2.CertificateExpiring(serial="01", account_id="acc-p"),
        source="ca-gateway",
        subject="01",
        tenant="t1",
    )
    revoked = new_envelope(
        events_pb2.CertificateRevoked(serial="01", account_id="acc-p"),
        source="ca-gateway",
        subject="01",
        tenant="t1",
    )
    assert notify.service.handle_event(expiring) == 2
    assert notify.service.handle_event(revoked) == 2
    assert notify.service.handle_event(revoked) == 0  # redelivered: nothing new
    notify.drain()
    assert [m["Subject"] for m in notify.smtp.to("p@example.com")] == [
        "Your certificate was revoked"
    ]
    assert len(notify.sms.accepted()) == 1
    assert notify.metric("signet_notify_suppressed_total", {"channel": "email"}) == 1


def test_tenant_caller_cannot_reach_another_tenants_account(tmp_path: Path) -> None:
    from signet.common.auth import Principal, principal_scope
    from signet.common.errors import PermissionDenied
    from signet.common.events import new_envelope
    from signet.notify.domain import RecipientSpec, SendRequest

    with notify_harness(tmp_path) as notify:
        notify.service.handle_event(
            new_envelope(
                events_pb2.AccountRegistered(account_id="acc-t2"),
                source="identity",
                subject="acc-t2",
                tenant="t2",
            )
        )
        caller = Principal(subject="console", kind="tenant", tenant="t1")
        request = SendRequest(
            tenant="",
            channel=ChannelKind.EMAIL,
            recipient=RecipientSpec(account_id="acc-t2"),
            template_id="account-cancelled",
        )
        with principal_scope(caller), pytest.raises(PermissionDenied):
            notify.service.send(caller, request)
        with pytest.raises(PermissionDenied):
            notify.service.send(caller, SendRequest(**{**request.__dict__, "tenant": "t2"}))


def test_concurrent_dispatch_delivers_each_notification_exactly_once(
    notify: NotifyHarness,
) -> None:
    from sqlalchemy import func

    from signet.notify.models import Delivery, DeliveryState
    from tests.fixtures.kafka import wait_until

    endpoint_id, secret = _register_hook(notify)
    ids = {_webhook(notify, endpoint_id, f"bulk-{i}") for i in range(120)}
    notify.app.dispatcher.start()
    try:

        def delivered() -> int:
            with notify.db.session() as session:
                return int(
                    session.scalar(
                        select(func.count()).where(Delivery.state == DeliveryState.DELIVERED)
                    )
                    or 0
                )

        assert wait_until(lambda: delivered() == len(ids), timeout=60), delivered()
    finally:
        notify.app.dispatcher.stop()
    received = [webhooks.verify(secret, r.body, r.headers) for r in notify.hooks.received("/hook")]
    assert sorted(received) == sorted(ids)  # every one once, none twice
