"""NotifyService over gRPC: requests to domain calls, results to responses.

Nothing here decides who may do what or what is sent; :class:`signet.notify.service.NotifyService`
does. Bad input raises :mod:`signet.common.errors`, which the error interceptor turns into
statuses.
"""

from __future__ import annotations

from datetime import timedelta

import grpc

from signet.common import prototime
from signet.common.auth import current_principal
from signet.common.errors import InvalidArgument
from signet.notify import convert
from signet.notify.domain import (
    Category,
    ChannelKind,
    IncidentNotice,
    IncidentRequest,
    RecipientSpec,
    SendRequest,
)
from signet.notify.service import NotifyService
from signet.notify.v1 import notify_pb2, notify_pb2_grpc


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    """The gRPC face of :class:`NotifyService`."""

    def __init__(self, service: NotifyService) -> None:
        self._service = service

    def SendNotification(
        self, request: notify_pb2.SendNotificationRequest, context: grpc.ServicerContext
    ) -> notify_pb2.SendNotificationResponse:
        """Queue one notification (idempotent on key, channel and recipient)."""
        channel = convert.channel_from_proto(request.channel, "channel")
        assert channel is not None
        recipient = request.recipient
        outcome = self._service.send(
            current_principal(),
            SendRequest(
                tenant=request.tenant_id,
                channel=channel,
                recipient=RecipientSpec(
                    account_id=recipient.account_id,
                    email=recipient.email_address,
                    phone=recipient.phone_number,
                    endpoint_id=recipient.webhook_endpoint_id,
                ),
                template_id=request.template_id,
                category=convert.category_from_proto(request.category, "category"),
                params=dict(request.params),
                sensitive_params=frozenset(request.sensitive_params),
                locale=request.locale,
                idempotency_key=request.idempotency_key,
                deliver_before=prototime.instant(
                    request.deliver_before, request.HasField("deliver_before")
                ),
            ),
        )
        return notify_pb2.SendNotificationResponse(
            notification_id=outcome.notification_id,
            state=convert.state_to_proto(outcome.state),
            duplicate=outcome.duplicate,
        )

    def GetDeliveryStatus(
        self, request: notify_pb2.GetDeliveryStatusRequest, context: grpc.ServicerContext
    ) -> notify_pb2.GetDeliveryStatusResponse:
        """A notification's state and every attempt."""
        view = self._service.delivery_status(current_principal(), request.notification_id)
        return notify_pb2.GetDeliveryStatusResponse(delivery=convert.delivery_message(view))

    def RegisterWebhookEndpoint(
        self, request: notify_pb2.RegisterWebhookEndpointRequest, context: grpc.ServicerContext
    ) -> notify_pb2.RegisterWebhookEndpointResponse:
        """Register a tenant's webhook URL; the secret is returned only here."""
        view, secret = self._service.register_endpoint(
            current_principal(),
            tenant=request.tenant_id,
            url=request.url,
            event_types=list(request.event_types),
            description=request.description,
        )
        return notify_pb2.RegisterWebhookEndpointResponse(
            endpoint=convert.endpoint_message(view), secret=secret
        )

    def RotateWebhookSecret(
        self, request: notify_pb2.RotateWebhookSecretRequest, context: grpc.ServicerContext
    ) -> notify_pb2.RotateWebhookSecretResponse:
        """A new secret; the old one stays valid for the grace period."""
        grace = (
            timedelta(
                seconds=request.grace_period.seconds,
                microseconds=request.grace_period.nanos // 1000,
            )
            if request.HasField("grace_period")
            else None
        )
        view, secret = self._service.rotate_secret(current_principal(), request.endpoint_id, grace)
        return notify_pb2.RotateWebhookSecretResponse(
            endpoint=convert.endpoint_message(view), secret=secret
        )

    def ListWebhookEndpoints(
        self, request: notify_pb2.ListWebhookEndpointsRequest, context: grpc.ServicerContext
    ) -> notify_pb2.ListWebhookEndpointsResponse:
        """A tenant's endpoints, a page at a time."""
        views, token = self._service.list_endpoints(
            current_principal(), request.tenant_id, request.page_size, request.page_token
        )
        return notify_pb2.ListWebhookEndpointsResponse(
            endpoints=[convert.endpoint_message(v) for v in views], next_page_token=token
        )

    def ReplayDeadLetters(
        self, request: notify_pb2.ReplayDeadLettersRequest, context: grpc.ServicerContext
    ) -> notify_pb2.ReplayDeadLettersResponse:
        """Put dead-lettered notifications back into delivery."""
        ids = self._service.replay(
            current_principal(),
            tenant=request.tenant_id,
            channel=convert.channel_from_proto(request.channel, "channel", required=False),
            notification_ids=list(request.notification_ids),
            limit=request.limit,
        )
        return notify_pb2.ReplayDeadLettersResponse(replayed_count=len(ids), notification_ids=ids)

    def DeclareIncident(
        self, request: notify_pb2.DeclareIncidentRequest, context: grpc.ServicerContext
    ) -> notify_pb2.DeclareIncidentResponse:
        """Notify every affected account and record the notice in the evidence log."""
        scope = request.WhichOneof("scope")
        channels: list[ChannelKind] = []
        for value in request.channels:
            channel = convert.channel_from_proto(value, "channels")
            assert channel is not None
            channels.append(channel)
        notice = request.notice
        incident_id, queued = self._service.declare_incident(
            current_principal(),
            IncidentRequest(
                title=request.title,
                severity=convert.severity_from_proto(request.severity),
                notice=IncidentNotice(
                    what_happened_and_impact=notice.what_happened_and_impact,
                    measures_taken=notice.measures_taken,
                    advice=notice.advice,
                    remedies=notice.remedies,
                ),
                happened_at=prototime.instant(request.happened_at, request.HasField("happened_at")),
                discovered_at=prototime.instant(
                    request.discovered_at, request.HasField("discovered_at")
                ),
                account_ids=tuple(request.accounts.account_ids) if scope == "accounts" else (),
                tenant_scope=request.tenant_id if scope == "tenant_id" else "",
                all_accounts=scope == "all_accounts" and request.all_accounts,
                channels=tuple(channels),
                regulator_notified_at=prototime.instant(
                    request.regulator_notified_at, request.HasField("regulator_notified_at")
                ),
                declared_by=request.declared_by,
                idempotency_key=request.idempotency_key,
            ),
        )
        return notify_pb2.DeclareIncidentResponse(
            incident_id=incident_id, notifications_queued=queued
        )

    def SetNotificationPreferences(
        self, request: notify_pb2.SetNotificationPreferencesRequest, context: grpc.ServicerContext
    ) -> notify_pb2.SetNotificationPreferencesResponse:
        """Replace the choices of the categories listed."""
        changes: dict[Category, list[ChannelKind]] = {}
        for entry in request.categories:
            category = convert.category_from_proto(entry.category, "categories.category")
            if category is None:
                raise InvalidArgument("categories.category is required")
            channels = []
            for value in entry.disabled_channels:
                channel = convert.channel_from_proto(value, "categories.disabled_channels")
                assert channel is not None
                channels.append(channel)
            changes[category] = channels
        view = self._service.set_preferences(
            current_principal(), request.account_id, changes, request.locale
        )
        return notify_pb2.SetNotificationPreferencesResponse(
            preferences=convert.preferences_message(view)
        )

    def GetNotificationPreferences(
        self, request: notify_pb2.GetNotificationPreferencesRequest, context: grpc.ServicerContext
    ) -> notify_pb2.GetNotificationPreferencesResponse:
        """A recipient's preferences."""
        view = self._service.get_preferences(current_principal(), request.account_id)
        return notify_pb2.GetNotificationPreferencesResponse(
            preferences=convert.preferences_message(view)
        )
