"""Webhook deliveries: the JSON body POSTed with the headers of :mod:`signet.notify.webhooks`."""

from __future__ import annotations

from signet.notify import webhooks
from signet.notify.backends.http import post
from signet.notify.domain import ChannelKind, OutboundMessage, SendResult, WebhookMessage


class HttpWebhookSender:
    """Signs and POSTs one delivery; a fresh timestamp and signature on every attempt."""

    kind = ChannelKind.WEBHOOK

    def __init__(self, *, timeout: float = 10.0, user_agent: str = "Signet-Webhook/1") -> None:
        self._timeout = timeout
        self._user_agent = user_agent

    def send(self, message: OutboundMessage) -> SendResult:
        """Deliver one signed body."""
        if not isinstance(message, WebhookMessage):
            return SendResult.permanent("wrong_channel")
        headers = webhooks.signed_headers(message.secrets, message.notification_id, message.body)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = self._user_agent
        if message.event_type:
            headers[webhooks.HEADER_EVENT_TYPE] = message.event_type
        return post(message.url, message.body, headers, self._timeout)
