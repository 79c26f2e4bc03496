"""SMS through an HTTP provider: one JSON POST per message, bearer-token authenticated.

The adapter speaks a small provider-neutral shape (``to``, ``text``, ``reference``); a
provider with another API gets its own module implementing the same
:class:`~signet.notify.domain.ChannelSender`.
"""

from __future__ import annotations

import json

from signet.notify.backends.http import post
from signet.notify.domain import ChannelKind, OutboundMessage, SendResult, SmsMessage


class HttpSmsSender:
    """Posts ``{"to", "text", "reference"}`` to the provider's URL."""

    kind = ChannelKind.SMS

    def __init__(self, url: str, token: str = "", *, timeout: float = 10.0) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand one text to the provider."""
        if not isinstance(message, SmsMessage):
            return SendResult.permanent("wrong_channel")
        if not self._url:
            return SendResult.permanent("sms_not_configured")
        body = json.dumps(
            {"to": message.to, "text": message.text, "reference": message.notification_id},
            ensure_ascii=False,
        ).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return post(self._url, body, headers, self._timeout)
