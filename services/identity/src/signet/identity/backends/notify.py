"""One-time codes delivered through notify's SendNotification RPC (never over Kafka).

The code travels only in the RPC, marked as a sensitive template parameter so notify
neither stores nor logs it in clear; the idempotency key makes a retried send harmless.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from signet.common.errors import Internal, Unavailable
from signet.notify.v1 import notify_pb2, notify_pb2_grpc


class NotifyCodeSender:
    """Sends one-time codes by SMS or e-mail through the notify service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = notify_pb2_grpc.NotifyServiceStub(channel)

    def send_code(
        self,
        *,
        tenant_id: str,
        channel: str,
        destination: str,
        code: str,
        template_id: str,
        expires_at: datetime,
        idempotency_key: str,
        locale: str,
    ) -> None:
        """Ask notify to deliver ``code`` to ``destination`` (a phone or e-mail address)."""
        recipient = (
            notify_pb2.Recipient(phone_number=destination)
            if channel == "sms"
            else notify_pb2.Recipient(email_address=destination)
        )
        # The templates say how long the code is valid, in whole minutes (never 0).
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        minutes = max(1, math.ceil(remaining / 60))
        deliver_before = Timestamp()
        deliver_before.FromDatetime(expires_at)
        request = notify_pb2.SendNotificationRequest(
            tenant_id=tenant_id,
            channel=notify_pb2.CHANNEL_SMS if channel == "sms" else notify_pb2.CHANNEL_EMAIL,
            recipient=recipient,
            template_id=template_id,
            params={"code": code, "minutes": str(minutes)},
            sensitive_params=["code"],
            category=notify_pb2.NOTIFICATION_CATEGORY_ONE_TIME_CODE,
            locale=locale,
            idempotency_key=idempotency_key,
            deliver_before=deliver_before,
        )
        try:
            self._stub.SendNotification(request)
        except grpc.RpcError as err:
            status = err.code() if isinstance(err, grpc.Call) else None
            if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
                raise Unavailable("the code could not be sent now; retry") from None
            # Notify refused the request itself: retrying cannot help, and saying so
            # would send the caller into a loop.
            raise Internal("the code could not be sent") from None
