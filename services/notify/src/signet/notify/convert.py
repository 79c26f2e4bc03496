"""Between notify's domain values and its protobuf API and event payloads.

Enum values map by name (``ChannelKind.EMAIL`` <-> ``CHANNEL_EMAIL``), so a value added
on both sides needs no code here. An unspecified or unknown enum value from a caller is
INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from datetime import datetime

from signet.common.errors import InvalidArgument
from signet.common.prototime import timestamp
from signet.events.v1 import events_pb2
from signet.notify.domain import (
    AttemptView,
    Category,
    ChannelKind,
    DeliveryView,
    EndpointView,
    IncidentNotice,
    Outcome,
    PreferencesView,
)
from signet.notify.v1 import notify_pb2

_OUTCOME: dict[str, notify_pb2.AttemptOutcome.ValueType] = {
    Outcome.SUCCESS.value: notify_pb2.ATTEMPT_OUTCOME_SUCCESS,
    Outcome.TRANSIENT.value: notify_pb2.ATTEMPT_OUTCOME_TRANSIENT_FAILURE,
    Outcome.PERMANENT.value: notify_pb2.ATTEMPT_OUTCOME_PERMANENT_FAILURE,
}


def channel_to_proto(channel: ChannelKind) -> notify_pb2.Channel.ValueType:
    """``ChannelKind.EMAIL`` -> ``CHANNEL_EMAIL``."""
    return notify_pb2.Channel.Value("CHANNEL_" + channel.name)


def channel_from_proto(value: int, field: str, *, required: bool = True) -> ChannelKind | None:
    """The channel a request names; InvalidArgument when unspecified (if required) or unknown."""
    if value == notify_pb2.CHANNEL_UNSPECIFIED:
        if required:
            raise InvalidArgument(f"{field} is required")
        return None
    try:
        name = notify_pb2.Channel.Name(notify_pb2.Channel.ValueType(value)).removeprefix("CHANNEL_")
        return ChannelKind[name]
    except (ValueError, KeyError):
        raise InvalidArgument(f"{field} has an unknown value {value}") from None


def category_to_proto(category: Category) -> notify_pb2.NotificationCategory.ValueType:
    """``Category.REMINDER`` -> ``NOTIFICATION_CATEGORY_REMINDER``."""
    return notify_pb2.NotificationCategory.Value("NOTIFICATION_CATEGORY_" + category.name)


def category_from_proto(value: int, field: str) -> Category | None:
    """The category a request names (None when unspecified); unknown is InvalidArgument."""
    if value == notify_pb2.NOTIFICATION_CATEGORY_UNSPECIFIED:
        return None
    try:
        name = notify_pb2.NotificationCategory.Name(
            notify_pb2.NotificationCategory.ValueType(value)
        ).removeprefix("NOTIFICATION_CATEGORY_")
        return Category[name]
    except (ValueError, KeyError):
        raise InvalidArgument(f"{field} has an unknown value {value}") from None


def state_to_proto(state: str) -> notify_pb2.DeliveryState.ValueType:
    """A stored delivery state (``dead_lettered``) -> ``DELIVERY_STATE_DEAD_LETTERED``."""
    return notify_pb2.DeliveryState.Value("DELIVERY_STATE_" + state.upper())


def outcome_to_proto(outcome: str) -> notify_pb2.AttemptOutcome.ValueType:
    """A stored attempt outcome -> AttemptOutcome."""
    return _OUTCOME.get(outcome, notify_pb2.ATTEMPT_OUTCOME_UNSPECIFIED)


def severity_from_proto(value: int) -> str:
    """``INCIDENT_SEVERITY_HIGH`` -> ``high``; unspecified or unknown is InvalidArgument."""
    if value == notify_pb2.INCIDENT_SEVERITY_UNSPECIFIED:
        raise InvalidArgument("severity is required")
    try:
        return (
            notify_pb2.IncidentSeverity.Name(notify_pb2.IncidentSeverity.ValueType(value))
            .removeprefix("INCIDENT_SEVERITY_")
            .lower()
        )
    except ValueError:
        raise InvalidArgument(f"severity has an unknown value {value}") from None


def severity_to_proto(severity: str) -> notify_pb2.IncidentSeverity.ValueType:
    """``high`` -> ``INCIDENT_SEVERITY_HIGH``."""
    return notify_pb2.IncidentSeverity.Value("INCIDENT_SEVERITY_" + severity.upper())


def attempt_message(view: AttemptView) -> notify_pb2.DeliveryAttempt:
    """One attempt for GetDeliveryStatus."""
    return notify_pb2.DeliveryAttempt(
        attempt=view.attempt,
        started_at=timestamp(view.started_at),
        finished_at=timestamp(view.finished_at),
        outcome=outcome_to_proto(view.outcome),
        error_class=view.error_class,
        response_code=view.response_code,
    )


def delivery_message(view: DeliveryView) -> notify_pb2.Delivery:
    """A delivery with its attempts."""
    return notify_pb2.Delivery(
        notification_id=view.notification_id,
        tenant_id=view.tenant,
        channel=channel_to_proto(view.channel),
        masked_recipient=view.masked_recipient,
        template_id=view.template_id,
        category=category_to_proto(view.category),
        state=state_to_proto(view.state),
        attempts=[attempt_message(a) for a in view.attempts],
        created_at=timestamp(view.created_at),
        delivered_at=timestamp(view.delivered_at),
        next_attempt_at=timestamp(view.next_attempt_at),
        source_event_id=view.source_event_id,
    )


def endpoint_message(view: EndpointView) -> notify_pb2.WebhookEndpoint:
    """A webhook endpoint without its secret."""
    return notify_pb2.WebhookEndpoint(
        endpoint_id=view.endpoint_id,
        tenant_id=view.tenant,
        url=view.url,
        event_types=list(view.event_types),
        description=view.description,
        active=view.active,
        created_at=timestamp(view.created_at),
        secret_rotated_at=timestamp(view.secret_rotated_at),
        previous_secret_valid_until=timestamp(view.previous_secret_valid_until),
    )


def preferences_message(view: PreferencesView) -> notify_pb2.NotificationPreferences:
    """A recipient's preferences."""
    return notify_pb2.NotificationPreferences(
        account_id=view.account_id,
        locale=view.locale,
        categories=[
            notify_pb2.CategoryPreference(
                category=category_to_proto(category),
                disabled_channels=[channel_to_proto(c) for c in channels],
            )
            for category, channels in sorted(view.disabled.items())
        ],
        updated_at=timestamp(view.updated_at),
    )


def notice_message(notice: IncidentNotice) -> notify_pb2.IncidentNotice:
    """The four incident notice items."""
    return notify_pb2.IncidentNotice(
        what_happened_and_impact=notice.what_happened_and_impact,
        measures_taken=notice.measures_taken,
        advice=notice.advice,
        remedies=notice.remedies,
    )


# ---- event payloads ----------------------------------------------------------------------


def notification_sent(
    *,
    notification_id: str,
    channel: ChannelKind,
    category: Category,
    template_id: str,
    masked_recipient: str,
    account_id: str,
    attempts: int,
    source_event_id: str,
) -> events_pb2.NotificationSent:
    """NotificationSent."""
    return events_pb2.NotificationSent(
        notification_id=notification_id,
        channel=channel_to_proto(channel),
        category=category_to_proto(category),
        template_id=template_id,
        masked_recipient=masked_recipient,
        account_id=account_id,
        attempts=attempts,
        source_event_id=source_event_id,
    )


def notification_failed(
    *,
    notification_id: str,
    channel: ChannelKind,
    masked_recipient: str,
    attempt: int,
    outcome: Outcome,
    error_class: str,
    next_attempt_at: datetime | None,
) -> events_pb2.NotificationFailed:
    """NotificationFailed."""
    return events_pb2.NotificationFailed(
        notification_id=notification_id,
        channel=channel_to_proto(channel),
        masked_recipient=masked_recipient,
        attempt=attempt,
        outcome=outcome_to_proto(outcome.value),
        error_class=error_class,
        next_attempt_at=timestamp(next_attempt_at),
    )


def notification_dead_lettered(
    *,
    notification_id: str,
    channel: ChannelKind,
    masked_recipient: str,
    attempts: int,
    last_error_class: str,
) -> events_pb2.NotificationDeadLettered:
    """NotificationDeadLettered."""
    return events_pb2.NotificationDeadLettered(
        notification_id=notification_id,
        channel=channel_to_proto(channel),
        masked_recipient=masked_recipient,
        attempts=attempts,
        last_error_class=last_error_class,
    )


def notification_replayed(ids: list[str], requested_by: str) -> events_pb2.NotificationReplayed:
    """NotificationReplayed."""
    return events_pb2.NotificationReplayed(notification_ids=ids, requested_by=requested_by)


def webhook_endpoint_registered(
    endpoint_id: str, url: str, event_types: list[str]
) -> events_pb2.WebhookEndpointRegistered:
    """WebhookEndpointRegistered."""
    return events_pb2.WebhookEndpointRegistered(
        endpoint_id=endpoint_id, url=url, event_types=event_types
    )


def webhook_secret_rotated(
    endpoint_id: str, previous_valid_until: datetime
) -> events_pb2.WebhookSecretRotated:
    """WebhookSecretRotated."""
    return events_pb2.WebhookSecretRotated(
        endpoint_id=endpoint_id, previous_secret_valid_until=timestamp(previous_valid_until)
    )


def incident_declared(
    *,
    incident_id: str,
    title: str,
    severity: str,
    notice: IncidentNotice,
    affected_account_count: int,
    declared_by: str,
    happened_at: datetime | None,
    discovered_at: datetime | None,
    regulator_notified_at: datetime | None,
) -> events_pb2.IncidentDeclared:
    """IncidentDeclared, the four notice items verbatim."""
    return events_pb2.IncidentDeclared(
        incident_id=incident_id,
        title=title,
        severity=severity_to_proto(severity),
        notice=notice_message(notice),
        affected_account_count=affected_account_count,
        declared_by=declared_by,
        happened_at=timestamp(happened_at),
        discovered_at=timestamp(discovered_at),
        regulator_notified_at=timestamp(regulator_notified_at),
    )
