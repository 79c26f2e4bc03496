"""Which events people must hear about, and in which words: events to notification intents.

Notify consumes identity's, the CA's and the signer's topics. Each mapped event type gives
the intents for the account it concerns (template, category, channels, parameters taken
from the payload: identifiers and dates only, never personal data). Every event of a
tenant is also forwarded to that tenant's webhook endpoints, which the service fans out.
Events of no concern to a person give no intents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from signet.ca_gateway.v1 import ca_gateway_pb2
from signet.common.events import (
    CERTIFICATE_TOPIC,
    IDENTITY_TOPIC,
    SIGNATURE_TOPIC,
    EventEnvelope,
    unpack_payload,
)
from signet.events.v1 import events_pb2 as ev
from signet.notify.domain import ChannelKind, Intent
from signet.notify.templates import BUILTIN

TOPICS: tuple[str, ...] = (IDENTITY_TOPIC, CERTIFICATE_TOPIC, SIGNATURE_TOPIC)
"""The topics notify consumes (not its own, so nothing it publishes feeds back)."""

EMAIL = (ChannelKind.EMAIL,)
EMAIL_AND_SMS = (ChannelKind.EMAIL, ChannelKind.SMS)


@dataclass(frozen=True)
class RosterChange:
    """An account notify should (no longer) count among a tenant's accounts."""

    account_id: str
    tenant: str
    active: bool


def when(ts: Timestamp) -> str:
    """A timestamp as people read it, in UTC; "-" when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _enum_code(enum_type: object, value: int, prefix: str) -> str:
    """``REVOCATION_REASON_KEY_COMPROMISE`` -> ``key_compromise`` (templates put it in words)."""
    try:
        name: str = enum_type.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return "unspecified"
    return name.removeprefix(prefix).lower()


def _for_account(
    account_id: str, template_id: str, channels: Sequence[ChannelKind], **params: str
) -> list[Intent]:
    if not account_id:
        return []
    category = BUILTIN[template_id].category
    return [
        Intent(
            channel=channel,
            category=category,
            template_id=template_id,
            account_id=account_id,
            params=params,
        )
        for channel in channels
    ]


def _certificate_issued(p: ev.CertificateIssued) -> list[Intent]:
    return _for_account(
        p.account_id, "certificate-issued", EMAIL, serial=p.serial, not_after=when(p.not_after)
    )


def _certificate_renewed(p: ev.CertificateRenewed) -> list[Intent]:
    return _for_account(
        p.account_id,
        "certificate-renewed",
        EMAIL,
        serial=p.serial,
        previous_serial=p.previous_serial,
        not_after=when(p.not_after),
    )


def _certificate_revoked(p: ev.CertificateRevoked) -> list[Intent]:
    reason = _enum_code(ca_gateway_pb2.RevocationReason, p.reason, "REVOCATION_REASON_")
    return _for_account(
        p.account_id,
        "certificate-revoked",
        EMAIL_AND_SMS,
        serial=p.serial,
        revoked_at=when(p.revoked_at),
        reason=reason,
    )


def _certificate_expiring(p: ev.CertificateExpiring) -> list[Intent]:
    template = "certificate-expiring-auto-renewal" if p.auto_renewal else "certificate-expiring"
    return _for_account(
        p.account_id, template, EMAIL_AND_SMS, serial=p.serial, not_after=when(p.not_after)
    )


def _signature_created(p: ev.SignatureCreated, envelope: EventEnvelope) -> list[Intent]:
    # A SignBatch call makes one event per digest (up to thousands): the tenant's webhook
    # hears of each, the person is not mailed once per item.
    if p.owner.WhichOneof("owner") != "subscriber" or p.batch_id:
        return []
    return _for_account(
        p.owner.subscriber.account_id,
        "contract-completed",
        EMAIL,
        certificate_serial=p.certificate_serial or "-",
        signed_at=when(envelope.time),
        signature_id=p.signature_id,
    )


def _real_name_verified(p: ev.RealNameVerified) -> list[Intent]:
    return _for_account(p.account_id, "real-name-verified", EMAIL, verified_at=when(p.verified_at))


def _real_name_failed(p: ev.RealNameFailed) -> list[Intent]:
    if not p.locked:
        return []
    return _for_account(p.account_id, "real-name-locked", EMAIL_AND_SMS)


def _willingness_failed(p: ev.WillingnessFailed) -> list[Intent]:
    if not p.locked:
        return []
    return _for_account(p.account_id, "willingness-locked", EMAIL_AND_SMS)


def _contact_changed(account_id: str, fields: Sequence[str]) -> list[Intent]:
    if not fields:
        return []
    return _for_account(account_id, "contact-changed", EMAIL_AND_SMS, fields=",".join(fields))


def _auto_sign_authorized(p: ev.AutoSignAuthorized) -> list[Intent]:
    return _for_account(
        p.account_id,
        "auto-sign-authorized",
        EMAIL_AND_SMS,
        scope=p.business_scope or "-",
        valid_until=when(p.valid_until),
    )


def _auto_sign_revoked(p: ev.AutoSignRevoked) -> list[Intent]:
    return _for_account(
        p.account_id, "auto-sign-revoked", EMAIL, authorization_id=p.authorization_id
    )


def _operator_authorized(p: ev.OperatorAuthorizationGranted) -> list[Intent]:
    return _for_account(
        p.operator_account_id,
        "operator-authorized",
        EMAIL,
        enterprise_account_id=p.enterprise_account_id,
        valid_until=when(p.valid_until),
    )


_Mapper = Callable[[Message, EventEnvelope], list[Intent]]

MAPPERS: dict[type[Message], _Mapper] = {
    ev.CertificateIssued: lambda p, e: _certificate_issued(p),  # type: ignore[arg-type]
    ev.CertificateRenewed: lambda p, e: _certificate_renewed(p),  # type: ignore[arg-type]
    ev.CertificateRevoked: lambda p, e: _certificate_revoked(p),  # type: ignore[arg-type]
    ev.CertificateExpiring: lambda p, e: _certificate_expiring(p),  # type: ignore[arg-type]
    ev.SignatureCreated: lambda p, e: _signature_created(p, e),  # type: ignore[arg-type]
    ev.RealNameVerified: lambda p, e: _real_name_verified(p),  # type: ignore[arg-type]
    ev.RealNameFailed: lambda p, e: _real_name_failed(p),  # type: ignore[arg-type]
    ev.WillingnessFailed: lambda p, e: _willingness_failed(p),  # type: ignore[arg-type]
    ev.AccountUpdated: lambda p, e: _contact_changed(p.account_id, p.changed_fields),  # type: ignore[attr-defined]
    ev.PersonalDataCorrected: lambda p, e: _contact_changed(p.account_id, p.changed_fields),  # type: ignore[attr-defined]
    ev.AutoSignAuthorized: lambda p, e: _auto_sign_authorized(p),  # type: ignore[arg-type]
    ev.AutoSignRevoked: lambda p, e: _auto_sign_revoked(p),  # type: ignore[arg-type]
    ev.OperatorAuthorizationGranted: lambda p, e: _operator_authorized(p),  # type: ignore[arg-type]
    ev.AccountCancellationRequested: lambda p, e: _for_account(
        p.account_id,  # type: ignore[attr-defined]
        "account-cancellation-requested",
        EMAIL,
        due_by=when(p.due_by),  # type: ignore[attr-defined]
    ),
    ev.AccountCancelled: lambda p, e: _for_account(p.account_id, "account-cancelled", EMAIL),  # type: ignore[attr-defined]
    ev.DeletionCompleted: lambda p, e: _for_account(
        p.account_id,  # type: ignore[attr-defined]
        "deletion-completed",
        EMAIL,
        request_id=p.request_id,  # type: ignore[attr-defined]
    ),
}
"""Event payload type -> the intents it gives for people."""

_BY_NAME: dict[str, type[Message]] = {m.DESCRIPTOR.full_name: m for m in MAPPERS}

_NOT_FORWARDED = frozenset(
    m.DESCRIPTOR.full_name
    for m in (
        ev.EventEnvelope,
        ev.TraceContext,
        # evidence's and notify's own events travel on topics notify does not consume.
        ev.EvidenceAppended,
        ev.TreeHeadSigned,
        ev.TimestampIssued,
        ev.EvidencePackageExported,
        ev.NotificationSent,
        ev.NotificationFailed,
        ev.NotificationDeadLettered,
        ev.NotificationReplayed,
        ev.IncidentDeclared,
        ev.WebhookEndpointRegistered,
        ev.WebhookSecretRotated,
    )
)

EVENT_TYPES: frozenset[str] = (
    frozenset(message.full_name for message in ev.DESCRIPTOR.message_types_by_name.values())
    - _NOT_FORWARDED
)
"""Every event type a webhook endpoint may subscribe to: those of the topics notify consumes."""


def person_intents(envelope: EventEnvelope) -> list[Intent]:
    """The notifications ``envelope`` asks for, for people (no webhooks)."""
    message_type = _BY_NAME.get(envelope.type)
    if message_type is None:
        return []
    payload = unpack_payload(envelope, message_type)
    return MAPPERS[message_type](payload, envelope)


def roster_change(envelope: EventEnvelope) -> RosterChange | None:
    """Whether ``envelope`` adds an account to, or removes one from, a tenant's roster."""
    if envelope.type == ev.AccountRegistered.DESCRIPTOR.full_name:
        registered = unpack_payload(envelope, ev.AccountRegistered)
        return RosterChange(registered.account_id, envelope.tenant, True)
    if envelope.type == ev.AccountCancelled.DESCRIPTOR.full_name:
        cancelled = unpack_payload(envelope, ev.AccountCancelled)
        return RosterChange(cancelled.account_id, envelope.tenant, False)
    return None


def webhook_body(envelope: EventEnvelope) -> str:
    """The JSON a webhook receives for ``envelope``: envelope fields and the payload as data.

    Payload field names are the proto JSON names (lowerCamelCase); the body is compact and
    sorted, so what is signed is exactly what is sent.
    """
    data: dict[str, object] = {}
    message_type = _payload_type(envelope.type)
    if message_type is not None:
        data = MessageToDict(unpack_payload(envelope, message_type))
    document = {
        "id": envelope.id,
        "type": envelope.type,
        "source": envelope.source,
        "subject": envelope.subject,
        "tenant": envelope.tenant,
        "time": envelope.time.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "transactionId": envelope.transaction_id,
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _payload_type(full_name: str) -> type[Message] | None:
    short = full_name.rsplit(".", 1)[-1]
    found = getattr(ev, short, None)
    if (
        isinstance(found, type)
        and issubclass(found, Message)
        and found.DESCRIPTOR.full_name == full_name
        and full_name not in _NOT_FORWARDED
    ):
        return found
    return None
