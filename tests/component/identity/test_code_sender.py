"""Identity's one-time-code sender against a notify that checks parameters as notify does.

The double refuses a request whose parameters do not fill notify's real template (the
same check :class:`signet.notify.templates.TemplateCatalog` makes in notify), so a drift
between what identity sends and what notify's templates name fails here, not in
production where no code would ever reach a user.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from signet.common.errors import Internal, Unavailable
from signet.common.testing.grpc import InProcessServer, settings_for_tests
from signet.identity.backends.notify import NotifyCodeSender
from signet.notify.templates import TemplateCatalog
from signet.notify.v1 import notify_pb2, notify_pb2_grpc


class TemplateCheckingNotifyTestDouble(notify_pb2_grpc.NotifyServiceServicer):
    """SendNotification that renders notify's built-in template, or answers ``status``."""

    def __init__(self) -> None:
        self.catalog = TemplateCatalog()
        self.requests: list[notify_pb2.SendNotificationRequest] = []
        self.status: grpc.StatusCode | None = None

    def SendNotification(
        self, request: notify_pb2.SendNotificationRequest, context: grpc.ServicerContext
    ) -> notify_pb2.SendNotificationResponse:
        """Record, check the parameters against the template, render the SMS text."""
        if self.status is not None:
            context.abort(self.status, "told to fail")
        self.requests.append(request)
        self.catalog.check_params(request.template_id, dict(request.params))
        self.catalog.render(request.template_id, request.locale, dict(request.params))
        return notify_pb2.SendNotificationResponse(notification_id="n-1")


@pytest.fixture
def notify() -> Iterator[tuple[TemplateCheckingNotifyTestDouble, NotifyCodeSender]]:
    double = TemplateCheckingNotifyTestDouble()  # type: ignore[abstract]
    server = InProcessServer(
        lambda s: notify_pb2_grpc.add_NotifyServiceServicer_to_server(double, s),
        service_names=["signet.notify.v1.NotifyService"],
        settings=settings_for_tests(service_name="notify"),
    )
    channel = server.start()
    try:
        yield double, NotifyCodeSender(channel)
    finally:
        server.stop()


def _send(sender: NotifyCodeSender, template_id: str, ttl: timedelta) -> None:
    sender.send_code(
        tenant_id="t-1",
        channel="sms",
        destination="13812345678",
        code="482913",
        template_id=template_id,
        expires_at=datetime.now(UTC) + ttl,
        idempotency_key="k-" + template_id,
        locale="zh-CN",
    )


@pytest.mark.parametrize("template_id", ["verification-code", "willingness-code"])
def test_code_request_fills_notify_template_with_the_minutes_left(
    notify: tuple[TemplateCheckingNotifyTestDouble, NotifyCodeSender], template_id: str
) -> None:
    double, sender = notify
    _send(sender, template_id, timedelta(seconds=299))
    (request,) = double.requests
    assert request.params["code"] == "482913"
    assert request.params["minutes"] == "5"
    assert list(request.sensitive_params) == ["code"]


def test_code_refused_by_notify_is_internal_not_retryable(
    notify: tuple[TemplateCheckingNotifyTestDouble, NotifyCodeSender],
) -> None:
    double, sender = notify
    double.status = grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(Internal):
        _send(sender, "verification-code", timedelta(minutes=5))


def test_notify_down_is_unavailable(
    notify: tuple[TemplateCheckingNotifyTestDouble, NotifyCodeSender],
) -> None:
    double, sender = notify
    double.status = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(Unavailable):
        _send(sender, "verification-code", timedelta(minutes=5))
